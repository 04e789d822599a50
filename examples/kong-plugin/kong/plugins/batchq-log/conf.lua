-- batchq-log: what a plugin configuration means for libbatchq.
--
--   queue_conf(conf) -> the table handed to batchq.new(): map(conf) minus the
--                       keys the loaded libbatchq does not know yet (probed
--                       once, see supports()).
--   conf_key(conf)   -> the name of the queue a configuration feeds (equal
--                       mappings share a queue); follows in-place changes.
--   map(conf)        -> the whole mapping, pure (no library needed).
--   LIB_KEYS         -> the keys map() may emit (an allow-list: anything else
--                       in `conf`, e.g. what Kong adds, is never passed on).
--
-- The mapping gives each configuration http-log's behaviour on the Kong
-- version that saved it. A configuration with a `queue` record is a 3.x one
-- (the schema declares it exactly when Kong has kong.tools.queue_schema):
-- Kong 3.x's queue (kong/tools/queue.lua) - exponential backoff from
-- queue.initial_retry_delay capped by queue.max_retry_delay, retries until
-- queue.max_retry_time, coalescing for queue.max_coalescing_delay,
-- queue.max_batch_size / max_entries / max_bytes / concurrency_limit, and the
-- deprecated queue_size / flush_timeout overriding them when set and not their
-- old default, as Queue.get_plugin_params does; success is status < 300.
-- Without it, Kong 2.x's batch queue (kong/tools/batch_queue.lua): queue_size
-- entries per batch, retry_count, quadratic backoff, flush after
-- flush_timeout idle; success is status < 400. In both, `timeout` bounds each
-- socket operation, as a cosocket timeout does, and the certificate is only
-- verified when ssl_verify is on.
--
-- Values Kong's schema accepts but libbatchq cannot take are mapped, never
-- refused (a refused configuration is a queue that is never created):
--   timeout: whole ms (nginx truncates); < 1 ms -> 60000 (nginx's
--     lua_socket_*_timeout default); above a day -> a day
--   keepalive: whole ms; < 1 ms (nginx: 0 = no idle timeout) -> a day;
--     above a day -> a day
--   queue_size / max_batch_size < 1 -> 1; a batch never larger than
--     max_entries (Kong's queue never holds more)
--   retry_count < 0 -> 0; durations clamped to libbatchq's [0.001 s, a day]
--   initial_retry_delay above max_retry_delay -> max_retry_delay (Kong waits
--     min(max_retry_delay, 2^n * initial_retry_delay))
--   max_retry_time < 1 ms (Kong: no retry) -> one attempt
--   max_bytes <= 0 (Kong: every entry too large) -> 1
--   concurrency_limit -1 (unlimited) -> 16 requests in flight
--
-- Concurrency at batch size 1: unless `concurrency` is set, a queue whose
-- batches hold one entry (http-log's default queue_size / max_batch_size 1)
-- keeps up to Q1_CONCURRENCY requests in flight (more of them as the backlog
-- grows: README, "Order"), so that one request per entry keeps up with a
-- gateway worker (bench/results.md, case 4). Each entry is
-- still sent in arrival order, but up to Q1_CONCURRENCY at once, so they can
-- arrive out of order (and a retried one after later ones). On 3.x this
-- reads concurrency_limit 1 (its default) at batch size 1 the same way; set
-- `concurrency = 1` for Kong's strict order. Larger batches: 1 (Kong's).
local null = ngx.null
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local floor = math.floor
local min = math.min
local max = math.max
local fmt = string.format
local sort = table.sort
local concat = table.concat
local next = next

local _M = {}

local DAY_MS = 86400000
local DAY_S = 86400
local MAX_COUNT = 100000000
local MAX_RETRY_COUNT = 1000000
local MAX_CONCURRENCY = 64
-- what Kong's concurrency_limit = -1 ("unlimited") becomes (as libbatchq's
-- own reading of -1)
local UNLIMITED_CONCURRENCY = 16
-- requests in flight at batch size 1 when `concurrency` is unset (measured:
-- bench/results.md, case 4c: 1 and 2 fell behind a busy worker on 2 CPUs
-- and pushed entries out; 3 and 4 kept up, 4 with room for a slower
-- receiver)
local Q1_CONCURRENCY = 4
-- nginx's lua_socket_connect/send/read_timeout default, which a cosocket
-- timeout of 0 falls back to
local NGINX_SOCKET_TIMEOUT_MS = 60000

