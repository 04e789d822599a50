-- bench/lua/bench_lua_json.lua - case 2b (issue 14): JSON off the nginx
-- worker. The same Kong-style entry tables (about 1 KB of JSON, the shape of
-- kong.log.serialize()), in one LuaJIT process:
--
--   decoder        batchq_lua_to_json() on the string.buffer encoding of the
--                  entry (what the sending thread does per entry; called via
--                  FFI, so it includes the call, the std::string it builds
--                  and the copy out): the "decoder" figure
--   cjson.encode   cjson.encode(entry) (lua-cjson, default settings, as Kong
--                  http-log calls it): the "entry only" worker cost
--   buf:encode     string.buffer's encode alone (reference)
--   enqueue_table  q:enqueue_table(entry): encode + ref + batchq_enqueue_lua
--                  (the check at enqueue and the copy included); the Lua-side
--                  cost with this path
--   cjson+enqueue  q:enqueue(cjson.encode(entry)): the Lua-side cost without
--
--   BATCHQ_LIB=.../libbatchq.so LUA_PATH='capi/lua/?.lua;;' \
--     luajit bench/lua/bench_lua_json.lua [--json FILE] [--quick]
--
-- Wall clock (CLOCK_MONOTONIC), N calls per loop, best of 5 rounds after a
-- warm-up round; the peers alternate within each round. The queues send to
-- BQ_BENCH_ENDPOINT when set (run.sh starts bench_receiver; the queue's
-- thread then converts and sends on the other core, as in nginx), else they
-- hold entries (dead endpoint, long process_delay).
local ffi = require "ffi"
local cjson = require "cjson"
local batchq = require "batchq"
local buffer = require "string.buffer"

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/bench_common.lua")
-- CPU time of this (the "worker") thread: on a loaded machine wall time
-- measures the scheduler, CPU time the work. BQ_BENCH_WALL=1: wall time.
local now_s = os.getenv("BQ_BENCH_WALL") == "1" and common.wall_s or common.cpu_s
local opts = common.args()
local json_file, quick = opts.json_file, opts.quick

-- A Kong 3.x kong.log.serialize()-like entry; `i` varies a few fields.
local function kong_entry(i)
  return {
    request = {
      uri = "/status/200?i=" .. i,
      url = "http://bench.example.com:8000/status/200?i=" .. i,
      querystring = { i = tostring(i) },
      method = "GET",
      size = 150 + i % 7,
      headers = {
        host = "bench.example.com:8000",
        ["user-agent"] = "wrk/4.2.0",
        accept = "*/*",
        ["x-request-id"] = string.format("%08x-%04x-4%03x-a%03x-%012x", i, i % 65536, i % 4096, i % 4096, i),
        ["accept-encoding"] = "gzip, deflate",
        connection = "keep-alive",
      },
    },
    upstream_uri = "/status/200?i=" .. i,
    response = {
      status = 200,
      size = 1024 + i % 13,
      headers = {
        ["content-type"] = "application/json",
        ["content-length"] = "1000",
        connection = "keep-alive",
        ["x-kong-upstream-latency"] = tostring(i % 5),
        ["x-kong-proxy-latency"] = "0",
        via = "kong/3.9.3",
      },
    },
    tries = { { balancer_latency = 0, port = 8080, balancer_start = 1700000000000 + i, ip = "127.0.0.1" } },
    latencies = { kong = 1, proxy = i % 5, request = 2 + i % 5, receive = 0 },
    client_ip = "127.0.0.1",
    started_at = 1700000000000 + i,
    source = "upstream",
    workspace = "0dc6f45b-8f8d-40d2-a504-473544ee190b",
    workspace_name = "default",
    service = {
      id = "1b0f2d4c-8a3e-4a52-9a8e-0d3b7f6e2c11", name = "bench", host = "127.0.0.1", port = 8080,
      protocol = "http", path = "/", retries = 5, connect_timeout = 60000, read_timeout = 60000,
      write_timeout = 60000, enabled = true, created_at = 1700000000, updated_at = 1700000000,
    },
    route = {
      id = "5c4e8d2a-7b1f-4c3d-9e6a-2f8b0c1d3e4f", name = "bench", paths = { "/status" },
      protocols = { "http", "https" }, strip_path = false, preserve_host = false,
      https_redirect_status_code = 426, regex_priority = 0, created_at = 1700000000,
    },
  }
