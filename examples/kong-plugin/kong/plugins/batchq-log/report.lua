-- batchq-log: how what a queue could not send is told in the error log.
--
-- Kong's own wording ("entry batch was already tried N times, dropping it",
-- "queue full, dropping old entries ...", "could not send entries due to
-- max_retry_time exceeded ...") is written by libbatchq itself as a log line
-- of the queue; forward_logs() passes it on once. What this module adds to a
-- drop is what Kong never said: how many entries, why, for which endpoint and
-- where they are now (kept in the spool, or printed here in full).
--
-- Every function takes the registry's queue state `st` (see queues.lua):
-- st.q (the batchq queue), st.label, st.spool_dir, st.refused,
-- st.refused_extra, st.drop_overflow_seen, st.log_overflow_seen.
local ngx = ngx
local type = type
local ipairs = ipairs
local tostring = tostring
local fmt = string.format
local min = math.min
local ceil = math.ceil

local _M = {}

-- nginx cuts error log lines at 2048 bytes (NGX_MAX_ERROR_STR); payloads are
-- printed in parts that fit with the line's prefix and context.
local PRINT_CHUNK = 1500
-- A permanently broken configuration is reminded of at most this often.
local UNQUEUED_REPORT_INTERVAL = 60 -- s

local function get_kong()
  return kong or rawget(_G, "kong")
end

local function log_err(...)
  get_kong().log.err(...)
end

local function log_warn(...)
  get_kong().log.warn(...)
end

_M.log_err = log_err
_M.log_warn = log_warn

function _M.log_notice(...)
  get_kong().log.notice(...)
end

function _M.log_debug(...)
  get_kong().log.debug(...)
end

-- The queue's own log lines come with libbatchq's level names.
local LEVEL_LOGGERS = {
  error = log_err,
  warn = log_warn,
  info = _M.log_notice,
  debug = _M.log_debug,
}

-- The endpoint as every message of the plugin names it: "host:port", never
-- the credentials or the path. The one definition; the registry computes it
-- once per queue (st.label).
function _M.label(url)
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
_M.print_entry = print_entry

-- One line per group of drops: batchq's part only (Kong's wording is the
-- queue's own log line, forwarded once by forward_logs()).
local function drop_summary(st, d, n)
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
  return fmt("%d %s for %s dropped (reason %s, %d attempts%s); %s",
             n, n == 1 and "entry" or "entries", st.label, d.reason,
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
-- than max_bytes, shut down): collected by the registry and reported from the
-- timer, so a flood of refusals costs one summary per tick, not a line per
-- request.
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
                .. "printed below", st.label, #g,
                #g == 1 and "entry" or "entries", err))
    for _, data in ipairs(g) do
      print_entry("refused", data)
    end
  end
  if extra > 0 then
    log_err(fmt("the queue for %s refused %d more entries that were not "
                .. "kept for printing", st.label, extra))
  end
end

local function forward_logs(st, lines)
  for _, l in ipairs(lines) do
    local logger = LEVEL_LOGGERS[l.level] or log_err
    logger(l.msg, " (queue for ", st.label, ")")
  end
end

-- What the library could not keep for us: dropped entries beyond its drop
-- buffer (drop_buffer_entries / drop_buffer_bytes) between two polls, and
-- log lines beyond its log buffer. Only counted there, so at least the count
-- is reported. `s` is a stats() table (read before close()).
local function report_overflow(st, s)
  if not s then
    return
  end
  local lost = s.drop_buffer_overflow - st.drop_overflow_seen
  if lost > 0 then
    st.drop_overflow_seen = s.drop_buffer_overflow
    log_err(fmt("%d dropped entries for %s could not be kept for reporting "
                .. "(the drop buffer was full%s); raise drop_buffer_entries or "
                .. "lower drop_poll_interval", lost, st.label,
                st.spool_dir and ", they are in the dead-letter spool under "
                .. st.spool_dir or ""))
  end
  local lines = s.log_overflow - st.log_overflow_seen
  if lines > 0 then
    st.log_overflow_seen = s.log_overflow
    log_warn(fmt("%d log lines of the queue for %s were lost (log buffer "
                 .. "full)", lines, st.label))
  end
end

-- Pulls and reports everything a queue has for the host (up to max_drops
-- dropped entries); returns how many dropped entries it reported.
function _M.drain(st, max_drops, final_stats)
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
      log_err("cannot poll dropped entries of the queue for ", st.label,
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

-- Entries of a configuration whose queue could not be created (`f`, see
-- queues.lua): the held ones (spool unusable) are printed when the worker
-- exits; the others are counted and the count is reported, at most every
-- UNQUEUED_REPORT_INTERVAL.
function _M.unqueued(f, final)
  if final and f.backlog and f.backlog[1] then
    local list = f.backlog
    f.backlog = {}
    log_err(fmt("%d %s for %s could not be queued (%s); the entries are "
                .. "printed below", #list, #list == 1 and "entry" or
                "entries", f.label, f.err))
    for _, data in ipairs(list) do
      print_entry("not queued", data)
    end
  end
  local t = ngx.now()
  if f.unqueued > f.reported
     and (final or t - f.reported_at >= UNQUEUED_REPORT_INTERVAL)
  then
    log_err(fmt("%d entries for %s were not logged because the log queue "
                .. "could not be created: %s", f.unqueued - f.reported,
                f.label, f.err))
    f.reported = f.unqueued
    f.reported_at = t
  end
end

return _M
