-- batchq-log: the worker's queues - create, look up, switch, retire, exit.
--
-- One queue per nginx worker per distinct configuration (conf_key), created
-- on first use in the worker (the sending thread must not exist before nginx
-- forks), fed by enqueue(), watched by one timer per worker that pulls
-- dropped entries and the queue's log lines (libbatchq never calls into Lua).
--
-- Nothing here waits on a queue: a queue that is no longer wanted (its
-- configuration changed in place, it sat idle, the worker exits) is retired
-- with shutdown_begin() - libbatchq drains it on its own threads, spooling
-- or handing back what is left at its shutdown_timeout - and the timer polls
-- shutdown_poll() until it has finished, then reports and frees it.
--
-- Worker exit: Kong has no plugin hook for it. The timer's premature run
-- begins the shutdown of every queue at once and keeps polling them, with
-- ngx.sleep (which yields), until all have finished: the queues drain in
-- parallel and the event loop is never blocked. Entries of requests that end
-- after that are printed in the error log. Hosts that can run code at worker
-- exit call use_exit_worker_hook() once (init_worker) and exit_worker() from
-- exit_worker_by_lua, which runs after the worker's last request: the queues
-- then stay open until every request has been logged.
local batchq = require "batchq"
local cjson = require "cjson.safe"
local bit = require "bit"
local plugin_conf = require "kong.plugins.batchq-log.conf"
local report = require "kong.plugins.batchq-log.report"

local ngx = ngx
local now = ngx.now
local update_time = ngx.update_time
local worker_id = ngx.worker.id
local worker_exiting = ngx.worker.exiting
local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local byte = string.byte
local huge = math.huge
local bxor, tobit, lshift, tohex = bit.bxor, bit.tobit, bit.lshift, bit.tohex

local queue_conf = plugin_conf.queue_conf
local conf_key = plugin_conf.conf_key
local log_err, log_warn = report.log_err, report.log_warn
local log_notice, log_debug = report.log_notice, report.log_debug

local ESPOOL = batchq.errors.ESPOOL

local DEFAULT_DROP_POLL_INTERVAL = 1 -- s
local DEFAULT_SHUTDOWN_TIMEOUT = 5 -- s, libbatchq's default too
-- The timer ticks this often; each queue is polled every drop_poll_interval
-- (so intervals shorter than the tick act as the tick).
local TICK = 0.1
-- While the worker exits, retiring queues are polled this often.
local EXIT_POLL = 0.05 -- s
-- Bounds on the work one tick does, so a flood of drops cannot stall the
-- worker's event loop for long; the rest waits for the next tick.
local MAX_DROPS_PER_TICK = 2000
local MAX_REFUSED_KEPT = 1000
-- While a queue cannot be created because its spool directory cannot be used
-- (ESPOOL: a file in the way, a read-only or full disk), entries wait here,
-- bounded, and creation is retried every SPOOL_RETRY_DELAY. (A spool still
-- locked by the previous worker after a reload is not an error: libbatchq
-- works in memory and takes the spool over when the old worker lets go.)
local MAX_BACKLOG = 1000
local SPOOL_RETRY_DELAY = 1 -- s
-- A queue not used for this long is retired (a new one is made if its
-- configuration comes back).
local IDLE_QUEUE_TIMEOUT = 600 -- s

local _M = {}

-- Per-worker state --------------------------------------------------------------

local queues = {}   -- key -> queue state (open)
local retiring = {} -- queue states being shut down, polled by the timer
local failures = {} -- key -> { err, code, label, unqueued, backlog, ... }
-- conf table -> the key it fed last: an in-place change of the table (Kong
-- >= 3.4) shows up as a new key for the same table.
local key_of_conf = setmetatable({}, { __mode = "k" })
local closing = false -- the worker is exiting: no new queues
local timer_started = false
local exit_hooked = false -- exit_worker() will be called: see the top