-- Every key map() can emit. success_status_max and timeout_scope (libbatchq
-- 0.1.0 after the Kong work) are emitted only when the loaded library knows
-- them, so an older libbatchq.so still makes a queue.
local LIB_KEYS = {
  "http_endpoint", "method", "content_type", "headers", "timeout", "keepalive",
  "connect_timeout", "queue_size", "retry_count", "flush_timeout", "process_delay",
  "batch_max_bytes", "max_entries", "max_bytes", "overflow", "max_retry_time",
  "backoff", "initial_retry_delay", "max_retry_delay", "jitter", "flush_mode",
  "concurrency", "shutdown_timeout", "format", "gzip", "ssl_verify", "ca_file",
  "client_cert", "client_key", "drop_permanent_4xx", "spool_dir", "spool_mode",
  "spool_max_bytes", "drop_buffer_entries",
  "success_status_max", "timeout_scope",
}
_M.LIB_KEYS = LIB_KEYS
_M.Q1_CONCURRENCY = Q1_CONCURRENCY

-- Keys only newer libraries take, with a valid value to probe them.
local NEWER_KEYS = { success_status_max = 299, timeout_scope = "operation" }

-- Fields passed through unchanged when set.
local PASS = {
  "http_endpoint", "method", "content_type", "headers", "connect_timeout",
  "batch_max_bytes", "overflow", "process_delay", "jitter", "shutdown_timeout",
  "format", "gzip", "ssl_verify", "ca_file", "client_cert", "client_key",
  "drop_permanent_4xx", "spool_dir", "spool_mode", "spool_max_bytes",
  "drop_buffer_entries",
}

local function set(v)
  return v ~= nil and v ~= null
end

local function is_num(v)
  return type(v) == "number" and v == v
end

local function clamp(v, lo, hi)
  return min(max(v, lo), hi)
end

local function seconds(v, default)
  if not is_num(v) then
    v = default
  end
  return clamp(v, 0.001, DAY_S)
end

local function timeout_ms(v)
  if not is_num(v) then
    return 10000
  end
  v = floor(v)
  if v < 1 then
    return NGINX_SOCKET_TIMEOUT_MS
  end
  return min(v, DAY_MS)
end

local function keepalive_ms(v)
  if not is_num(v) then
    return 60000
  end
  v = floor(v)
  if v < 1 then
    return DAY_MS
  end
  return min(v, DAY_MS)
end

local function count(v, lo, hi, default)
  if not is_num(v) then
    return default
  end
  return clamp(floor(v), lo, hi)
end

local function max_bytes(v)
  return clamp(floor(v), 1, 2 ^ 53)
end

-- Kong 3.x's queue (tools/queue.lua, Queue.get_plugin_params).
local function map_queue_3x(conf, q)
  local queue = conf.queue
  local batch = queue.max_batch_size
  if set(conf.queue_size) and conf.queue_size ~= 1 then
    batch = conf.queue_size
  end
  local delay = queue.max_coalescing_delay
  if set(conf.flush_timeout) and conf.flush_timeout ~= 2 then
    delay = conf.flush_timeout
  end
  -- retry_count "no longer works" on 3.x: max_retry_time bounds the retries.
  q.queue_size = count(batch, 1, MAX_COUNT, 1)
  q.flush_timeout = seconds(delay, 1)
  q.flush_mode = "coalescing"
  q.max_entries = count(queue.max_entries, 1, MAX_COUNT, 10000)
  if is_num(queue.max_bytes) then
    q.max_bytes = max_bytes(queue.max_bytes)
  end
  q.backoff = "exponential"
  q.initial_retry_delay = seconds(queue.initial_retry_delay, 0.01)
  q.max_retry_delay = seconds(queue.max_retry_delay, 60)
  local retry_time = is_num(queue.max_retry_time) and queue.max_retry_time or 60
  if retry_time < 0.001 then
    q.retry_count = 1
  else
    q.retry_count = MAX_RETRY_COUNT
    q.max_retry_time = min(retry_time, DAY_S)
  end
  if queue.concurrency_limit == -1 then
    q.concurrency = UNLIMITED_CONCURRENCY
  end  -- else (1): decided in map() from the batch size
  q.success_status_max = 299
end

-- Kong 2.x's batch queue (tools/batch_queue.lua) as http-log 2.x sets it up.
local function map_queue_2x(conf, q)
  q.queue_size = count(conf.queue_size, 1, MAX_COUNT, 1)
  q.retry_count = count(conf.retry_count, 0, MAX_RETRY_COUNT, 10)
  q.flush_timeout = seconds(conf.flush_timeout, 2)
  q.flush_mode = "kong_idle"
  q.backoff = "kong_quadratic"
  q.success_status_max = 399
end

