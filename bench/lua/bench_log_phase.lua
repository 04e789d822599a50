-- bench/lua/bench_log_phase.lua - where the nginx worker's time goes in the
-- log phase of bench/nginx (issue 14), piece by piece, in one LuaJIT process:
-- CPU time of this thread (CLOCK_THREAD_CPUTIME_ID) per call, best of 3
-- rounds, the pieces alternating within a round. The entry is the shape of
-- tests/nginx/kong_standin.lua's serialize() under wrk (about 430 B of
-- JSON), the one case 4 logs.
--
--   build table        a fresh entry table (what serialize() builds, without
--                      the ngx.var / header reads that make most of its cost)
--   cjson.encode       what entry_only and the pure-Lua logger pay per entry
--   buf:encode         string.buffer's encode into a reused buffer
--   enqueue_lua FFI    batchq_enqueue_lua on bytes encoded beforehand: the
--                      C side (check, copy, queue lock)
--   q:enqueue_table    the whole Lua-module call (encode + FFI)
--   q:enqueue(cjson)   the same through cjson and batchq_enqueue_ex
--
-- The queue sends to BQ_BENCH_ENDPOINT (a receiver; required) and is
-- flushed every 2000 entries, so it never grows: only this thread's CPU is
-- counted, the sending thread works on the other core. Run with -joff to
-- see the interpreter's figures: under nginx the log phase runs mostly
-- interpreted (bench/nginx/run_nginx_bench.sh, BENCH_JIT_LOG).
--
--   BATCHQ_LIB=.../libbatchq.so BQ_BENCH_ENDPOINT=http://127.0.0.1:PORT/logs \
--     LUA_PATH='capi/lua/?.lua;;' luajit [-joff] bench/lua/bench_log_phase.lua
local ffi = require "ffi"
local cjson = require "cjson"
local batchq = require "batchq"
local buffer = require "string.buffer"

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/bench_common.lua")
local cpu_s = common.cpu_s

local endpoint = assert(os.getenv("BQ_BENCH_ENDPOINT"), "set BQ_BENCH_ENDPOINT to a receiver's URL")

local function entry(i)
  return {
    request = {
      uri = "/r", url = "http://127.0.0.1:8080/r", querystring = {}, method = "GET",
      headers = { host = "127.0.0.1:8080" }, size = 40,
    },
    upstream_uri = "/r",
    response = {
      status = 200, size = 150,
      headers = { ["content-type"] = "text/plain", connection = "keep-alive", ["content-length"] = "3" },
    },
    tries = {},
    latencies = { request = 0, kong = 0, proxy = -1 },
    client_ip = "127.0.0.1", started_at = 1700000000000 + i * 1.0, source = "kong_standin", worker_pid = 1234,
  }
end

local K, N = 64, 100000
local entries, encoded = {}, {}
for i = 1, K do
  entries[i] = entry(i)
  encoded[i] = buffer.encode(entries[i])
end

local lib = ffi.load(batchq.library_path or os.getenv("BATCHQ_LIB"))
local errbuf = ffi.new("char[256]")
local q = assert(batchq.new({ http_endpoint = endpoint, queue_size = 100, process_delay = 0, flush_timeout = 1 }))
local sink = 0
local sb = buffer.new()

local function drain(i)
  if i % 2000 == 0 then
    q:flush(10000) -- waits (no CPU of this thread) until the queue is empty
  end
end

local pieces = {
  { "build table", function()
    for i = 1, N do sink = sink + #entry(i).source end
  end },
  { "cjson.encode", function()
    for i = 1, N do sink = sink + #cjson.encode(entries[i % K + 1]) end
  end },
  { "buf:encode", function()
    for i = 1, N do
      sb:reset()
      sb:encode(entries[i % K + 1])
      sink = sink + #sb
    end
  end },
  { "enqueue_lua FFI", function()
    for i = 1, N do
      local e = encoded[i % K + 1]
      assert(lib.batchq_enqueue_lua(q.h, e, #e, errbuf, 256) == 0)
      drain(i)
    end
  end },
  { "q:enqueue_table", function()
    for i = 1, N do
      assert(q:enqueue_table(entries[i % K + 1]))
      drain(i)
    end
  end },
  { "q:enqueue(cjson)", function()
    for i = 1, N do
      assert(q:enqueue(cjson.encode(entries[i % K + 1])))
      drain(i)
    end
  end },
}

local best = {}
for round = 0, 3 do
  for _, p in ipairs(pieces) do
    q:flush(10000)
    collectgarbage()
    local t0 = cpu_s()
    p[2]()
    local t = cpu_s() - t0
    if round > 0 then best[p[1]] = math.min(best[p[1]] or math.huge, t) end
  end
end
q:close(10000)

io.write(string.format("log phase pieces, entry %d B JSON / %d B encoded, JIT %s, CPU ns per call:\n",
                       #cjson.encode(entries[1]), #encoded[1], jit.status() and "on" or "off"))
for _, p in ipairs(pieces) do
  io.write(string.format("  %-18s %6.0f\n", p[1], best[p[1]] / N * 1e9))
end
