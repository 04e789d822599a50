-- batchq-log: Kong's http-log, with batchq as the queue.
--
-- Same configuration names, defaults and wire format as http-log (see
-- schema.lua), but nothing is dropped silently: every entry that cannot be
-- delivered - retries used up, queue bound reached, worker shutdown deadline,
-- a bad configuration - is reported in the error log with the reason, and
-- either kept in the spool (spool_dir) or printed there in full.
--
-- Life of a queue: one per nginx worker per distinct configuration, created
-- on first use in the worker (the sending thread must not exist before nginx
-- forks), fed by log(), watched by one timer per worker that pulls dropped
-- entries and the queue's log lines (libbatchq never calls into Lua), and
-- shut down within shutdown_timeout when the worker exits.
--
-- Worker exit: Kong has no plugin hook for it. By default the timer sees the
-- exit as its premature run and shuts the queues down there; requests still
-- in flight then cannot be queued and their entries are printed instead.
-- Hosts that can run code at worker exit call use_exit_worker_hook() once
-- (init_by_lua or init_worker_by_lua) and exit_worker() from
-- exit_worker_by_lua_block, which runs after the worker's last request: the
-- queues then stay open until every request has been logged.
local batchq = require "batchq"
local cjson = require "cjson.safe"
local ffi = require "ffi"

local ngx = ngx
local kong = kong -- Kong sets it before loading plugins; else see get_kong()
local now = ngx.now
local update_time = ngx.update_time
local worker_id = ngx.worker.id
local worker_exiting = ngx.worker.exiting
local timer_every = ngx.timer.every
local null = ngx.null
local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local pcall = pcall
local loadstring = loadstring
local setfenv = setfenv
local rawget = rawget
local select = select
local error = error
local unpack = unpack
local fmt = string.format
local sort = table.sort
local concat = table.concat
local huge = math.huge
local min = math.min
local ceil = math.ceil

local ESPOOL = batchq.errors.ESPOOL
local plugin_conf = require "kong.plugins.batchq-log.conf"
local queue_conf = plugin_conf.queue_conf
local conf_key = plugin_conf.conf_key

local DEFAULT_DROP_POLL_INTERVAL = 1 -- s
local DEFAULT_SHUTDOWN_TIMEOUT = 5 -- s, libbatchq's default too
-- The timer ticks this often; each queue is polled every drop_poll_interval
-- (so intervals shorter than the tick act as the tick).
local TICK = 0.1
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
-- nginx cuts error log lines at 2048 bytes (NGX_MAX_ERROR_STR); payloads are
-- printed in parts that fit with the line's prefix and context.
local PRINT_CHUNK = 1500
-- A queue not used for this long, and empty, is closed (a new one is made
-- if its configuration comes back).
local IDLE_QUEUE_TIMEOUT = 600 -- s
-- A permanently broken configuration is reminded of at most this often.
local UNQUEUED_REPORT_INTERVAL = 60 -- s

local BatchqLogHandler = {
  PRIORITY = 12, -- http-log's
  VERSION = "0.1.0",
}

-- Per-worker state --------------------------------------------------------------

local queues = {}   -- key -> queue state
local failures = {} -- key -> { err, code, endpoint, unqueued, backlog, ... }
local closing = false -- queues were shut down: the worker is exiting
local timer_started = false
local exit_hooked = false -- exit_worker() will be called: see the top

local function get_kong()
  return kong or rawget(_G, "kong")
end

local function log_err(...)
  get_kong().log.err(...)
end

local function log_warn(...)
  get_kong().log.warn(...)
end

local function log_notice(...)
  get_kong().log.notice(...)
end

local function log_debug(...)
  get_kong().log.debug(...)
end

-- The queue's own log lines come with libbatchq's level names.
local LEVEL_LOGGERS = {
  error = log_err,
  warn = log_warn,
  info = log_notice,
  debug = log_debug,
}

-- Configuration -------------------------------------------------------------------