-- batchq's own queue fields: on 2.x they have defaults; on 3.x they are
-- unset unless the user set them, and then override the `queue` record.
local function map_batchq_fields(conf, q)
  if set(conf.max_entries) then q.max_entries = count(conf.max_entries, 0, MAX_COUNT, 10000) end
  if set(conf.max_bytes) then q.max_bytes = clamp(floor(conf.max_bytes), 0, 2 ^ 53) end
  if set(conf.flush_mode) then q.flush_mode = conf.flush_mode end
  if set(conf.backoff) then q.backoff = conf.backoff end
  if set(conf.initial_retry_delay) then q.initial_retry_delay = seconds(conf.initial_retry_delay, 0.01) end
  if set(conf.max_retry_delay) then q.max_retry_delay = seconds(conf.max_retry_delay, 60) end
  if set(conf.max_retry_time) then q.max_retry_time = clamp(conf.max_retry_time, 0, DAY_S) end
  if set(conf.concurrency) then q.concurrency = count(conf.concurrency, 1, MAX_CONCURRENCY, 1) end
  if q.initial_retry_delay and q.max_retry_delay and q.initial_retry_delay > q.max_retry_delay then
    q.initial_retry_delay = q.max_retry_delay
  end
  -- libbatchq needs max_entries >= batch size (0 = unbounded); a Kong queue
  -- never holds more than max_entries, so neither does a batch.
  if q.max_entries and q.max_entries ~= 0 and q.max_entries < q.queue_size then
    if type(conf.queue) == "table" then
      q.queue_size = q.max_entries
    else
      -- 2.x's queue is unbounded: batchq's bound grows to one batch.
      q.max_entries = q.queue_size
    end
  end
end

local function map(conf)
  local q = {}
  for _, k in ipairs(PASS) do
    local v = conf[k]
    if set(v) then
      q[k] = v
    end
  end
  if type(q.headers) == "table" and next(q.headers) == nil then
    q.headers = nil
  end
  q.timeout = timeout_ms(conf.timeout)
  q.keepalive = keepalive_ms(conf.keepalive)
  q.timeout_scope = "operation"
  if type(conf.queue) == "table" then
    map_queue_3x(conf, q)
  else
    map_queue_2x(conf, q)
  end
  map_batchq_fields(conf, q)
  if q.concurrency == nil then
    q.concurrency = q.queue_size == 1 and Q1_CONCURRENCY or 1
  end
  return q
end

-- Does the loaded libbatchq take `key`? Asked once per key: batchq.new with
-- only that key fails on the missing http_endpoint when the key is known,
-- on the key itself when not, and creates nothing either way.
local supported = {}
local function supports(key)
  local s = supported[key]
  if s == nil then
    local ok, batchq = pcall(require, "batchq")
    if not ok then
      s = true -- no library here: the mapping is all there is to see
    else
      local q, err = batchq.new({ [key] = NEWER_KEYS[key] })
      if q then
        q:close()
        s = true
      else
        s = not tostring(err):find(key .. ": unknown key", 1, true)
      end
    end
    supported[key] = s
  end
  return s
end
_M.supports = supports

local function queue_conf(conf)
  local q = map(conf)
  for k in pairs(NEWER_KEYS) do
    if q[k] ~= nil and not supports(k) then
      q[k] = nil
    end
  end
  return q
end

-- A deterministic text for a Lua value: keys sorted, types tagged, so equal
-- configurations give equal keys whatever the table's iteration order
-- (Kong issue #9272: the queue id ignored settings that changed).
local function canonical(v, out)
  local t = type(v)
  if t == "table" then
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then
        return ta < tb
      end
      return tostring(a) < tostring(b)
    end)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      canonical(k, out)
      out[#out + 1] = "="
      canonical(v[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  elseif t == "string" then
    out[#out + 1] = fmt("%q", v)
  else
    out[#out + 1] = t:sub(1, 1) .. tostring(v)
  end
  return out
end

-- In-place changes. Kong (3.x) resolves vault references into the same
-- configuration table on every request (kong.vault.update from the plugins
-- iterator): a field listed in a `$refs` table gets its secret's current
-- value, with no other marker changing (__key__ / __seq__ stay). So each
-- cached key remembers the referenced slots and their values, and is
-- recomputed when one differs. A configuration without `$refs` costs one
-- table lookup per request.
local function watch_refs(t, slots)
  for k, v in pairs(t) do
    if k ~= "$refs" and type(v) == "table" then
      watch_refs(v, slots)
    end
  end
  local refs = t["$refs"]
  if type(refs) == "table" then
    for name, ref in pairs(refs) do
      if type(ref) == "string" then
        slots[#slots + 1] = { t, name }
      elseif type(ref) == "table" and type(t[name]) == "table" then
        for k in pairs(ref) do
          slots[#slots + 1] = { t[name], k }
        end
      end
    end
  end
  return slots
end

local cache = setmetatable({}, { __mode = "k" })

local function compute(conf)
  local slots = watch_refs(conf, {})
  local values = {}
  for i, s in ipairs(slots) do
    values[i] = s[1][s[2]]
  end
  local e = { key = concat(canonical(map(conf), {})), slots = slots, values = values }
  cache[conf] = e
  return e
end

local function conf_key(conf)
  local e = cache[conf]
  if not e then
    return compute(conf).key
  end
  local slots, values = e.slots, e.values
  for i = 1, #slots do
    local s = slots[i]
    if s[1][s[2]] ~= values[i] then
      return compute(conf).key
    end
  end
  return e.key
end

_M.map = map
_M.queue_conf = queue_conf
_M.conf_key = conf_key

return _M
