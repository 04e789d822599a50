-- batchq.lua - LuaJIT FFI binding of libbatchq.so (capi/batchq.h).
--
--   local batchq = require "batchq"
--   local q, err = batchq.new({ http_endpoint = "http://127.0.0.1:9000/logs" })
--   local ok, err, code = q:enqueue('{"status":200}')
--   for _, d in ipairs(q:poll_dropped(256)) do ... d.data, d.reason ... end
--   q:close(5000)
--
-- Rules that come from LuaJIT and nginx (LuaJIT's FFI docs, lua-resty-core):
--  * Nothing here is called back from the library's threads: dropped entries,
--    log lines and statistics are pulled (poll_dropped, poll_log, stats).
--  * Create queues in the nginx worker (init_worker or lazily), never in
--    init_by_lua: the sending thread does not survive fork().
--  * flush(), shutdown() and close() block the calling thread up to their
--    timeout: call them from a timer or at worker exit, never from a request.
--    shutdown_begin() + shutdown_poll() never block (worker exit in nginx).
--  * Every function returns nil plus an error string (and the numeric
--    BATCHQ_E* code where there is one) instead of raising, except require()
--    when the library cannot be found.
local ffi = require "ffi"
local cjson = require "cjson.safe"

local ffi_new = ffi.new
local ffi_string = ffi.string
local ffi_gc = ffi.gc
local ffi_sizeof = ffi.sizeof
local type = type
local tonumber = tonumber
local tostring = tostring
local pairs = pairs
local next = next
local setmetatable = setmetatable
local pcall = pcall
local floor = math.floor

-- The declarations of capi/batchq.h (batchq/cdef.lua, checked against the
-- header by tests/lua/test_cdef.lua) and the library (batchq/loader.lua).
local cdef = require "batchq.cdef"
local loader = require "batchq.loader"

local _M = { _VERSION = "0.1.0" }

-- Error codes of batchq.h (enum batchq_error), from batchq/cdef.lua.
local E = cdef.errors
_M.errors = E

local EINVAL = E.EINVAL
local ETIMEDOUT = E.ETIMEDOUT
local ESMALLBUF = E.ESMALLBUF

local LOG_LEVELS = { [0] = "debug", [1] = "info", [2] = "warn", [3] = "error" }

-- Kept referenced by the module (and by every finalizer closure below) so the
-- library is never unloaded while a queue handle exists.
local lib, lib_path = loader.load()
_M.library_path = lib_path

-- Module-level scratch buffers ----------------------------------------------
-- One nginx worker runs one Lua VM on one thread and nothing here yields, so
-- module-level buffers are never used by two calls at once.

local ERRBUF_LEN = 1024
local errbuf = ffi_new("char[?]", ERRBUF_LEN)
local queue_out = ffi_new("batchq_queue *[1]")
local size_out = ffi_new("size_t[1]")
local level_out = ffi_new("int[1]")
local stats_buf = ffi_new("batchq_stats_t")
local STATS_SIZE = ffi_sizeof("batchq_stats_t")
local DROPPED_SIZE = ffi_sizeof("batchq_dropped")

-- Grown on demand (stats text, dropped records); never shrunk.
local text_buf_len = 8192
local text_buf = ffi_new("char[?]", text_buf_len)
local dropped_cap = 0
local dropped_buf

-- Log lines: batchq_poll_log() leaves a line that does not fit in place and
-- says how long it is (BATCHQ_ESMALLBUF); the buffer then grows to fit.
local log_buf_len = 4096
local log_buf = ffi_new("char[?]", log_buf_len)

-- Names of the drop reasons, read from the library so a reason appended to
-- the enum later is named without touching this file.
local REASONS = {}
for i = 0, 15 do
  local name = ffi_string(lib.batchq_drop_reason_name(i))
  if name ~= "unknown" then
    REASONS[i] = name
  end
end
_M.drop_reasons = REASONS

local function strerror(code)
  return ffi_string(lib.batchq_strerror(code))
end
_M.strerror = strerror

-- errbuf's text when the library wrote one, else the code's name.
local function errmsg(code)
  if errbuf[0] ~= 0 then
    return ffi_string(errbuf)
  end
  return strerror(code)
end

function _M.version()
  return ffi_string(lib.batchq_version())
end

function _M.version_number()
  return tonumber(lib.batchq_version_number())
end

-- Finalizer of a handle the Lua side forgot to close. A closure (not
-- lib.batchq_free itself) so that it keeps `lib` alive. batchq_free() shuts
-- the queue down with the configured shutdown_timeout first, which blocks
-- the collecting thread; dropped entries nobody polled are gone with it, so
-- hosts should close() queues explicitly.
local function free_handle(p)
  lib.batchq_free(p)
end

-- Timeouts: the C side takes int64 milliseconds >= 0. Negative means "do
-- not wait"; huge values (math.huge) are capped rather than handed to a
-- double -> int64 conversion that C leaves undefined.
local MAX_MS = 2 ^ 53
local function check_ms(ms, default)
  if ms == nil then
    return default
  end
  if type(ms) ~= "number" or ms ~= ms then
    return nil
  end
  if ms < 0 then
    return 0
  end
  if ms > MAX_MS then
    return MAX_MS
  end
  return floor(ms)
end

-- The queue object -------------------------------------------------------------

local methods = {}
local mt = { __index = methods }

local DEFAULT_TIMEOUT_MS = 5000

-- new(conf): conf is a Lua table with batchq.h's configuration keys. The
-- encoder is a private cjson instance so that a host's global cjson settings
-- (e.g. encode_empty_table_as_object(false) in OpenResty) cannot change the
-- JSON the library sees.
local json = cjson.new()

function _M.new(conf)
  if type(conf) ~= "table" then
    return nil, "configuration must be a table", EINVAL
  end

  -- An empty Lua table cannot say whether it is an object or an array; an
  -- empty `headers` means "no headers", so it is simply left out.
  local headers = conf.headers
  if type(headers) == "table" and next(headers) == nil then
    local copy = {}
    for k, v in pairs(conf) do
      if k ~= "headers" then
        copy[k] = v
      end
    end
    conf = copy
  end

  local s, jerr = json.encode(conf)
  if not s then
    return nil, "configuration cannot be encoded as JSON: " .. tostring(jerr),
           EINVAL
  end

  errbuf[0] = 0
  queue_out[0] = nil
  local rc = lib.batchq_new(s, #s, queue_out, errbuf, ERRBUF_LEN)
  if rc ~= 0 then
    return nil, errmsg(rc), rc
  end
  local h = ffi_gc(queue_out[0], free_handle)
  queue_out[0] = nil

  return setmetatable({ h = h }, mt)
end

-- An enqueue's return code as the methods' results: true, or nil + the
-- message errbuf (or the code) gives + the code.
local function enqueue_result(rc)
  if rc == 0 then
    return true
  end
  return nil, errmsg(rc), rc
end

-- true, or nil + message + code. Refused entries stay with the caller.
function methods.enqueue(self, entry)
  local h = self.h
  if not h then
    return nil, "closed", E.ESHUTDOWN
  end
  if type(entry) ~= "string" then
    return nil, "entry must be a string", EINVAL
  end
  errbuf[0] = 0
  return enqueue_result(lib.batchq_enqueue_ex(h, entry, #entry, errbuf, ERRBUF_LEN))
end

-- The result of flush/shutdown/close: true, or nil + "timeout" / the error.
local function timed_result(rc)
  if rc == 0 then
    return true
  end
  if rc == ETIMEDOUT then
    return nil, "timeout", rc
  end
  return nil, strerror(rc), rc
end

-- flush() and shutdown(): the same argument check and result mapping.
local function timed_call(self, ms, fn)
  local h = self.h
  if not h then
    return nil, "closed"
  end
  local t = check_ms(ms, DEFAULT_TIMEOUT_MS)
  if not t then
    return nil, "timeout must be a number of milliseconds", EINVAL
  end
  local rc = fn(h, t)
  return timed_result(rc)
end

-- Blocks up to ms (default 5000) until everything enqueued before the call is
-- delivered or dropped: true, or nil + "timeout" (nothing is lost then).
function methods.flush(self, ms)
  return timed_call(self, ms, lib.batchq_flush)
end

-- Stops accepting entries and delivers what it can within ms (default 5000);
-- the rest is dropped with reason "shutdown" and can still be polled.
-- true when nothing was left at the deadline, else nil + "timeout". Idempotent.
function methods.shutdown(self, ms)
  return timed_call(self, ms, lib.batchq_shutdown)
end

-- Starts a shutdown and returns at once (never waits on the network or the
-- deadline): from then on enqueue() is refused; the library's threads
-- deliver until ms (default 5000) and then spool or drop (reason "shutdown",
-- pollable) what is left. true, or nil + err + code. Calling it again, or on
-- a closed queue, returns true.
function methods.shutdown_begin(self, ms)
  local h = self.h
  if not h then
    return true
  end
  local t = check_ms(ms, DEFAULT_TIMEOUT_MS)
  if not t then
    return nil, "timeout must be a number of milliseconds", EINVAL
  end
  local rc = lib.batchq_shutdown_begin(h, t)
  if rc == 0 then
    return true
  end
  return nil, strerror(rc), rc
end

-- true when the begun shutdown has finished (close() then does not block),
-- false while it runs, nil + err + code otherwise (e.g. none was begun).
-- Never blocks. A closed queue has finished.
function methods.shutdown_poll(self)
  local h = self.h
  if not h then
    return true
  end
  local rc = lib.batchq_shutdown_poll(h)
  if rc == 0 then
    return true
  end
  if rc == E.EINPROGRESS then
    return false
  end
  if rc == EINVAL then
    return nil, "no shutdown was begun (call shutdown_begin first)", rc
  end
  return nil, strerror(rc), rc
end

local function u64(v)
  return tonumber(v)
end

-- A Lua table of batchq_stats_t (numbers; exact up to 2^53): every uint64_t
-- field by its name, and dropped_by_reason by reason name.
local STATS_FIELDS = cdef.stats_fields
function methods.stats(self)
  local h = self.h
  if not h then
    return nil, "closed"
  end
  local s = stats_buf
  s.struct_size = STATS_SIZE
  local rc = lib.batchq_stats(h, s)
  if rc ~= 0 then
    return nil, strerror(rc), rc
  end
  local by_reason = {}
  for i, name in pairs(REASONS) do
    by_reason[name] = u64(s.dropped_by_reason[i])
  end
  local t = { dropped_by_reason = by_reason }
  for i = 1, #STATS_FIELDS do
    local name = STATS_FIELDS[i]
    t[name] = u64(s[name])
  end
  return t
end

-- Calls a "fill this buffer" function, growing the shared buffer when the
-- library says it is too small. The text can grow between two calls (new
-- counters), hence a few rounds rather than one.
local function read_text(h, fn)
  for _ = 1, 4 do
    size_out[0] = 0
    local rc = fn(h, text_buf, text_buf_len, size_out)
    if rc == 0 then
      return ffi_string(text_buf, size_out[0])
    end
    if rc ~= ESMALLBUF then
      return nil, strerror(rc), rc
    end
    local need = tonumber(size_out[0]) + 1
    local n = text_buf_len
    while n < need do
      n = n * 2
    end
    text_buf = ffi_new("char[?]", n)
    text_buf_len = n
  end
  return nil, strerror(ESMALLBUF), ESMALLBUF
end

function methods.stats_json(self)
  local h = self.h
  if not h then
    return nil, "closed"
  end
  return read_text(h, lib.batchq_stats_json)
end

function methods.stats_prometheus(self)
  local h = self.h
  if not h then
    return nil, "closed"
  end
  return read_text(h, lib.batchq_stats_prometheus)
end

-- Copies n records out of the library's memory at once: the pointers are
-- only valid until the next call on this queue.
local function copy_dropped(buf, n, out)
  for i = 0, n - 1 do
    local d = buf[i]
    local err = ""
    if d.last_error ~= nil and d.last_error_len > 0 then
      err = ffi_string(d.last_error, d.last_error_len)
    end
    out[#out + 1] = {
      data = d.data ~= nil and ffi_string(d.data, d.len) or "",
      reason = REASONS[d.reason] or tostring(d.reason),
      attempts = tonumber(d.attempts),
      error = err,
      time_ms = tonumber(d.time_ms),
      spooled = d.spooled ~= 0,
    }
  end
  return out
end

local DEFAULT_POLL_MAX = 256

local function poll_dropped_c(h, max, out)
  if max > dropped_cap then
    dropped_buf = ffi_new("batchq_dropped[?]", max)
    dropped_cap = max
  end
  -- The library reads out[0].struct_size for all records.
  dropped_buf[0].struct_size = DROPPED_SIZE
  size_out[0] = 0
  local rc = lib.batchq_poll_dropped(h, dropped_buf, max, size_out)
  if rc ~= 0 then
    return nil, strerror(rc), rc
  end
  return copy_dropped(dropped_buf, tonumber(size_out[0]), out)
end

local function poll_log_c(h, max, out)
  local n = 0
  while n < max do
    size_out[0] = 0
    level_out[0] = 0
    local rc = lib.batchq_poll_log(h, level_out, log_buf, log_buf_len,
                                   size_out)
    if rc == ESMALLBUF then
      log_buf_len = tonumber(size_out[0]) + 1
      log_buf = ffi_new("char[?]", log_buf_len)
    elseif rc ~= 0 then
      return nil, strerror(rc), rc
    else
      local len = tonumber(size_out[0])
      if len == 0 then
        break
      end
      n = n + 1
      out[#out + 1] = { level = LOG_LEVELS[level_out[0]] or "error",
                        msg = ffi_string(log_buf, len) }
    end
  end
  return out
end

-- poll_dropped() and poll_log(): the same argument check, and after close()
-- what close() drained into the object.
local function poll(self, max, leftover_field, poll_c)
  max = max or DEFAULT_POLL_MAX
  if type(max) ~= "number" or max < 1 then
    return nil, "max must be a positive number", EINVAL
  end
  max = floor(max)
  local h = self.h
  if not h then
    return self:_take_leftover(leftover_field, max)
  end
  return poll_c(h, max, {})
end

-- Returns an array (possibly empty) of up to max (default 256) dropped
-- entries, oldest first:
--   { data=<entry>, reason=<name>, attempts=<n>, error=<last error or "">,
--     time_ms=<Unix ms>, spooled=<boolean> }
-- After close(), returns what close() drained and nobody polled yet.
function methods.poll_dropped(self, max)
  return poll(self, max, "left_dropped", poll_dropped_c)
end

-- Returns an array (possibly empty) of up to max (default 256) log lines of
-- the queue, oldest first: { level = "debug"|"info"|"warn"|"error", msg = }.
function methods.poll_log(self, max)
  return poll(self, max, "left_log", poll_log_c)
end

function methods._take_leftover(self, field, max)
  local left = self[field]
  if not left then
    return {}
  end
  local out = {}
  local n = #left
  local take = n < max and n or max
  for i = 1, take do
    out[i] = left[i]
  end
  if take == n then
    self[field] = nil
  else
    local rest = {}
    for i = take + 1, n do
      rest[#rest + 1] = left[i]
    end
    self[field] = rest
  end
  return out
end

-- Shuts down (ms, default 5000), moves whatever the library still holds for
-- the host (dropped entries, log lines) into Lua tables that poll_dropped()
-- and poll_log() keep returning afterwards, and frees the queue. Returns
-- like shutdown(); a second close() returns true and does nothing.
function methods.close(self, ms)
  local h = self.h
  if not h then
    return true
  end
  local t = check_ms(ms, DEFAULT_TIMEOUT_MS)
  if not t then
    return nil, "timeout must be a number of milliseconds", EINVAL
  end
  local rc = lib.batchq_shutdown(h, t)

  -- Drain before freeing: the library's drop buffer dies with the queue.
  -- The buffer is bounded (drop_buffer_entries), so this loop ends.
  local dropped = self.left_dropped or {}
  while true do
    local before = #dropped
    if not poll_dropped_c(h, DEFAULT_POLL_MAX, dropped) or #dropped == before
    then
      break
    end
  end
  local logs = self.left_log or {}
  poll_log_c(h, 1024, logs)
  self.left_dropped = dropped[1] and dropped or nil
  self.left_log = logs[1] and logs or nil

  self.h = nil
  lib.batchq_free(ffi_gc(h, nil))

  return timed_result(rc)
end

function methods.closed(self)
  return self.h == nil
end

mt.__tostring = function(self)
  if self.h then
    return "batchq queue (" .. tostring(self.h) .. ")"
  end
  return "batchq queue (closed)"
end

-- Entries as Lua tables (batchq_enqueue_lua) --------------------------------

-- LuaJIT's string.buffer (LuaJIT 2.1 from 2021 on; Debian's luajit2 has
-- it). Without it, enqueue_table() refuses and the host encodes with cjson:
--   if batchq.has_string_buffer then q:enqueue_table(t)
--   else q:enqueue(cjson.encode(t)) end
local has_sbuf, sbuf = pcall(require, "string.buffer")
_M.has_string_buffer = has_sbuf and type(sbuf) == "table" and sbuf.new ~= nil
-- One encoder for the worker, reused: its bytes go to C through buf:ref()
-- (a pointer and a length), so no Lua string is made per entry.
local enc = _M.has_string_buffer and sbuf.new() or nil
local ENC_KEEP = 1024 * 1024 -- a buffer grown past this is freed after use
local EJSON = E.EJSON

-- encode_value() runs in the interpreter (calling a jit.off function keeps
-- its callers' traces from compiling through it): in Debian's luajit2
-- (2.1-20230119) a JIT-compiled encode_value corrupted the Lua state
-- (SIGSEGV after a few hundred random draws in tests/lua/test_lua_json.lua;
-- fine with -joff or with this). It is not buf:ref(): the same crash comes
-- with buffer.encode(value) (a Lua string) in place of buf:encode + ref.
-- Under nginx the log phase runs mostly interpreted anyway (jit.v: its
-- traces abort in lua-resty-core and Kong's serializer), so this costs
-- little there; bench/nginx/run_nginx_bench.sh BENCH_JIT_LOG shows it.
local function enc_ref()
  return enc:ref()
end
jit.off(enc_ref)

-- Encodes `value` into the reused buffer: pointer and length, or nil + error.
local function encode_value(value)
  if not enc then
    return nil, "string.buffer is not available in this LuaJIT: encode the entry with cjson and use enqueue()"
  end
  enc:reset()
  local ok, err = pcall(enc.encode, enc, value)
  if not ok then
    enc:reset()
    return nil, "the entry cannot be encoded with string.buffer: " .. tostring(err)
  end
  return enc_ref()
end

local function release_encoder(n)
  if n > ENC_KEEP then
    enc:free()
  else
    enc:reset()
  end
end

-- q:enqueue_table(t): true, or nil + message + code. The library sends the
-- JSON cjson.encode(t) would have made (default settings; see batchq.h
-- batchq_enqueue_lua), made on its own thread. A value cjson would refuse,
-- or one string.buffer cannot encode (functions, userdata, tables nested
-- deeper than 100), gives nil + the reason + BATCHQ_EJSON: encode it with
-- cjson instead to get cjson's own answer. Tables are not modified; their
-- metatables are not looked at (cjson.array_mt has no effect).
function methods.enqueue_table(self, value)
  local h = self.h
  if not h then
    return nil, "closed", E.ESHUTDOWN
  end
  local p, n = encode_value(value)
  if not p then
    return nil, n, enc and EJSON or EINVAL
  end
  errbuf[0] = 0
  local rc = lib.batchq_enqueue_lua(h, p, n, errbuf, ERRBUF_LEN)
  release_encoder(n)
  return enqueue_result(rc)
end

-- batchq.to_json(value): the JSON string enqueue_table(value) would have the
-- queue send, or nil + message + code. For tests and tools: it makes a Lua
-- string, which enqueue_table() avoids.
local json_buf_len = 0
local json_buf
function _M.to_json(value)
  local p, n = encode_value(value)
  if not p then
    return nil, n, enc and EJSON or EINVAL
  end
  local need = 20 * n + 17 -- batchq.h: the JSON is at most 20 * len + 16 bytes
  if need > json_buf_len then
    json_buf_len = need
    json_buf = ffi_new("char[?]", need)
  end
  errbuf[0] = 0
  local rc = lib.batchq_lua_to_json(p, n, json_buf, json_buf_len, size_out, errbuf, ERRBUF_LEN)
  release_encoder(n)
  if rc ~= 0 then
    return nil, errmsg(rc), rc
  end
  local out = ffi_string(json_buf, size_out[0])
  if json_buf_len > ENC_KEEP then
    json_buf_len, json_buf = 0, nil
  end
  return out
end

return _M
