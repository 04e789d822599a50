-- bench/lua/bench_common.lua - what the LuaJIT benches share: clocks, their
-- command line and a batchq queue aimed at the bench receiver. Loaded with
--   local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/bench_common.lua")
local ffi = require "ffi"
local batchq = require "batchq"

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bq_bench_timespec;
int clock_gettime(int clk_id, bq_bench_timespec *tp);
]]

local M = {}

local ts = ffi.new("bq_bench_timespec")
local function clock(id)
  return function()
    ffi.C.clock_gettime(id, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
  end
end
M.wall_s = clock(1) -- CLOCK_MONOTONIC
M.cpu_s = clock(3)  -- CLOCK_THREAD_CPUTIME_ID: this (the "worker") thread only

-- --json FILE (where run.sh collects the figures) and --quick.
function M.args()
  local a, i = {}, 1
  while arg[i] do
    if arg[i] == "--json" then a.json_file = arg[i + 1]; i = i + 1
    elseif arg[i] == "--quick" then a.quick = true end
    i = i + 1
  end
  return a
end

-- BQ_BENCH_ENDPOINT (run.sh starts bench_receiver): batches are really sent
-- and freed while the loop runs, as in nginx, so the copies batchq makes
-- recycle memory instead of growing the heap (page faults a real deployment
-- does not pay). Without it the queue points at a dead port with a long
-- process_delay: nothing is sent.
M.endpoint = os.getenv("BQ_BENCH_ENDPOINT")

function M.new_queue(queue_size)
  local e = M.endpoint
  local q, err = batchq.new({
    http_endpoint = e or "http://127.0.0.1:9/logs",
    queue_size = queue_size,
    process_delay = e and 0 or 3600,
    flush_timeout = e and 1 or 3600,
    max_entries = 0,
    shutdown_timeout = e and 10 or 0,
  })
  assert(q, err)
  return q
end

return M
