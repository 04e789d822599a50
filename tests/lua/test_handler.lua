-- tests/lua/test_handler.lua - the batchq-log Kong plugin handler under plain
-- LuaJIT, with stand-ins for the few `ngx` and `kong` functions it calls and
-- a clock the test moves, against the real libbatchq.so and receiver. The
-- nginx tests (tests/nginx) run the same handler in a real nginx; this one
-- reaches the paths that are slow or awkward there: the queue key, the
-- once-per-configuration error, idle queues, refusals, the spool.
--
--   BATCHQ_LIB=... BATCHQ_RECEIVER=... \
--   LUA_PATH="<src>/capi/lua/?.lua;<src>/examples/kong-plugin/?.lua;;" \
--   luajit tests/lua/test_handler.lua
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../nginx/?.lua;" .. package.path

local cjson = require "cjson.safe"
local h = require "helpers"

local test, check, eq, has = h.test, h.check, h.eq, h.has
local wait_for = h.wait_for

-- stand-ins ---------------------------------------------------------------------------

local clock = 1000
local exiting = false
local timers = {}
local logged = {} -- { level, msg }

_G.ngx = {
  null = cjson.null, -- both are the NULL lightuserdata
  now = function() return clock end,
  update_time = function() end,
  worker = {
    id = function() return 0 end,
    exiting = function() return exiting end,
    pid = function() return 4242 end,
  },
  config = { subsystem = "http" },
  -- the premature timer run waits for the queues with ngx.sleep (a yield in
  -- nginx); here a plain sleep
  sleep = function(s) h.sleep_ms(math.floor(s * 1000)) end,
  timer = {
    every = function(interval, fn)
      timers[#timers + 1] = { interval = interval, fn = fn }
      return true
    end,
  },
}

local current_entry
local function logger(level)
  return function(...)
    local parts = {}
    for i = 1, select("#", ...) do
      parts[#parts + 1] = tostring((select(i, ...)))
    end
    logged[#logged + 1] = { level = level, msg = table.concat(parts) }
  end
end

_G.kong = {
  log = {
    err = logger("err"), warn = logger("warn"), notice = logger("notice"),
    info = logger("info"), debug = logger("debug"),
    serialize = function() return current_entry end,
  },
}

local handler = require "kong.plugins.batchq-log.handler"
local queues = require "kong.plugins.batchq-log.queues"
local plugin_conf = require "kong.plugins.batchq-log.conf"

-- Where the plugin puts the spool of a configuration in worker 0.
local function spool_of(conf)
  return conf.spool_dir .. "/" .. queues.queue_id(plugin_conf.conf_key(conf))
         .. "/worker-0"
end

-- helpers -------------------------------------------------------------------------------

local function tick(premature)
  for _, t in ipairs(timers) do
    t.fn(premature or false)
  end
end

-- Log lines (since index `from`) whose message contains `needle`.
local function find_logged(needle, from)
  local out = {}
  for i = from or 1, #logged do
    if logged[i].msg:find(needle, 1, true) then
      out[#out + 1] = logged[i]
    end
  end
  return out
end

local function queue_count()
  return #handler.stats()
end

local seq = 0
local function log_request(conf, extra)
  seq = seq + 1
  current_entry = { request = { uri = "/t/" .. seq }, response = { status = 200 } }
  for k, v in pairs(extra or {}) do
    current_entry[k] = v
  end
  handler:log(conf)
  return "/t/" .. seq
end

local function fast_fail(url, extra)
  local c = {
    http_endpoint = url, retry_count = 2, backoff = "exponential",
    initial_retry_delay = 0.01, max_retry_delay = 0.05, timeout = 2000,
    drop_poll_interval = 1,
  }
  for k, v in pairs(extra or {}) do
    c[k] = v
  end
  return c
end

-- tests ------------------------------------------------------------------------------------

test("init_worker starts one timer", function()
  handler:init_worker()
  handler:init_worker()
  eq(#timers, 1, "timers")
end)

local rx
test("entries reach the receiver; one queue per distinct configuration", function()
  rx = h.start_receiver("--quiet")
  local a = { http_endpoint = rx.url, queue_size = 1, method = "POST",
              timeout = 10000, headers = {} }
  -- the same settings in another table, built in another order, with what
  -- Kong adds to a plugin's conf and unset (null) fields
  local a2 = { headers = {}, timeout = 10000, method = "POST", queue_size = 1,
               http_endpoint = rx.url, route_id = "r-1", service_id = cjson.null,
               __key__ = "plugins:x", __seq__ = 3, ca_file = cjson.null,
               drop_poll_interval = 1 }
  -- another batch size: another queue (Kong issue #9272)
  local b = { http_endpoint = rx.url, queue_size = 3, flush_timeout = 0.05 }

  local paths = {}
  for _ = 1, 5 do
    paths[#paths + 1] = log_request(a)
    paths[#paths + 1] = log_request(a2)
  end
  eq(queue_count(), 1, "a and a2 share a queue")
  for _ = 1, 6 do
    paths[#paths + 1] = log_request(b)
  end
  eq(queue_count(), 2, "b has its own queue")

  check(wait_for(function() return #rx.entries() >= #paths end, 30000),
        "receiver got " .. #rx.entries() .. " of " .. #paths)
  local seen = {}
  for _, l in ipairs(rx.entries()) do
    local e = assert(cjson.decode(l))
    check(not seen[e.request.uri], "twice: " .. e.request.uri)
    seen[e.request.uri] = true
  end
  for _, p in ipairs(paths) do
    check(seen[p], "missing " .. p)
  end
  eq(#find_logged("could not create"), 0, "no creation error")
end, true)

test("custom_fields_by_lua without Kong's sandbox: never run, entry still logged", function()
  -- (with Kong's real sandbox: tests/kong/test_handler_sandbox.lua)
  local before = #rx.entries()
  _G.pwned = nil
  local conf = { http_endpoint = rx.url, custom_fields_by_lua = {
    ["batchq.answer"] = "pwned = true return 6 * 7",
  } }
  local mark = #logged
  log_request(conf)
  log_request(conf)
  check(wait_for(function() return #rx.entries() >= before + 2 end, 30000),
        "delivered")
  local e = assert(cjson.decode(rx.entries()[before + 1]))
  eq(e.batchq, nil, "field not set")
  eq(_G.pwned, nil, "the code did not run")
  local errs = find_logged("custom_fields_by_lua: batchq.answer: Kong's sandbox", mark + 1)
  eq(#errs, 1, "one error line for two requests")
  has(errs[1].msg, "the entry is logged without this field")
end, true)

test("endpoint down: drops reported in Kong's wording with every payload", function()
  -- One request in flight, so the drops (and the printed payloads) come in
  -- the order the requests were logged; at queue_size 1 the plugin otherwise
  -- keeps 4 in flight, and their drops may come in any order.
  local conf = fast_fail("http://127.0.0.1:" .. h.dead_port() .. "/x", { concurrency = 1 })
  local mark = #logged
  local paths = {}
  for _ = 1, 4 do
    paths[#paths + 1] = log_request(conf)
  end
  check(wait_for(function()
    for _, q in ipairs(handler.stats()) do
      if q.stats.dropped_by_reason.retries_exhausted == 4 then
        return true
      end
    end
  end, 30000), "4 drops")
  clock = clock + 2
  tick()
  -- Kong's wording: the queue's own line, forwarded once per dropped batch
  local kong_lines = find_logged("entry batch was already tried 2 times, dropping it", mark + 1)
  eq(#kong_lines, 4, "Kong's line once per dropped batch (queue_size 1)")
  for _, l in ipairs(kong_lines) do
    local _, n = l.msg:gsub("already tried", "")
    eq(n, 1, "the wording once in: " .. l.msg)
    has(l.msg, "(queue for 127.0.0.1:", "the endpoint named")
  end
  -- One summary per group of drops with the same reason, attempts and last
  -- error (under load a connect can time out instead of being refused, which
  -- splits the group): together they count each drop once.
  local summaries = find_logged("dropped (reason retries_exhausted", mark + 1)
  check(#summaries >= 1, "summary line")
  local total = 0
  for _, s in ipairs(summaries) do
    local n, noun = s.msg:match("(%d+) (entr%a+) for 127%.0%.0%.1:")
    check(n, "count and endpoint in: " .. s.msg)
    eq(noun, tonumber(n) == 1 and "entry" or "entries", "singular or plural: " .. s.msg)
    total = total + tonumber(n)
    has(s.msg, "the entries are printed below")
    eq(s.level, "err", "level")
  end
  eq(total, 4, "the summaries count every drop once")
  local printed = find_logged("dropped entry (retries_exhausted): ", mark + 1)
  eq(#printed, 4, "every payload printed")
  for i, p in ipairs(paths) do
    has(printed[i].msg, '"uri":"' .. p:gsub("/", "\\/") .. '"', "payload " .. i)
  end
  check(#find_logged("failed to process entries", mark + 1) > 0,
        "the queue's own warnings are forwarded")
end)

test("drops beyond the library's drop buffer are still counted in the log", function()
  local conf = fast_fail("http://127.0.0.1:" .. h.dead_port() .. "/",
                         { drop_buffer_entries = 2, retry_count = 1 })
  local mark = #logged
  for _ = 1, 5 do
    log_request(conf)
  end
  check(wait_for(function()
    for _, q in ipairs(handler.stats()) do
      if q.stats.drop_buffer_overflow == 3 then
        return true
      end
    end
  end, 30000), "3 drops overflowed")
  clock = clock + 2
  tick()
  eq(#find_logged("dropped entry (", mark + 1), 2, "the 2 kept are printed")
  local lost = find_logged("3 dropped entries for", mark + 1)
  eq(#lost, 1, "the 3 others are counted")
  has(lost[1].msg, "raise drop_buffer_entries")
  clock = clock + 2
  tick()
  eq(#find_logged("could not be kept for reporting", mark + 1), 1,
     "reported once")
end)

test("a bad configuration is logged once and its entries are counted", function()
  local conf = { http_endpoint = "ftp://user:secret@x/", drop_poll_interval = 1 }
  local mark = #logged
  for _ = 1, 10 do
    log_request(conf)
  end
  local errs = find_logged("could not create the log queue", mark + 1)
  eq(#errs, 1, "one error line for 10 requests")
  has(errs[1].msg, "http_endpoint")
  check(not errs[1].msg:find("secret", 1, true), "no credentials in the log")
  clock = clock + 61
  tick()
  local counted = find_logged("10 entries for ftp://x were not logged", mark + 1)
  eq(#counted, 1, "count reported after the reminder interval")
  -- A key that is not libbatchq's (Kong's schema refuses unknown fields)
  -- is never passed on: conf.lua sends an allow-list (tests/kong).
  eq(handler._queue_conf({ http_endpoint = "http://127.0.0.1:1/", queue_sise = 3 }).queue_sise, nil,
     "unknown key passed on")
end)

test("refused entries are reported from the timer, with the payload", function()
  local conf = { http_endpoint = "http://127.0.0.1:" .. h.dead_port() .. "/",
                 max_bytes = 60, drop_poll_interval = 1 }
  local mark = #logged
  log_request(conf, { padding = string.rep("p", 100) })
  eq(#find_logged("refused", mark + 1), 0, "nothing logged in the request")
  clock = clock + 2
  tick()
  local lines = find_logged("refused 1 entry", mark + 1)
  eq(#lines, 1, "summary")
  eq(#find_logged("dropped entry (refused): ", mark + 1), 1, "payload printed")
end)

test("spool_dir: a directory per worker, drops kept there", function()
  local base = h.TMP .. "/spool"
  local conf = fast_fail("http://127.0.0.1:" .. h.dead_port() .. "/",
                         { spool_dir = base, retry_count = 1 })
  local mark = #logged
  log_request(conf)
  local errs = find_logged("could not create", mark + 1)
  eq(#errs, 0, "created: " .. (errs[1] and errs[1].msg or ""))
  check(h.sh("test -d " .. spool_of(conf)), "<spool_dir>/<queue-id>/worker-0 created")
  check(wait_for(function()
    for _, q in ipairs(handler.stats()) do
      if q.stats.spool_records > 0 then
        return true
      end
    end
  end, 30000), "spooled")
  clock = clock + 2
  tick()
  local lines = find_logged("the entries are kept in the dead-letter spool under "
                            .. spool_of(conf), mark + 1)
  eq(#lines, 1, "summary names the spool")
  eq(#find_logged("dropped entry (", mark + 1), 0, "spooled payloads not printed")
end)

test("spool still locked by the previous owner: the queue works in memory", function()
  -- What a new worker meets after nginx -s reload while the old worker
  -- still holds its spool: libbatchq starts without it and takes it over
  -- when the old owner lets go.
  local batchq = require "batchq"
  local base = h.TMP .. "/spool-locked"
  local rx2 = h.start_receiver("--quiet")
  local conf = { http_endpoint = rx2.url, spool_dir = base, drop_poll_interval = 1 }
  local old = assert(batchq.new({ http_endpoint = rx2.url,
                                  spool_dir = spool_of(conf) }))
  local mark = #logged
  local paths = { log_request(conf), log_request(conf), log_request(conf) }
  eq(#find_logged("could not create the log queue", mark + 1), 0, "created")
  check(wait_for(function() return #rx2.entries() >= 3 end, 30000),
        "delivered while the spool is held: " .. #rx2.entries())
  clock = clock + 2
  tick()
  eq(#find_logged("held by another process", mark + 1), 1,
     "the library's warning is forwarded")
  assert(old:close(1000)) -- the old owner exits
  check(wait_for(function()
    clock = clock + 2
    tick()
    return #find_logged("spool taken over", mark + 1) == 1
  end, 5000), "spool taken over")
  rx2.stop()
end, true)

test("spool_dir unusable: the queue works in memory and says so; the spool is taken once fixed", function()
  -- A spool directory libbatchq cannot use (here: a file is in the way) is a
  -- runtime condition (issue 12, item 11): batchq.new succeeds, the queue
  -- delivers from memory, the library's error line is forwarded, the stats
  -- say spool_unavailable, and the spool is retried in the background.
  local base = h.TMP .. "/spool-blocked"
  check(h.sh("touch " .. base), "a file in the way of spool_dir")
  local rx2 = h.start_receiver("--quiet")
  local conf = { http_endpoint = rx2.url, spool_dir = base, drop_poll_interval = 1 }
  local mark = #logged
  local before = queue_count()
  local paths = { log_request(conf), log_request(conf), log_request(conf) }
  eq(queue_count(), before + 1, "the queue is made at once")
  eq(#find_logged("could not create the log queue", mark + 1), 0, "no creation error")
  check(wait_for(function()
    clock = clock + 2
    tick()
    return #find_logged("works in memory", mark + 1) >= 1
  end, 5000), "the library's error line is forwarded")
  local unavailable
  for _, q in ipairs(handler.stats()) do
    if q.spool_dir and q.spool_dir:find(base, 1, true) == 1 then
      unavailable = q.stats.spool_unavailable
    end
  end
  eq(unavailable, 1, "spool_unavailable in the stats")
  check(wait_for(function() return #rx2.entries() >= 3 end, 30000),
        "entries delivered from memory: " .. #rx2.entries())

  check(h.sh("rm " .. base), "fixed")
  check(wait_for(function()
    clock = clock + 2
    tick()
    return #find_logged("opened after earlier failures", mark + 1) >= 1
  end, 40000), "the spool is opened in the background once it can be")
  paths[#paths + 1] = log_request(conf)
  check(wait_for(function() return #rx2.entries() >= 4 end, 30000),
        "all delivered: " .. #rx2.entries())
  local got = {}
  for _, l in ipairs(rx2.entries()) do
    got[assert(cjson.decode(l)).request.uri] = true
  end
  for _, p in ipairs(paths) do
    check(got[p], "delivered " .. p)
  end
  rx2.stop()
end, true)

test("in-place change (rotated vault secret): new queue, the old drains, nothing lost", function()
  -- Kong >= 3.4 resolves `{vault://...}` references into the same conf
  -- table; conf_key notices (conf.lua), the registry switches queues.
  local rxa = h.start_receiver("--quiet")
  local rxb = h.start_receiver("--quiet")
  local conf = { http_endpoint = rxa.url, queue_size = 10, flush_timeout = 30,
                 ["$refs"] = { http_endpoint = "{vault://env/log-url}" } }
  local before = queue_count()
  local pa = { log_request(conf), log_request(conf), log_request(conf) }
  eq(queue_count(), before + 1, "one queue")
  conf.http_endpoint = rxb.url -- the secret rotated: same table, new value
  local pb = { log_request(conf), log_request(conf) }
  eq(queue_count(), before + 1, "the old queue retired, a new one open")
  local open_ep = {}
  for _, q in ipairs(handler.stats()) do
    open_ep[q.endpoint] = true
  end
  check(open_ep[rxb.url:match("//([^/]+)")], "the open queue is the new endpoint's")
  check(not open_ep[rxa.url:match("//([^/]+)")], "the old endpoint's queue is not open")
  -- the timer finishes the retirement (no wait in the log phase)
  check(wait_for(function()
    tick()
    return queues.retiring() == 0
  end, 10000), "old queue finished draining")
  -- the old queue's open batch (flush_timeout 30) was sent by its shutdown
  check(wait_for(function() return #rxa.entries() >= 3 end, 10000),
        "old entries delivered to the old endpoint: " .. #rxa.entries())
  -- the new queue's batch: sent at worker exit in the test below; flush here
  local got = {}
  for _, l in ipairs(rxa.entries()) do
    got[assert(cjson.decode(l)).request.uri] = true
  end
  for _, p in ipairs(pa) do
    check(got[p], "delivered to the old endpoint: " .. p)
  end
  for _, q in ipairs(handler.stats()) do
    if q.endpoint == rxb.url:match("//([^/]+)") then
      eq(q.stats.pending + q.stats.in_flight + q.stats.delivered, #pb,
         "the new entries are in the new queue")
    end
  end
  rxa.stop()
  rxb.stop()
end, true)

test("two configurations with one spool_dir: each queue its own spool", function()
  local base = h.TMP .. "/spool-shared"
  local dead = "http://127.0.0.1:" .. h.dead_port()
  local c1 = fast_fail(dead .. "/one", { spool_dir = base, retry_count = 1 })
  local c2 = fast_fail(dead .. "/two", { spool_dir = base, retry_count = 1 })
  local mark = #logged
  log_request(c1)
  log_request(c2)
  eq(#find_logged("could not create", mark + 1), 0, "both created")
  local d1, d2 = spool_of(c1), spool_of(c2)
  check(d1 ~= d2, "different directories")
  local by_dir = {}
  for _, q in ipairs(handler.stats()) do
    if q.spool_dir then
      by_dir[q.spool_dir] = q.stats
    end
  end
  check(by_dir[d1] and by_dir[d2], "both queues use their own spool")
  check(wait_for(function()
    local n = 0
    for _, q in ipairs(handler.stats()) do
      if (q.spool_dir == d1 or q.spool_dir == d2) and q.stats.spool_records > 0 then
        n = n + 1
      end
    end
    return n == 2
  end, 30000), "each spooled its drop")
  eq(#find_logged("held by another process", mark + 1), 0, "no contention")
  -- the subsystem is part of the id: a stream queue never shares it
  ngx.config.subsystem = "stream"
  local sid = queues.queue_id(plugin_conf.conf_key(c1))
  ngx.config.subsystem = "http"
  check(sid:match("^stream%-") and sid ~= queues.queue_id(plugin_conf.conf_key(c1)),
        "stream and http ids differ: " .. sid)
  local replay = os.getenv("BATCHQ_REPLAY")
  if replay then
    local out = h.TMP .. "/replay-list.txt"
    local ok = h.sh(replay .. " list " .. base .. " >" .. out .. " 2>&1")
    local listed = h.read_file(out) or ""
    -- batchq-replay walks the tree: a "spool <path>" header per spool found
    check(ok, "batchq-replay list " .. base .. ": " .. listed:sub(1, 500))
    check(listed:find(d1, 1, true) and listed:find(d2, 1, true),
          "batchq-replay list " .. base .. " names both spools: " .. listed:sub(1, 500))
  end
end)

test("idle queues are closed; a new one comes when used again", function()
  local n = queue_count()
  check(n >= 2, "queues exist")
  clock = clock + 601
  tick()
  eq(queue_count(), 0, "idle queues retired")
  -- they drain in the background; the timer finishes them
  check(wait_for(function()
    clock = clock + 2
    tick()
    return queues.retiring() == 0
  end, 20000), "retired queues finished: " .. queues.retiring())
  log_request({ http_endpoint = rx and rx.url or "http://127.0.0.1:1/" })
  eq(queue_count(), 1, "created again on use")
end)

test("worker exit: queues shut down, late entries reported", function()
  local conf = { http_endpoint = "http://127.0.0.1:" .. h.dead_port() .. "/",
                 shutdown_timeout = 0.2 } -- Kong's slow retries: stays queued
  log_request(conf)
  log_request(conf)
  local mark = #logged
  exiting = true
  tick(true) -- the premature run
  eq(queue_count(), 0, "all queues closed")
  local lossy = find_logged("shut down (worker exiting) before everything was delivered", mark + 1)
  eq(#lossy, 1, "the dead endpoint's queue reports a lossy shutdown")
  local dropped = find_logged("dropped entry (shutdown): ", mark + 1)
  eq(#dropped, 2, "both entries printed")
  -- a request finishing after the queues closed
  mark = #logged
  log_request(conf)
  eq(#find_logged("worker is exiting", mark + 1), 1, "reported directly")
  eq(#find_logged("dropped entry (worker exiting): ", mark + 1), 1, "payload printed")
  eq(queue_count(), 0, "no queue made while exiting")
  handler.exit_worker() -- the exit_worker_by_lua call: harmless now
  if rx then
    rx.stop()
  end
end)

test("exit_worker hooked: queues stay open for requests after the premature run", function()
  -- A fresh copy of the handler (the previous one has closed for good).
  for _, m in ipairs { "handler", "queues", "report", "custom_fields" } do
    package.loaded["kong.plugins.batchq-log." .. m] = nil
  end
  handler = require "kong.plugins.batchq-log.handler"
  queues = require "kong.plugins.batchq-log.queues"
  exiting = false
  timers = {}
  -- As in Kong 3.x: ngx.timer.every is lua-resty-timer-ng's, nginx's own is
  -- kept as native_timer_every; the plugin's timer must be nginx's.
  local ngx_every = ngx.timer.every
  local native_used = false
  ngx.timer.every = function() error("timer-ng used instead of nginx's timer") end
  _G.native_timer_every = function(interval, fn)
    native_used = true
    return ngx_every(interval, fn)
  end
  handler.use_exit_worker_hook()
  handler:init_worker()
  ngx.timer.every, _G.native_timer_every = ngx_every, nil
  check(native_used, "native_timer_every used")
  local rx3 = h.start_receiver("--quiet")
  local conf = { http_endpoint = rx3.url, queue_size = 10, flush_timeout = 30 }
  local mark = #logged
  local paths = { log_request(conf) }
  exiting = true
  tick(true) -- the premature run: nothing is closed
  eq(queue_count(), 1, "queue still open")
  paths[#paths + 1] = log_request(conf) -- a request finishing late
  handler.exit_worker() -- exit_worker_by_lua: after the last request
  eq(queue_count(), 0, "closed at exit")
  eq(#find_logged("worker is exiting", mark + 1), 0, "no late entry printed")
  eq(#find_logged("shut down (worker exiting), nothing was left to send", mark + 1), 1,
     "closed by exit_worker(), clean")
  eq(#find_logged("dropped entry (", mark + 1), 0, "nothing dropped")
  -- the open batch (30 s flush timeout) was sent by the shutdown
  check(wait_for(function() return #rx3.entries() >= 2 end, 30000),
        "both delivered: " .. #rx3.entries())
  rx3.stop()
end, true)

test("schema: http-log's defaults, and every field is libbatchq's or the plugin's", function()
  -- Kong's typedefs, reduced to what the schema file touches: each is a
  -- field definition that can be called with overrides.
  local function typedef(def)
    return setmetatable(def, { __call = function(self, overrides)
      local t = {}
      for k, v in pairs(self) do t[k] = v end
      for k, v in pairs(overrides or {}) do t[k] = v end
      return t
    end })
  end
  package.loaded["kong.db.schema.typedefs"] = {
    url = typedef({ type = "string" }),
    protocols = typedef({ type = "set" }),
    header_name = typedef({ type = "string" }),
    lua_code = typedef({ type = "map" }),
  }
  local schema = require "kong.plugins.batchq-log.schema"
  eq(schema.name, "batchq-log", "name")
  local config
  for _, f in ipairs(schema.fields) do
    if f.config then
      config = f.config
    end
  end
  check(config and config.type == "record", "config record")
  local fields = {}
  for _, f in ipairs(config.fields) do
    local name, def = next(f)
    fields[name] = def
  end

  -- http-log's names and defaults (kong-batch-queue.md)
  local http_log = { method = "POST", content_type = "application/json",
                     timeout = 10000, keepalive = 60000, retry_count = 10,
                     queue_size = 1, flush_timeout = 2 }
  for name, default in pairs(http_log) do
    check(fields[name], "field " .. name)
    eq(fields[name].default, default, name .. " default")
  end
  eq(fields.http_endpoint.required, true, "http_endpoint required")
  check(fields.headers and fields.headers.type == "map", "headers map")
  check(fields.custom_fields_by_lua, "custom_fields_by_lua")
  eq(fields.headers.custom_validator({ ["content-TYPE"] = "x" }), nil,
     "Content-Type header refused")

  -- Kong fills every default: what the handler passes on must be accepted.
  local batchq = require "batchq"
  local conf = { http_endpoint = "http://127.0.0.1:1/" }
  for name, def in pairs(fields) do
    if def.default ~= nil then
      conf[name] = def.default
    end
  end
  local q, err = batchq.new(handler._queue_conf(conf))
  check(q, "schema defaults refused by libbatchq: " .. tostring(err))
  q:close(0)

  -- Each field without a default, set: never an unknown key to libbatchq.
  local samples = { ca_file = "/nonexistent/ca.pem", client_cert = "/nonexistent/c.pem",
                    client_key = "/nonexistent/k.pem", spool_dir = h.TMP .. "/spool-schema",
                    headers = { ["X-A"] = "1" }, concurrency = 2,
                    custom_fields_by_lua = { a = "return 1" } }
  for name, def in pairs(fields) do
    if def.default == nil and name ~= "http_endpoint" then
      local c = { http_endpoint = "http://127.0.0.1:1/" }
      c[name] = samples[name]
      check(c[name] ~= nil, "no sample value for " .. name)
      local q2, err2 = batchq.new(handler._queue_conf(c))
      if q2 then
        q2:close(0)
      else
        check(not err2:find("unknown key", 1, true), name .. ": " .. err2)
      end
    end
  end
end)

h.finish()