-- "host:port" of the endpoint, for messages: never the credentials or path.
local function endpoint_for_logs(url)
  if type(url) ~= "string" then
    return tostring(url)
  end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return "(invalid URL)"
  end
  local authority = rest:match("^([^/?#]*)")
  authority = authority:gsub("^.*@", "")
  if authority:match(":%d+$") or authority:match("^%[.*%]:%d+$") then
    return authority
  end
  local port = ({ http = 80, https = 443 })[scheme:lower()]
  if not port then
    -- not an endpoint libbatchq accepts: show what was configured
    return scheme .. "://" .. authority
  end
  return authority .. ":" .. port
end

-- The spool ---------------------------------------------------------------------
-- Each worker gets its own directory under spool_dir: libbatchq locks a
-- spool for its owner, so two workers cannot share one.

-- pcall: another module may have declared mkdir already (mode_t is an
-- unsigned int on Linux, so that declaration works as well as this one).
pcall(ffi.cdef, "int mkdir(const char *path, unsigned int mode);")

local EEXIST = 17

local function mkdir_p(path)
  local sofar = ""
  for part in path:gmatch("[^/]+") do
    sofar = sofar .. "/" .. part
    if ffi.C.mkdir(sofar, 448) ~= 0 then -- 0700
      local errno = ffi.errno()
      if errno ~= EEXIST then
        return nil, fmt("cannot create %s (errno %d)", sofar, errno)
      end
    end
  end
  return true
end

-- Reporting -------------------------------------------------------------------------

-- Prints one entry at error level, in parts when it is longer than a log
-- line can hold, so that it is at least in the error log.
local function print_entry(reason, data)
  local n = #data
  if n <= PRINT_CHUNK then
    log_err("dropped entry (", reason, "): ", data)
    return
  end
  local parts = ceil(n / PRINT_CHUNK)
  for i = 1, parts do
    local first = (i - 1) * PRINT_CHUNK + 1
    log_err("dropped entry (", reason, ") [part ", i, "/", parts, "]: ",
            data:sub(first, first + PRINT_CHUNK - 1))
  end
end

-- Kong's wording for each reason, plus what batchq adds: how many, why, and
-- where the entries are now.
local function drop_summary(st, d, n)
  local head
  local r = d.reason
  if r == "retries_exhausted" then
    head = fmt("entry batch was already tried %d times, dropping it",
               d.attempts)
  elseif r == "retry_time_exceeded" then
    head = fmt("could not send entries due to max_retry_time exceeded. "
               .. "%d queue entries were lost", n)
  elseif r == "queue_full" then
    head = "queue full, dropping old entries until processing is "
           .. "successful again"
  elseif r == "shutdown" then
    head = "could not send entries before the shutdown deadline, "
           .. "dropping them"
  elseif r == "too_large" then
    head = "the endpoint refused a batch as too large, dropping it"
  elseif r == "rejected" then
    head = "the endpoint rejected a batch, dropping it"
  else
    head = "dropping entries"
  end
  local where
  if d.spooled then
    where = "the entries are kept in the dead-letter spool under "
            .. tostring(st.spool_dir)
  else
    where = "the entries are printed below"
  end
  local last = ""
  if d.error and d.error ~= "" then
    last = ", last error: " .. d.error
  end
  return fmt("%s: %d %s for %s dropped (reason %s, %d attempts%s); %s",
             head, n, n == 1 and "entry" or "entries", st.endpoint, r,
             d.attempts, last, where)
end

local function same_group(a, b)
  return a.reason == b.reason and a.attempts == b.attempts
         and a.error == b.error and a.spooled == b.spooled
end

local function report_dropped(st, list)
  local i, n = 1, #list
  while i <= n do
    local d = list[i]
    local j = i
    while j < n and same_group(list[j + 1], d) do
      j = j + 1
    end
    log_err(drop_summary(st, d, j - i + 1))
    if not d.spooled then
      for k = i, j do
        print_entry(list[k].reason, list[k].data)
      end
    end
    i = j + 1
  end
end

