-- tests/lua/test_batchq.lua - the LuaJIT module (capi/lua/batchq.lua) against
-- the real libbatchq.so and a real loopback receiver.
--
--   BATCHQ_LIB=<build>/capi/libbatchq.so \
--   BATCHQ_RECEIVER=<build>/tests/batchq_receiver \
--   LUA_PATH="<src>/capi/lua/?.lua;;" luajit tests/lua/test_batchq.lua
--
-- ctest runs it (label capi). Without BATCHQ_RECEIVER the tests that need a
-- receiver are reported as skipped. Exits non-zero when a test fails; the
-- last line is "N passed, N failed".
-- helpers.lua sits next to this file.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path

local cjson = require "cjson.safe"
local h = require "helpers"

local fmt = string.format
local concat = table.concat
local test, check, eq, has = h.test, h.check, h.eq, h.has
local wait_for, start_receiver, dead_port = h.wait_for, h.start_receiver, h.dead_port

local function balanced(s)
  return s.enqueued == s.delivered + s.dropped + s.pending + s.in_flight
end

-- Options that make a failing endpoint give up fast.
local function fast_fail(url, extra)
  local c = {
    http_endpoint = url,
    retry_count = 2,
    backoff = "exponential",
    initial_retry_delay = 0.01,
    max_retry_delay = 0.05,
    timeout = 2000,
  }
  for k, v in pairs(extra or {}) do
    c[k] = v
  end
  return c
end

-- the tests -----------------------------------------------------------------------

local batchq = require "batchq"

test("version", function()
  local v = batchq.version()
  check(v:match("^%d+%.%d+%.%d+$"), "version format: " .. v)
  local a, b, c = v:match("^(%d+)%.(%d+)%.(%d+)$")
  eq(batchq.version_number(), a * 10000 + b * 100 + c, "version_number")
  check(batchq.library_path, "library_path")
  eq(batchq.drop_reasons[0], "retries_exhausted", "reason 0")
  eq(batchq.drop_reasons[4], "shutdown", "reason 4")
end)

test("new: bad configurations say which key", function()
  local q, err, code = batchq.new("not a table")
  eq(q, nil, "q")
  has(err, "table")
  eq(code, batchq.errors.EINVAL, "code")

  q, err, code = batchq.new({ http_endpoint = "http://127.0.0.1:1/",
                              queue_sise = 5 })
  eq(q, nil, "q")
  has(err, "queue_sise")
  has(err, "queue_size") -- the suggestion
  eq(code, batchq.errors.ECONFIG, "code")

  q, err = batchq.new({ http_endpoint = "http://127.0.0.1:1/",
                        retry_count = "ten" })
  eq(q, nil, "q")
  has(err, "retry_count")

  q, err = batchq.new({ http_endpoint = "ftp://example.com/" })
  eq(q, nil, "q")
  has(err, "http_endpoint")

  q, err = batchq.new({ method = "POST" })
  eq(q, nil, "q")
  has(err, "http_endpoint")

  q, err = batchq.new({ http_endpoint = "http://127.0.0.1:1/",
                        method = "GET" })
  eq(q, nil, "q")
  has(err, "method")

  q, err = batchq.new({ http_endpoint = "http://127.0.0.1:1/",
                        headers = { Host = "x" } })
  eq(q, nil, "q")
  has(err, "Host")

  -- a value cjson cannot encode is reported, not raised
  q, err = batchq.new({ http_endpoint = "http://127.0.0.1:1/", f = print })
  eq(q, nil, "q")
  has(err, "JSON")
end)

test("new: empty headers table and headers map are accepted", function()
  local q = assert(batchq.new({ http_endpoint = "http://127.0.0.1:1/",
                                headers = {} }))
  assert(q:close(0))
  q = assert(batchq.new({ http_endpoint = "http://127.0.0.1:1/",
                          headers = { ["X-A"] = "1", ["X-B"] = "two" } }))
  assert(q:close(0))
end)