end

local K = 64
local entries, encoded = {}, {}
for i = 1, K do
  entries[i] = kong_entry(i)
  encoded[i] = buffer.encode(entries[i])
end
local json_bytes = #cjson.encode(entries[1])

local lib = ffi.load(batchq.library_path or os.getenv("BATCHQ_LIB"))
local out_len = 16 * #encoded[1] + 64
local out = ffi.new("char[?]", out_len)
local out_n = ffi.new("size_t[1]")
assert(lib.batchq_lua_to_json(encoded[1], #encoded[1], out, out_len, out_n, nil, 0) == 0)
do -- the same JSON value (object keys may come in another order: see lua_json.hpp)
  local ours = ffi.string(out, out_n[0])
  assert(#ours == json_bytes and ours == batchq.to_json(entries[1]), "decoder output differs")
end

local endpoint = common.endpoint
local function new_queue()
  return common.new_queue(100)
end

local N = quick and 20000 or 100000
local sink = 0

local function loop_decoder()
  local t0 = now_s()
  for i = 1, N do
    local e = encoded[(i % K) + 1]
    if lib.batchq_lua_to_json(e, #e, out, out_len, out_n, nil, 0) ~= 0 then error("refused") end
    sink = sink + tonumber(out_n[0])
  end
  return now_s() - t0
end

local function loop_cjson()
  local t0 = now_s()
  for i = 1, N do
    sink = sink + #cjson.encode(entries[(i % K) + 1])
  end
  return now_s() - t0
end

local sbuf = buffer.new()
local function loop_bufencode()
  local t0 = now_s()
  for i = 1, N do
    sbuf:reset()
    sbuf:encode(entries[(i % K) + 1])
    sink = sink + #sbuf
  end
  return now_s() - t0
end

local function loop_enqueue_table()
  local q = new_queue()
  local t0 = now_s()
  for i = 1, N do
    if not q:enqueue_table(entries[(i % K) + 1]) then error("refused") end
  end
  local t = now_s() - t0
  q:close(endpoint and 20000 or 0)
  return t
end

local function loop_cjson_enqueue()
  local q = new_queue()
  local t0 = now_s()
  for i = 1, N do
    if not q:enqueue(cjson.encode(entries[(i % K) + 1])) then error("refused") end
  end
  local t = now_s() - t0
  q:close(endpoint and 20000 or 0)
  return t
end

local peers = {
  { "decoder", loop_decoder }, { "cjson", loop_cjson }, { "bufencode", loop_bufencode },
  { "enqueue_table", loop_enqueue_table }, { "cjson_enqueue", loop_cjson_enqueue },
}
local best = {}
for round = 0, 5 do
  for _, p in ipairs(peers) do
    collectgarbage()
    local t = p[2]()
    if round > 0 then best[p[1]] = math.min(best[p[1]] or math.huge, t) end
  end
end
local ns = {}
for k, v in pairs(best) do ns[k] = v / N * 1e9 end

io.write(string.format(
  "lua_json entry=%d B JSON (%d B encoded): decoder %.0f ns, cjson.encode %.0f ns (cjson/decoder %.1fx), " ..
  "buf:encode %.0f ns; Lua side: enqueue_table %.0f ns, cjson.encode+enqueue %.0f ns (%.1fx)\n",
  json_bytes, #encoded[1], ns.decoder, ns.cjson, ns.cjson / ns.decoder, ns.bufencode, ns.enqueue_table,
  ns.cjson_enqueue, ns.cjson_enqueue / ns.enqueue_table))

if json_file then
  local f = assert(io.open(json_file, "w"))
  f:write(string.format(
    '{"json_bytes":%d,"encoded_bytes":%d,"n":%d,"decoder_ns":%.2f,"cjson_ns":%.2f,"bufencode_ns":%.2f,' ..
    '"enqueue_table_ns":%.2f,"cjson_enqueue_ns":%.2f,"sent":%s}\n',
    json_bytes, #encoded[1], N, ns.decoder, ns.cjson, ns.bufencode, ns.enqueue_table, ns.cjson_enqueue,
    endpoint and "true" or "false"))
  f:close()
end