-- Spool: <spool_dir>/<queue-id>/worker-<n> ------------------------------------------
-- libbatchq locks a spool for its owner: each worker, and each queue of a
-- worker, needs its own directory. The queue id is stable for a configuration
-- (the next worker after a reload finds the spool of the one before) and
-- names the subsystem, so http and stream never share one. libbatchq creates
-- the missing directories (0700).

-- Two 32-bit FNV-1a hashes with different offsets: 64 bits.
local function fnv1a(s, h)
  for i = 1, #s do
    h = bxor(h, byte(s, i))
    h = tobit(lshift(h, 24) + h * 403) -- h * 16777619 mod 2^32
  end
  return h
end

local function queue_id(key)
  local sub = ngx.config and ngx.config.subsystem or "http"
  return sub .. "-" .. tohex(fnv1a(key, tobit(2166136261)))
         .. tohex(fnv1a(key, tobit(0x6b43a9b5)))
end
_M.queue_id = queue_id

-- Queues -----------------------------------------------------------------------------

local function create_queue(key, conf)
  local qconf = queue_conf(conf)
  local label = report.label(qconf.http_endpoint)
  local spool_dir
  if type(qconf.spool_dir) == "string" then
    spool_dir = qconf.spool_dir:gsub("/+$", "") .. "/" .. queue_id(key)
                .. "/worker-" .. tostring(worker_id() or 0)
    qconf.spool_dir = spool_dir
  end
  local q, err, code = batchq.new(qconf)

  local f = failures[key]
  if not q then
    if not f then
      -- Logged once per configuration and worker, not per request.
      log_err("could not create the log queue for ", label, ": ", err,
              code == ESPOOL and "; retrying, entries are held meanwhile"
              or "; entries for it are not logged until the plugin "
                 .. "configuration is fixed")
      f = {
        err = err,
        code = code,
        label = label,
        unqueued = 0,
        reported = 0,
        reported_at = now(),
        attempts = 0,
      }
      if code == ESPOOL then
        f.backlog = {}
      end
      failures[key] = f
    end
    f.err = err
    f.attempts = f.attempts + 1
    if code == ESPOOL then
      f.retry_at = now() + SPOOL_RETRY_DELAY
    end
    return nil, f
  end

  local poll = tonumber(conf.drop_poll_interval)
  if not poll or poll <= 0 then
    poll = DEFAULT_DROP_POLL_INTERVAL
  end
  local shutdown_s = tonumber(qconf.shutdown_timeout)
                     or DEFAULT_SHUTDOWN_TIMEOUT
  local st = {
    q = q,
    key = key,
    label = label,
    spool_dir = spool_dir,
    poll_interval = poll,
    next_poll = now() + poll,
    shutdown_ms = shutdown_s * 1000,
    last_used = now(),
    users = setmetatable({}, { __mode = "k" }), -- conf tables feeding it
    refused = {},
    refused_extra = 0,
    drop_overflow_seen = 0,
    log_overflow_seen = 0,
  }
  queues[key] = st
  if spool_dir then
    log_debug("log queue for ", label, ": spool in ", spool_dir)
  end

  if f then
    failures[key] = nil
    log_notice("log queue for ", label, " created after ", f.attempts,
               " failed attempts")
    for _, data in ipairs(f.backlog or {}) do
      local ok, eerr = q:enqueue(data)
      if not ok then
        st.refused[#st.refused + 1] = { err = eerr, data = data }
      end
    end
    f.backlog = nil
    report.unqueued(f, true)
  end
  return st
end

-- Starts the shutdown of a queue; the timer finishes it (poll_retiring).
-- New entries of its configuration go to a new queue from now on.
local function retire_begin(st, why)
  if queues[st.key] == st then
    queues[st.key] = nil
  end
  st.why = why
  local ok, err = st.q:shutdown_begin(st.shutdown_ms)
  if not ok then
    log_err("could not begin to shut down the log queue for ", st.label, ": ",
            err)
  end
  retiring[#retiring + 1] = st
end

local function log_shut_down(st, clean)
  if clean then
    log_notice("log queue for ", st.label, " shut down (", st.why,
               "), nothing was left to send")
  else
    log_warn("log queue for ", st.label, " shut down (", st.why, ") before ",
             "everything was delivered; see the dropped entries reported ",
             "above")
  end
end

-- A retired queue has finished: what it could not send is reported (the
-- spool kept it, or it is printed) and the queue is freed.
local function retire_end(st)
  local final_stats = st.q:stats()
  st.q:close(0) -- does not wait: the shutdown has finished
  report.drain(st, huge, final_stats)
  local lost = final_stats and final_stats.dropped_by_reason
               and final_stats.dropped_by_reason.shutdown or 0
  log_shut_down(st, lost == 0)
end

-- Polls every retiring queue once; finished ones are ended. Returns true
-- when none is left.
local function poll_retiring()
  local still = {}
  for _, st in ipairs(retiring) do
    local done, err = st.q:shutdown_poll()
    if done == false then
      report.drain(st, MAX_DROPS_PER_TICK)
      still[#still + 1] = st
    else
      if done == nil then
        log_err("shutting down the log queue for ", st.label, ": ", err)
      end
      retire_end(st)
    end
  end
  retiring = still
  return not still[1]
end

-- The queue for a configuration; nil + failure state when it cannot be made.
local function get_queue(conf)
  local key = conf_key(conf)
  local prev = key_of_conf[conf]
  if prev ~= key then
    key_of_conf[conf] = key
    local old = prev and queues[prev]
    if old then
      -- The configuration changed in place (new endpoint, rotated secret):
      -- its old queue drains while new entries go to a new one.
      old.users[conf] = nil
      if next(old.users) == nil then
        retire_begin(old, "configuration changed")
      end
    end
  end
  local st = queues[key]
  if st then
    st.users[conf] = true
    return st
  end
  if closing then
    return nil
  end
  local f = failures[key]
  if f and not (f.retry_at and now() >= f.retry_at) then
    return nil, f
  end
  local err
  st, err = create_queue(key, conf)
  if st then
    st.users[conf] = true
  end
  return st, err
end

-- Called from the log phase with the encoded entry.
function _M.enqueue(conf, data)
  local st, f = get_queue(conf)
  if st then
    st.last_used = now()
    local ok, err = st.q:enqueue(data)
    if not ok then
      if #st.refused < MAX_REFUSED_KEPT then
        st.refused[#st.refused + 1] = { err = err, data = data }
      else
        st.refused_extra = st.refused_extra + 1
      end
    end
    return
  end

  if closing then
    -- The worker is exiting and its queues are shutting down: report this
    -- entry now.
    log_err("worker is exiting and the log queue for ",
            report.label(conf.http_endpoint),
            " is closed: 1 entry not sent; it is printed below")
    report.print_entry("worker exiting", data)
    return
  end

  local b = f.backlog
  if b and #b < MAX_BACKLOG then
    b[#b + 1] = data
  else
    f.unqueued = f.unqueued + 1
  end
end

-- Called from the log phase with the serialized entry (a Lua table). Where
-- LuaJIT has string.buffer, the table crosses the FFI in string.buffer's
-- encoding and becomes JSON on batchq's sending thread (the same JSON
-- cjson.encode makes; see the README, "Entries as Lua tables"); otherwise,
-- and for values string.buffer cannot encode or cjson would refuse, cjson
-- encodes it here as http-log does.
local USE_STRING_BUFFER = batchq.has_string_buffer
local EJSON = batchq.errors.EJSON

function _M.enqueue_entry(conf, entry)
  if USE_STRING_BUFFER then
    local st = get_queue(conf)
    if st then
      st.last_used = now()
      local ok, err, code = st.q:enqueue_table(entry)
      if ok then
        return
      end
      if code ~= EJSON then
        -- refused for a reason of the queue's (full, too large, shut down):
        -- kept as JSON for the refusal report, as enqueue() does
        local data = cjson.encode(entry)
        if data then
          if #st.refused < MAX_REFUSED_KEPT then
            st.refused[#st.refused + 1] = { err = err, data = data }
          else
            st.refused_extra = st.refused_extra + 1
          end
          return
        end
      end
      -- EJSON: cjson decides below (and says why if it refuses too)
    end
  end
  local data, jerr = cjson.encode(entry)
  if not data then
    report.log_err("cannot encode the log entry as JSON: ", jerr)
    return
  end
  _M.enqueue(conf, data)
end

-- Worker exit ---------------------------------------------------------------------------

local function begin_all(why)
  closing = true
  local list = {}
  for _, st in pairs(queues) do
    list[#list + 1] = st
  end
  for _, st in ipairs(list) do
    retire_begin(st, why)
  end
  for key, f in pairs(failures) do
    report.unqueued(f, true)
    failures[key] = nil
  end
end

-- In the timer (premature run or worker exiting): every queue's shutdown
-- begins at once; then they are polled, yielding in between, until all
-- have finished (each within its shutdown_timeout).
-- Waits for every retiring queue (they drain in parallel, each within its
-- shutdown_timeout) and reports what each left. Blocks: only where no
-- request can be waiting.
local function finish_all_blocking()
  for _, st in ipairs(retiring) do
    local clean = st.q:close(st.shutdown_ms)
    report.drain(st, huge)
    log_shut_down(st, clean)
  end
  retiring = {}
end

local function exit_from_timer()
  begin_all("worker exiting")
  while not poll_retiring() do
    local ok, err = pcall(ngx.sleep, EXIT_POLL)
    if not ok then
      -- cannot yield here (never the case in an nginx timer): finish by
      -- waiting rather than leave the queues unreported
      log_err("cannot yield while the log queues drain at worker exit (",
              err, "); waiting for them")
      finish_all_blocking()
      return
    end
  end
end

-- For exit_worker_by_lua_block: runs after the worker's last request, when
-- blocking harms no request. Every queue's shutdown begins at once; close()
-- then waits for each (all drain in parallel, within shutdown_timeout).
function _M.exit_worker()
  begin_all("worker exiting")
  finish_all_blocking()
end

function _M.use_exit_worker_hook()
  exit_hooked = true
end

-- The timer -------------------------------------------------------------------------------

local function tick(premature)
  if premature or worker_exiting() then
    if not exit_hooked then
      exit_from_timer()
    end
    return
  end
  update_time()
  local t = now()
  local idle
  for _, st in pairs(queues) do
    if t >= st.next_poll then
      st.next_poll = t + st.poll_interval
      if report.drain(st, MAX_DROPS_PER_TICK) >= MAX_DROPS_PER_TICK then
        st.next_poll = t -- more waiting: go on at the next tick
      end
      if t - st.last_used > IDLE_QUEUE_TIMEOUT then
        idle = idle or {}
        idle[#idle + 1] = st
      end
    end
  end
  -- A configuration that is no longer used (changed in Kong, route deleted)
  -- would otherwise keep its queue and thread for the worker's life.
  for _, st in ipairs(idle or {}) do
    retire_begin(st, "idle")
  end
  if retiring[1] then
    poll_retiring()
  end
  for _, f in pairs(failures) do
    report.unqueued(f, false)
  end
end

function _M.start()
  if timer_started then
    return true
  end
  -- nginx's own timer: Kong 3.x replaces ngx.timer.every with
  -- lua-resty-timer-ng and keeps the native one as native_timer_every. The
  -- worker-exit drain relies on nginx's semantics (a premature run at exit,
  -- in which ngx.sleep yields), tested in real nginx.
  local every = rawget(_G, "native_timer_every") or ngx.timer.every
  local ok, err = every(TICK, tick)
  if not ok then
    log_err("could not start the drop report timer: ", err)
    return nil, err
  end
  timer_started = true
  return true
end

-- For tests and status pages: the stats of this worker's open queues.
function _M.stats()
  local out = {}
  for _, st in pairs(queues) do
    out[#out + 1] = { endpoint = st.label, spool_dir = st.spool_dir,
                      stats = st.q:stats() }
  end
  return out
end

-- How many queues are shutting down (tests).
function _M.retiring()
  return #retiring
end

return _M