-- Entries the queue refused at enqueue (queue full with refuse_new, larger
-- than max_bytes, shut down): collected in log() and reported from the timer,
-- so a flood of refusals costs one summary per tick, not a line per request.
local function report_refused(st)
  local list = st.refused
  if not list[1] and st.refused_extra == 0 then
    return
  end
  st.refused = {}
  local extra = st.refused_extra
  st.refused_extra = 0
  local by_err, order = {}, {}
  for _, r in ipairs(list) do
    if not by_err[r.err] then
      by_err[r.err] = {}
      order[#order + 1] = r.err
    end
    local g = by_err[r.err]
    g[#g + 1] = r.data
  end
  for _, err in ipairs(order) do
    local g = by_err[err]
    log_err(fmt("the queue for %s refused %d %s (%s); the entries are "
                .. "printed below", st.endpoint, #g,
                #g == 1 and "entry" or "entries", err))
    for _, data in ipairs(g) do
      print_entry("refused", data)
    end
  end
  if extra > 0 then
    log_err(fmt("the queue for %s refused %d more entries that were not "
                .. "kept for printing", st.endpoint, extra))
  end
end

local function forward_logs(st, lines)
  for _, l in ipairs(lines) do
    local logger = LEVEL_LOGGERS[l.level] or log_err
    logger(l.msg, " (queue for ", st.endpoint, ")")
  end
end

-- Pulls and reports everything a queue has for the host (up to max drops).
-- What the library could not keep for us: dropped entries beyond its drop
-- buffer (drop_buffer_entries / drop_buffer_bytes) between two polls, and log
-- lines beyond its log buffer. Only counted there, so at least the count is
-- reported. `s` is a stats() table (read before close()).
local function report_overflow(st, s)
  if not s then
    return
  end
  local lost = s.drop_buffer_overflow - st.drop_overflow_seen
  if lost > 0 then
    st.drop_overflow_seen = s.drop_buffer_overflow
    log_err(fmt("%d dropped entries for %s could not be kept for reporting "
                .. "(the drop buffer was full%s); raise drop_buffer_entries or "
                .. "lower drop_poll_interval", lost, st.endpoint,
                st.spool_dir and ", they are in the dead-letter spool under "
                .. st.spool_dir or ""))
  end
  local lines = s.log_overflow - st.log_overflow_seen
  if lines > 0 then
    st.log_overflow_seen = s.log_overflow
    log_warn(fmt("%d log lines of the queue for %s were lost (log buffer "
                 .. "full)", lines, st.endpoint))
  end
end

local function drain(st, max_drops, final_stats)
  local q = st.q
  local lines = q:poll_log(256)
  if lines then
    forward_logs(st, lines)
  end
  report_overflow(st, final_stats or q:stats())
  local n = 0
  while n < max_drops do
    local list, err = q:poll_dropped(min(256, max_drops - n))
    if not list then
      log_err("cannot poll dropped entries of the queue for ", st.endpoint,
              ": ", err)
      break
    end
    if not list[1] then
      break
    end
    report_dropped(st, list)
    n = n + #list
  end
  report_refused(st)
  return n
end

-- Entries of a configuration whose queue could not be created: the held
-- ones (spool locked) are printed when the worker exits; the others are
-- counted and the count is reported, at most every UNQUEUED_REPORT_INTERVAL.
local function report_unqueued(f, final)
  if final and f.backlog and f.backlog[1] then
    local list = f.backlog
    f.backlog = {}
    log_err(fmt("%d %s for %s could not be queued (%s); the entries are "
                .. "printed below", #list, #list == 1 and "entry" or
                "entries", f.endpoint, f.err))
    for _, data in ipairs(list) do
      print_entry("not queued", data)
    end
  end
  local t = now()
  if f.unqueued > f.reported
     and (final or t - f.reported_at >= UNQUEUED_REPORT_INTERVAL)
  then
    log_err(fmt("%d entries for %s were not logged because the log queue "
                .. "could not be created: %s", f.unqueued - f.reported,
                f.endpoint, f.err))
    f.reported = f.unqueued
    f.reported_at = t
  end
end

-- Queues -----------------------------------------------------------------------------

local function create_queue(key, conf)
  local qconf = queue_conf(conf)
  local endpoint = endpoint_for_logs(qconf.http_endpoint)
  local spool_dir
  local q, err, code

  if type(qconf.spool_dir) == "string" then
    spool_dir = qconf.spool_dir .. "/worker-" .. tostring(worker_id() or 0)
    qconf.spool_dir = spool_dir
    local ok, merr = mkdir_p(spool_dir)
    if not ok then
      q, err, code = nil, "spool_dir: " .. merr, ESPOOL
    end
  end
  if not err then
    q, err, code = batchq.new(qconf)
  end

  local f = failures[key]
  if not q then
    if not f then
      -- Logged once per configuration and worker, not per request.
      log_err("could not create the log queue for ", endpoint, ": ", err,
              code == ESPOOL and "; retrying, entries are held meanwhile"
              or "; entries for it are not logged until the plugin "
                 .. "configuration is fixed")
      f = {
        err = err,
        code = code,
        endpoint = endpoint,
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
    endpoint = endpoint,
    spool_dir = spool_dir,
    poll_interval = poll,
    next_poll = now() + poll,
    shutdown_ms = shutdown_s * 1000,
    last_used = now(),
    refused = {},
    refused_extra = 0,
    drop_overflow_seen = 0,
    log_overflow_seen = 0,
  }
  queues[key] = st

  if f then
    failures[key] = nil
    log_notice("log queue for ", endpoint, " created after ", f.attempts,
               " failed attempts")
    for _, data in ipairs(f.backlog or {}) do
      local ok, eerr = q:enqueue(data)
      if not ok then
        st.refused[#st.refused + 1] = { err = eerr, data = data }
      end
    end
    f.backlog = nil
    report_unqueued(f, true)
  end
  return st
end

local function get_queue(conf)
  local key = conf_key(conf)
  local st = queues[key]
  if st then
    return st
  end
  if closing then
    return nil
  end
  local f = failures[key]
  if f and not (f.retry_at and now() >= f.retry_at) then
    return nil, f
  end
  return create_queue(key, conf)
end

-- Shuts one queue down (within its shutdown_timeout), reports what it could
-- not send and frees it.
local function retire(st)
  queues[st.key] = nil
  local ok = st.q:shutdown(st.shutdown_ms)
  local final_stats = st.q:stats()
  -- close() moves what the library still holds into Lua tables, which
  -- drain() then reports; the library's memory is freed here.
  st.q:close(0)
  drain(st, huge, final_stats)
  return ok
end

-- Shuts every queue down within its shutdown_timeout and reports what could
-- not be sent; later log() calls report their entry directly.
local function shutdown_all()
  closing = true
  local list = {}
  for _, st in pairs(queues) do
    list[#list + 1] = st
  end
  for _, st in ipairs(list) do
    if retire(st) then
      log_notice("log queue for ", st.endpoint, " shut down, nothing was ",
                 "left to send")
    else
      log_warn("log queue for ", st.endpoint, " shut down before everything ",
               "was delivered; see the dropped entries reported above")
    end
  end
  for key, f in pairs(failures) do
    report_unqueued(f, true)
    failures[key] = nil
  end
end

local function tick(premature)
  if premature or worker_exiting() then
    if not closing and not exit_hooked then
      shutdown_all()
    end
    return
  end
  update_time()
  local t = now()
  local idle
  for _, st in pairs(queues) do
    if t >= st.next_poll then
      st.next_poll = t + st.poll_interval
      if drain(st, MAX_DROPS_PER_TICK) >= MAX_DROPS_PER_TICK then
        st.next_poll = t -- more waiting: go on at the next tick
      end
      if t - st.last_used > IDLE_QUEUE_TIMEOUT then
        idle = idle or {}
        idle[#idle + 1] = st
      end
    end
  end
  -- A configuration that is no longer used (changed in Kong, route deleted)
  -- would otherwise keep its queue and thread for the worker's life. Only
  -- an empty queue is retired, so this never waits on a send.
  for _, st in ipairs(idle or {}) do
    local s = st.q:stats()
    if s and s.pending == 0 and s.in_flight == 0 then
      retire(st)
      log_debug("closed the idle log queue for ", st.endpoint)
    end
  end
  for _, f in pairs(failures) do
    report_unqueued(f, false)
  end
end

-- custom_fields_by_lua ---------------------------------------------------------------
-- Code strings come from the configuration (an admin's input), compiled once
-- each and run with a small environment, like Kong's sandbox.

local sandbox_env
local compiled = {}

local function get_sandbox()
  if not sandbox_env then
    sandbox_env = {
      kong = get_kong(), ngx = ngx,
      type = type, tostring = tostring, tonumber = tonumber, pairs = pairs,
      ipairs = ipairs, next = next, select = select, error = error,
      pcall = pcall, unpack = unpack,
      string = string, table = table, math = math,
      os = { time = os.time, date = os.date, clock = os.clock },
    }
  end
  return sandbox_env
end

local function compile(code)
  local fn = compiled[code]
  if fn == nil then
    local f, err = loadstring(code, "=custom_fields_by_lua")
    if f then
      setfenv(f, setmetatable({}, { __index = get_sandbox() }))
      fn = f
    else
      fn = false
      log_err("custom_fields_by_lua: cannot compile: ", err)
    end
    compiled[code] = fn
  end
  return fn
end

-- Sets entry["a"]["b"] for the key "a.b", creating tables on the way.
local function set_path(entry, key, value)
  local t = entry
  local last
  for part in key:gmatch("[^.]+") do
    if last then
      local nxt = t[last]
      if type(nxt) ~= "table" then
        nxt = {}
        t[last] = nxt
      end
      t = nxt
    end
    last = part
  end
  if last then
    t[last] = value
  end
end

local function add_custom_fields(entry, fields)
  for key, code in pairs(fields) do
    local fn = type(code) == "string" and compile(code)
    if fn then
      local ok, value = pcall(fn)
      if ok then
        set_path(entry, key, value)
      else
        log_err("custom_fields_by_lua: ", key, ": ", value)
      end
    end
  end
end

-- Phases -------------------------------------------------------------------------------

function BatchqLogHandler:init_worker()
  if timer_started then
    return
  end
  local ok, err = timer_every(TICK, tick)
  if not ok then
    log_err("could not start the drop report timer: ", err)
    return
  end
  timer_started = true
end

function BatchqLogHandler:log(conf)
  local k = get_kong()
  local entry = k.log.serialize()
  local fields = conf.custom_fields_by_lua
  if type(fields) == "table" and next(fields) then
    add_custom_fields(entry, fields)
  end
  local data, jerr = cjson.encode(entry)
  if not data then
    log_err("cannot encode the log entry as JSON: ", jerr)
    return
  end

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
    -- The timer has already shut the queues down (the worker is exiting)
    -- and will not run again: report this entry now.
    log_err("worker is exiting and the log queue for ",
            endpoint_for_logs(conf.http_endpoint),
            " is closed: 1 entry not sent; it is printed below")
    print_entry("worker exiting", data)
    return
  end

  local b = f.backlog
  if b and #b < MAX_BACKLOG then
    b[#b + 1] = data
  else
    f.unqueued = f.unqueued + 1
  end
end

-- For exit_worker_by_lua_block: runs after the worker's last request.
function BatchqLogHandler.exit_worker()
  shutdown_all()
end

-- The host promises to call exit_worker() at worker exit (see the top).
function BatchqLogHandler.use_exit_worker_hook()
  exit_hooked = true
end

-- What batchq.new() gets for a configuration (exposed for tests).
BatchqLogHandler._queue_conf = queue_conf

-- For tests and status pages: the stats of this worker's queues.
function BatchqLogHandler.stats()
  local out = {}
  for _, st in pairs(queues) do
    out[#out + 1] = { endpoint = st.endpoint, stats = st.q:stats() }
  end
  return out
end

return BatchqLogHandler
