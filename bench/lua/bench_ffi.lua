-- bench/lua/bench_ffi.lua - case 2: the C ABI enqueue called from LuaJIT FFI
-- vs a pure-Lua queue doing what Kong 2.x's batch_queue:add does, in the same
-- LuaJIT process, on the same entry strings.
--
--   BATCHQ_LIB=.../libbatchq.so LUA_PATH='capi/lua/?.lua;;' \
--     luajit bench/lua/bench_ffi.lua [--json FILE] [--quick]
--
-- Measured (wall clock, CLOCK_MONOTONIC, N calls in a loop, best of 5 runs
-- after a warm-up so both paths are JIT-compiled):
--  * batchq module:  q:enqueue(entry)  (capi/lua/batchq.lua, what the Kong
--    plugin calls: argument checks + batchq_enqueue_ex, which copies the
--    bytes into the queue);
--  * batchq raw FFI: lib.batchq_enqueue(h, entry, #entry) (the floor of the
--    FFI path);
--  * pure Lua (Kong 2.x batch_queue:add, see kong_queue below): the entry is
--    stored in the current batch table; a full batch is moved to the batch
--    list and processing is "scheduled". ngx.timer.at is replaced by a
--    counter and ngx.now by a cached number (nginx caches it too), so the
--    pure-Lua side pays nothing for timers here - the most favourable case
--    for it. Batches are released when flushed (as if sent at once), so the
--    garbage collector's work is included, as in nginx.
-- The batchq queue sends to the receiver named by BQ_BENCH_ENDPOINT (its
-- worker thread runs on the other core, as it would in nginx); the loop's
-- wall time is what the Lua thread pays. Both queues use batches of 1000
-- (queue_size) and are unbounded.
local ffi = require "ffi"
local batchq = require "batchq"

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/bench_common.lua")
local now_s = common.wall_s
local opts = common.args()
local json_file, quick = opts.json_file, opts.quick

-- ---- Kong 2.x batch_queue, the parts add() uses ---------------------------
local timers_scheduled = 0
local function timer_at(_, _) timers_scheduled = timers_scheduled + 1; return true end
local cached_now = 1700000000.0
local function ngx_now() return cached_now end

local kong_queue = {}
kong_queue.__index = kong_queue

function kong_queue.new(batch_max_size)
  return setmetatable({
    batch_max_size = batch_max_size,
    current_batch = { entries = {}, retries = 0 },
    batch_queue = {},
    flush_scheduled = false,
    process_scheduled = false,
    last_t = 0,
  }, kong_queue)
end

function kong_queue:flush()
  local cb = self.current_batch
  if #cb.entries == 0 then return true end
  local bq = self.batch_queue
  bq[#bq + 1] = cb
  self.current_batch = { entries = {}, retries = 0 }
  if not self.process_scheduled then
    self.process_scheduled = true
    timer_at(0, "process")
  end
  -- "Processing": the batch is sent at once and released (see above).
  self.batch_queue = {}
  self.process_scheduled = false
  return true
end

function kong_queue:add(entry)
  if self.batch_max_size == 1 then
    local batch = { entries = { entry }, retries = 0 }
    timer_at(0, batch)
    return true
  end
  local cb = self.current_batch
  local new_size = #cb.entries + 1
  cb.entries[new_size] = entry
  if new_size >= self.batch_max_size then
    local ok, err = self:flush()
    if not ok then return nil, err end
  elseif not self.flush_scheduled then
    timer_at(1, "flush")
    self.flush_scheduled = true
  end
  self.last_t = ngx_now()
  return true
end

-- ---- entries -------------------------------------------------------------
-- 1000 distinct strings per size (Lua strings are interned: creating them in
-- the loop would measure string creation, which both paths would pay alike).
local function make_entries(bytes)
  local t = {}
  for i = 1, 1000 do
    local head = '{"bq_bench":' .. i .. ',"msg":"'
    t[i] = head .. string.rep("x", bytes - #head - 2) .. '"}'
  end
  return t
end

local endpoint = common.endpoint
local function new_batchq()
  return common.new_queue(1000)
end

local function time_loop(n, entries, fn)
  local m = #entries
  local t0 = now_s()
  for i = 1, n do
    fn(entries[(i % m) + 1])
  end
  return now_s() - t0
end

local N = quick and 100000 or 400000
local results = {}

for _, bytes in ipairs({ 512, 4096 }) do
  local entries = make_entries(bytes)
  local best = { module = math.huge, raw = math.huge, lua = math.huge }
  for round = 0, 5 do -- round 0 is the warm-up
    -- The three peers alternate within each round.
    do
      local q = new_batchq()
      local t = time_loop(N, entries, function(e) local ok = q:enqueue(e); if not ok then error("refused") end end)
      q:close(endpoint and 10000 or 0)
      if round > 0 then best.module = math.min(best.module, t) end
    end
    do
      local q = new_batchq()
      local h = q.h
      local C = batchq.library_path and ffi.load(batchq.library_path) or ffi.C
      local enq = C.batchq_enqueue
      local t = time_loop(N, entries, function(e) if enq(h, e, #e) ~= 0 then error("refused") end end)
      q:close(endpoint and 10000 or 0)
      if round > 0 then best.raw = math.min(best.raw, t) end
    end
    do
      collectgarbage()
      local q = kong_queue.new(1000)
      local t = time_loop(N, entries, function(e) local ok = q:add(e); if not ok then error("refused") end end)
      if round > 0 then best.lua = math.min(best.lua, t) end
    end
  end
  local r = {
    bytes = bytes, n = N,
    module_ns = best.module / N * 1e9,
    raw_ns = best.raw / N * 1e9,
    lua_ns = best.lua / N * 1e9,
  }
  results[#results + 1] = r
  io.write(string.format(
    "ffi entry=%-5d batchq module %7.1f ns/entry   raw FFI %7.1f ns/entry   pure-Lua Kong add %7.1f ns/entry   module/pure-Lua %.2f\n",
    bytes, r.module_ns, r.raw_ns, r.lua_ns, r.module_ns / r.lua_ns))
  io.stdout:flush()
end

if json_file then
  local parts = {}
  for _, r in ipairs(results) do
    parts[#parts + 1] = string.format(
      '{"bytes":%d,"n":%d,"module_ns":%.2f,"raw_ns":%.2f,"lua_ns":%.2f}',
      r.bytes, r.n, r.module_ns, r.raw_ns, r.lua_ns)
  end
  local f = assert(io.open(json_file, "w"))
  f:write("[" .. table.concat(parts, ",") .. "]\n")
  f:close()
end