test("enqueue: non-string, empty, refusals, after close", function()
  local q = assert(batchq.new(fast_fail("http://127.0.0.1:"
                                        .. dead_port() .. "/",
                                        { validate_json = true,
                                          max_bytes = 64 })))
  for _, bad in ipairs({ 42, true, {}, print }) do
    local ok, err, code = q:enqueue(bad)
    eq(ok, nil, "ok for " .. type(bad))
    eq(err, "entry must be a string", "err")
    eq(code, batchq.errors.EINVAL, "code")
  end
  local ok, err, code = q:enqueue(nil)
  eq(ok, nil, "nil entry")
  eq(err, "entry must be a string", "err")

  ok, err, code = q:enqueue("")
  eq(ok, nil, "empty entry")
  eq(code, batchq.errors.EINVAL, "code")
  check(#err > 0, "a message for the empty entry")

  ok, err, code = q:enqueue("{not json")
  eq(ok, nil, "invalid json")
  eq(code, batchq.errors.EJSON, "code")
  check(#err > 0, "parse error text")

  ok, err, code = q:enqueue('{"x":"' .. ("y"):rep(100) .. '"}')
  eq(ok, nil, "too large")
  eq(code, batchq.errors.ETOOLARGE, "code")
  check(#err > 0, "too large text")

  local s = q:stats()
  eq(s.enqueued, 0, "nothing refused is counted as enqueued")
  eq(s.refused_invalid_json, 1, "refused_invalid_json")
  eq(s.refused_too_large, 1, "refused_too_large")

  assert(q:close(0))
  ok, err = q:enqueue("{}")
  eq(ok, nil, "after close")
  eq(err, "closed", "err after close")
  eq(select(2, q:flush(10)), "closed", "flush after close")
  eq(select(2, q:shutdown(10)), "closed", "shutdown after close")
  eq(select(2, q:stats()), "closed", "stats after close")
  eq(select(2, q:stats_json()), "closed", "stats_json after close")
  eq(select(2, q:stats_prometheus()), "closed", "prometheus after close")
  check(q:closed(), "closed()")
  eq(q:close(0), true, "second close")
  eq(q:close(), true, "third close")
  has(tostring(q), "closed")
end)

test("enqueue after shutdown is refused with ESHUTDOWN", function()
  local q = assert(batchq.new({ http_endpoint = "http://127.0.0.1:1/" }))
  assert(q:shutdown(0))
  local ok, err, code = q:enqueue("{}")
  eq(ok, nil, "ok")
  eq(code, batchq.errors.ESHUTDOWN, "code")
  check(#err > 0, "message")
  eq(q:stats().refused_shutdown, 1, "refused_shutdown")
  assert(q:close(0))
end)

test("overflow refuse_new gives EFULL", function()
  local q = assert(batchq.new({
    http_endpoint = "http://127.0.0.1:" .. dead_port() .. "/",
    max_entries = 2, overflow = "refuse_new", retry_count = 10,
  }))
  local codes = {}
  for i = 1, 5 do
    local ok, _, code = q:enqueue('{"i":' .. i .. '}')
    codes[#codes + 1] = ok and "ok" or tostring(code)
  end
  local s = q:stats()
  eq(s.enqueued, 2, "enqueued up to max_entries: " .. concat(codes, ","))
  eq(s.refused_full, 3, "refused_full")
  eq(codes[5], tostring(batchq.errors.EFULL), "last code")
  check(balanced(s), "balanced")
  -- shutdown with no time: the 2 held entries are dropped as "shutdown"
  local ok, err = q:shutdown(0)
  eq(ok, nil, "shutdown did not deliver")
  eq(err, "timeout", "err")
  local d = q:poll_dropped()
  eq(#d, 2, "dropped at shutdown")
  eq(d[1].reason, "shutdown", "reason")
  -- close() repeats shutdown's verdict: not everything was delivered
  eq(select(2, q:close(0)), "timeout", "close after a lossy shutdown")
end)

test("N entries reach the receiver, each once", function()
  local rx = start_receiver("--quiet")
  local N = 200
  for _, size in ipairs({ 1, 50 }) do
    local q = assert(batchq.new({ http_endpoint = rx.url, queue_size = size,
                                  flush_timeout = 0.05 }))
    local base = size * 1000
    for i = 1, N do
      assert(q:enqueue(cjson.encode({ id = base + i, size = size })))
    end
    assert(q:flush(20000))
    local s = q:stats()
    eq(s.enqueued, N, "enqueued")
    eq(s.delivered, N, "delivered")
    eq(s.dropped, 0, "dropped")
    check(balanced(s), "balanced")
    assert(q:close(5000))
  end
  check(wait_for(function() return #rx.entries() >= 2 * N end, 10000),
        "receiver got " .. #rx.entries())
  local seen = {}
  for _, line in ipairs(rx.entries()) do
    local e = assert(cjson.decode(line))
    check(not seen[e.id], "entry " .. tostring(e.id) .. " twice")
    seen[e.id] = true
  end
  for _, size in ipairs({ 1, 50 }) do
    for i = 1, N do
      check(seen[size * 1000 + i], "missing entry " .. (size * 1000 + i))
    end
  end
  eq(#rx.entries(), 2 * N, "exactly 2N entries")
  rx.stop()
end, true)

test("endpoint down: every entry comes back from poll_dropped", function()
  local url = "http://127.0.0.1:" .. dead_port() .. "/logs"
  local N = 30
  local q = assert(batchq.new(fast_fail(url, { queue_size = 4,
                                               flush_timeout = 0.05 })))
  local sent = {}
  for i = 1, N do
    local e = '{"n":' .. i .. '}'
    sent[e] = true
    assert(q:enqueue(e))
  end
  assert(q:flush(20000))

  local got = {}
  while true do
    local batch = assert(q:poll_dropped(7))
    if #batch == 0 then
      break
    end
    check(#batch <= 7, "at most max")
    for _, d in ipairs(batch) do
      got[#got + 1] = d
    end
  end
  eq(#got, N, "dropped entries returned")
  for _, d in ipairs(got) do
    check(sent[d.data], "unknown data " .. d.data)
    sent[d.data] = nil
    eq(d.reason, "retries_exhausted", "reason")
    eq(d.attempts, 2, "attempts")
    has(d.error, "127.0.0.1", "last error")
    eq(d.spooled, false, "spooled")
    check(d.time_ms > 1.5e12, "time_ms is Unix ms: " .. d.time_ms)
  end
  check(next(sent) == nil, "every entry came back once")

  local s = q:stats()
  eq(s.enqueued, N, "enqueued")
  eq(s.dropped, N, "dropped")
  eq(s.dropped_by_reason.retries_exhausted, N, "by reason")
  eq(s.delivered, 0, "delivered")
  eq(s.drop_buffer_pending, 0, "drop buffer drained")
  check(balanced(s), "balanced")

  local logs = q:poll_log()
  local warn, err = 0, 0
  for _, l in ipairs(logs) do
    check(type(l.msg) == "string" and #l.msg > 0, "log message")
    if l.level == "warn" then
      warn = warn + 1
    elseif l.level == "error" then
      err = err + 1
      has(l.msg, "entry batch was already tried 2 times, dropping it")
    end
  end
  check(warn > 0 and err > 0, "warn and error lines: " .. #logs)
  eq(#q:poll_log(), 0, "log buffer drained")
  assert(q:close(0))
end)

test("receiver answering 500: dropped with the status in the error", function()
  local rx = start_receiver("--quiet --fail-status 500 --fail-first 1000")
  local q = assert(batchq.new(fast_fail(rx.url)))
  for i = 1, 5 do
    assert(q:enqueue('{"k":' .. i .. '}'))
  end
  assert(q:flush(20000))
  local d = q:poll_dropped(100)
  eq(#d, 5, "dropped")
  has(d[1].error, "returned status code 500")
  local s = q:stats()
  eq(s.dropped, 5, "dropped")
  eq(s.failed_attempts, 10, "2 attempts x 5 batches")
  assert(q:close(0))
  rx.stop()
end, true)

test("stats_json parses; prometheus text; buffers grow", function()
  -- a long queue name makes both texts larger than the first buffer
  local name = ("q"):rep(9000)
  local q = assert(batchq.new({ http_endpoint = "http://127.0.0.1:1/",
                                name = name }))
  local j = assert(q:stats_json())
  local t = assert(cjson.decode(j))
  eq(t.enqueued, 0, "json enqueued")
  eq(t.name, name, "json name")
  local p = assert(q:stats_prometheus())
  has(p, "batchq_enqueued")
  has(p, name)
  check(#p > 9000, "prometheus text size")
  -- again, with the grown buffer
  assert(cjson.decode(assert(q:stats_json())))
  assert(q:close(0))

  q = assert(batchq.new({ http_endpoint = "http://127.0.0.1:1/" }))
  local s = q:stats()
  for _, k in ipairs({ "enqueued", "delivered", "dropped", "pending",
                       "in_flight", "bytes_held", "attempts", "retried",
                       "drop_buffer_pending", "spool_errors" }) do
    eq(type(s[k]), "number", k)
  end
  eq(type(s.dropped_by_reason), "table", "dropped_by_reason")
  eq(s.dropped_by_reason.queue_full, 0, "queue_full")
  assert(q:close(0))
end)

test("shutdown deadline: the rest is dropped as shutdown", function()
  local q = assert(batchq.new({
    http_endpoint = "http://127.0.0.1:" .. dead_port() .. "/",
    retry_count = 10, -- kong_quadratic: the 2nd attempt is 4 s away
  }))
  for i = 1, 5 do
    assert(q:enqueue('{"s":' .. i .. '}'))
  end
  local ok, err = q:shutdown(300)
  eq(ok, nil, "not everything delivered")
  eq(err, "timeout", "err")
  eq(q:shutdown(0), nil, "idempotent") -- still "timeout", no crash
  local d = q:poll_dropped()
  eq(#d, 5, "all 5 dropped")
  for _, e in ipairs(d) do
    eq(e.reason, "shutdown", "reason")
  end
  local s = q:stats()
  eq(s.dropped_by_reason.shutdown, 5, "stats by reason")
  check(balanced(s), "balanced")
  eq(select(2, q:close(0)), "timeout", "close after a lossy shutdown")
end)

test("close keeps unpolled drops and logs for poll after close", function()
  local q = assert(batchq.new(fast_fail("http://127.0.0.1:" .. dead_port()
                                        .. "/", { retry_count = 1 })))
  for i = 1, 3 do
    assert(q:enqueue('{"c":' .. i .. '}'))
  end
  assert(q:flush(10000))
  assert(q:close(1000))
  local d = q:poll_dropped(2)
  eq(#d, 2, "first two after close")
  local rest = q:poll_dropped()
  eq(#rest, 1, "the third")
  eq(#q:poll_dropped(), 0, "then none")
  local logs = q:poll_log()
  check(#logs > 0, "log lines kept")
  eq(#q:poll_log(), 0, "then none")
end)

test("flush timeout returns nil, 'timeout'", function()
  local rx = start_receiver("--quiet --delay-ms 1500")
  local q = assert(batchq.new({ http_endpoint = rx.url }))
  assert(q:enqueue('{"slow":1}'))
  local ok, err = q:flush(50)
  eq(ok, nil, "flush timed out")
  eq(err, "timeout", "err")
  assert(q:flush(10000)) -- and then it does arrive
  eq(q:stats().delivered, 1, "delivered")
  assert(q:close(1000))
  rx.stop()
end, true)

test("garbage collection frees the queue (and it still delivers)", function()
  local rx = start_receiver("--quiet")
  do
    local q = assert(batchq.new({ http_endpoint = rx.url }))
    assert(q:enqueue('{"gc":1}'))
    q = nil -- luacheck: ignore
  end
  collectgarbage()
  collectgarbage()
  -- batchq_free shuts down with shutdown_timeout: the entry was delivered
  check(wait_for(function() return #rx.entries() == 1 end, 10000),
        "entry delivered by the finalizer's shutdown")

  -- a closed queue's finalizer must not free again
  local q = assert(batchq.new({ http_endpoint = rx.url }))
  assert(q:close(1000))
  q = nil -- luacheck: ignore
  collectgarbage()
  collectgarbage()

  -- many short-lived queues, some closed, some collected
  for i = 1, 40 do
    local x = assert(batchq.new({ http_endpoint = rx.url }))
    if i % 2 == 0 then
      x:close(0)
    end
  end
  collectgarbage()
  collectgarbage()
  rx.stop()
end, true)

-- A listening socket that never accepts: connects succeed (the kernel's
-- backlog), nothing ever answers.
local ffi = require "ffi"
pcall(ffi.cdef, "int listen(int fd, int backlog);")
local function silent_server()
  local fd = ffi.C.socket(2, 1, 0)
  assert(fd >= 0)
  local sa = ffi.new("struct bq_test_sockaddr_in")
  sa.family = 2
  sa.port = 0
  sa.addr = ffi.C.htonl(0x7f000001)
  assert(ffi.C.bind(fd, sa, ffi.sizeof(sa)) == 0)
  assert(ffi.C.listen(fd, 128) == 0)
  local len = ffi.new("uint32_t[1]", ffi.sizeof(sa))
  assert(ffi.C.getsockname(fd, sa, len) == 0)
  return fd, ffi.C.ntohs(sa.port)
end

local function poll_done(q, ms)
  local done
  wait_for(function()
    done = q:shutdown_poll()
    return done ~= false
  end, ms)
  return done
end

test("shutdown_begin/shutdown_poll: never blocks; what is left is pulled as shutdown", function()
  eq(batchq.errors.EINPROGRESS, -12, "EINPROGRESS")
  has(batchq.strerror(batchq.errors.EINPROGRESS), "shutdown still running")
  local fd, port = silent_server()
  local q = assert(batchq.new({
    http_endpoint = "http://127.0.0.1:" .. port .. "/",
    timeout = 60000, shutdown_timeout = 30,
  }))
  local r, err, code = q:shutdown_poll()
  eq(r, nil, "poll before begin")
  eq(code, batchq.errors.EINVAL, "code")
  has(err, "shutdown_begin")
  for i = 1, 8 do
    assert(q:enqueue('{"nb":' .. i .. '}'))
  end
  r, err, code = q:shutdown_begin("soon")
  eq(r, nil, "bad timeout")
  eq(code, batchq.errors.EINVAL, "code")
  eq(q:shutdown_begin(1000), true, "begin")
  eq(q:shutdown_poll(), false, "still running: nothing can be delivered")
  local _, _, ecode = q:enqueue('{"late":1}')
  eq(ecode, batchq.errors.ESHUTDOWN, "intake closed")
  eq(q:shutdown_begin(1000), true, "again: harmless")
  eq(poll_done(q, 20000), true, "finished after the deadline")
  local d = q:poll_dropped()
  eq(#d, 8, "all 8 pulled")
  for _, e in ipairs(d) do
    eq(e.reason, "shutdown", "reason")
  end
  local s = q:stats()
  eq(s.delivered + s.dropped_by_reason.shutdown, s.enqueued, "accounted for")
  check(balanced(s), "balanced")
  -- close() after a finished poll: no second shutdown (30 s would be waited)
  local t0 = os.time()
  q:close()
  check(os.time() - t0 < 10, "close did not wait")
  eq(q:shutdown_poll(), true, "a closed queue has finished")
  eq(q:shutdown_begin(0), true, "begin on a closed queue is harmless")
  ffi.C.close(fd)
end)

test("shutdown_begin with a healthy receiver delivers everything", function()
  local rx = start_receiver("--quiet")
  local q = assert(batchq.new({ http_endpoint = rx.url, queue_size = 4 }))
  for i = 1, 10 do
    assert(q:enqueue('{"ok":' .. i .. '}'))
  end
  assert(q:shutdown_begin(10000))
  eq(poll_done(q, 20000), true, "finished")
  local s = q:stats()
  eq(s.delivered, 10, "delivered")
  eq(s.dropped, 0, "dropped")
  eq(#q:poll_dropped(), 0, "nothing to pull")
  assert(q:close())
  check(wait_for(function() return #rx.entries() == 10 end, 10000), "received")
  rx.stop()
end, true)

test("poll arguments are checked", function()
  local q = assert(batchq.new({ http_endpoint = "http://127.0.0.1:1/" }))
  local r, err = q:poll_dropped(0)
  eq(r, nil, "max 0")
  check(err, "err")
  r, err = q:poll_dropped("x")
  eq(r, nil, "max string")
  r = q:poll_dropped(1000)
  eq(#r, 0, "a large max works")
  r, err = q:flush("soon")
  eq(r, nil, "flush with a string")
  assert(q:flush(-5)) -- negative is treated as 0; nothing queued
  assert(q:flush(math.huge)) -- capped, not undefined; nothing queued
  assert(q:close(0))
end)

h.finish()
