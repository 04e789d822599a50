-- tests/nginx/check.lua - the assertions of run_nginx_test.sh, on the files a
-- run leaves in its directory:
--   requests.*   "<path> <status>" per request made (000: no response)
--   rx.out       one received entry (JSON) per line, from batchq_receiver
--   error.log    nginx's error log, with the plugin's reports
--
--   luajit check.lua <deliver|down|reload|badconf|spool|exit> dir=<run directory>
--   (deliver: sandbox=yes|no - whether Kong's kong.tools.sandbox was loadable)
-- Prints what it found; exits 1 with the failed checks listed.
local cjson = require "cjson.safe"

local fmt = string.format

local mode = arg[1]
local opts = {}
for i = 2, #arg do
  local k, v = arg[i]:match("^(%w+)=(.*)$")
  if k then
    opts[k] = v
  end
end
local dir = assert(opts.dir, "dir= is required")

local failures = {}
local function fail(...)
  failures[#failures + 1] = fmt(...)
end
local function expect(cond, ...)
  if not cond then
    fail(...)
  end
  return cond
end

local function lines(path)
  local out = {}
  local f = io.open(path, "rb")
  if not f then
    return out
  end
  for line in f:lines() do
    out[#out + 1] = line
  end
  f:close()
  return out
end

local function ls(pattern)
  local p = io.popen("ls " .. dir .. "/" .. pattern .. " 2>/dev/null")
  local out = {}
  for l in p:lines() do
    out[#out + 1] = l
  end
  p:close()
  return out
end

-- Expected status of a path: 404 for ids that are multiples of 5.
local function expected_status(path)
  local i = tonumber(path:match("(%d+)$"))
  return (i % 5 == 0) and 404 or 200
end

-- requests ------------------------------------------------------------------------
local requested, answered = {}, {}
local n_requested, n_answered = 0, 0
for _, file in ipairs(ls("requests.*")) do
  for _, l in ipairs(lines(file)) do
    local path, code = l:match("^(%S+) (%d+)$")
    if path then
      code = tonumber(code)
      expect(not requested[path], "path %s requested twice", path)
      requested[path] = code
      n_requested = n_requested + 1
      if code ~= 0 then
        answered[path] = code
        n_answered = n_answered + 1
        expect(code == expected_status(path), "%s answered %d, expected %d",
               path, code, expected_status(path))
      end
    end
  end
end

-- received entries -------------------------------------------------------------------
local received = {} -- path -> { count, status, entry }
local n_received = 0
for _, l in ipairs(lines(dir .. "/rx.out")) do
  local e = cjson.decode(l)
  if expect(type(e) == "table" and type(e.request) == "table",
            "receiver line is not an entry: %s", l:sub(1, 200)) then
    local path = e.request.uri
    local r = received[path]
    if r then
      r.count = r.count + 1
    else
      received[path] = { count = 1, status = e.response and e.response.status,
                         entry = e }
    end
    n_received = n_received + 1
  end
end

-- entries read back from the spool (spool scenario) -------------------------------------
local spooled = {} -- path -> count of distinct entries (0/1)
local spool_records = {} -- path -> { "seq reason", ... }
local n_spooled = 0
for _, l in ipairs(lines(dir .. "/spooled.jsonl")) do
  local r = cjson.decode(l)
  local e = type(r) == "table" and r.payload
  if expect(type(e) == "table" and type(e.request) == "table",
            "spool record without an entry: %s", l:sub(1, 200)) then
    local path = e.request.uri
    local recs = spool_records[path] or {}
    spool_records[path] = recs
    recs[#recs + 1] = fmt("seq %s %s", tostring(r.seq), tostring(r.reason_name))
    if not spooled[path] then
      spooled[path] = 1
      n_spooled = n_spooled + 1
    end
  end
end
-- The same entry twice in the dead-letter spool is not a loss, but a replay
-- would send it twice: reported on its own, with the records, and counted
-- once in the accounting below.
local twice = {}
for path, recs in pairs(spool_records) do
  if #recs > 1 then
    twice[#twice + 1] = path .. " (" .. table.concat(recs, ", ") .. ")"
  end
end
if twice[1] then
  table.sort(twice)
  fail("the dead-letter spool holds %d entries more than once, e.g. %s: an "
       .. "entry re-queued from the previous owner's spool and dropped again "
       .. "is appended again while its first record stays unacknowledged",
       #twice, twice[1])
end

-- the error log -----------------------------------------------------------------------------
local FATAL = { "%[alert%]", "%[crit%]", "%[emerg%]", "runtime error",
                "exited on signal", "entry thread aborted", "stack traceback" }
local dropped = {} -- path -> { count, reason, status }
local n_dropped_lines = 0
local summaries = {} -- reason -> entries counted in summary lines
local summary_texts = {}
local config_errors = {}
local not_logged = 0
local forwarded_warn = 0
local shutdown_ok, shutdown_lossy = 0, 0
local error_lines = 0
local custom_field_errors = 0
for _, l in ipairs(lines(dir .. "/error.log")) do
  for _, pat in ipairs(FATAL) do
    if l:find(pat) then
      fail("error.log has a fatal line: %s", l:sub(1, 300))
    end
  end
  if l:find("[error]", 1, true) then
    error_lines = error_lines + 1
    if l:find("custom_fields_by_lua: ", 1, true) then
      custom_field_errors = custom_field_errors + 1
    end
  end
  local kind, payload = l:match("dropped entry %(([^)]*)%)[^:]*: (.*)$")
  if kind then
    n_dropped_lines = n_dropped_lines + 1
    expect(not l:find("[part ", 1, true), "entry printed in parts: %s",
           l:sub(1, 200))
    -- cjson escapes "/" as "\/"
    local path = payload:match('"uri":"([^"]*)"')
    path = path and path:gsub("\\/", "/")
    if expect(path, "dropped entry line without a path: %s", l:sub(1, 300))
    then
      local d = dropped[path]
      if d then
        d.count = d.count + 1
      else
        dropped[path] = { count = 1, reason = kind,
                          status = tonumber(payload:match('"status":(%d+)')) }
      end
    end
  end
  local n, reason = l:match("(%d+) entr[iesy]+ for %S+ dropped %(reason ([%w_]+)")
  if n then
    summaries[reason] = (summaries[reason] or 0) + tonumber(n)
    summary_texts[#summary_texts + 1] = l
    if l:find("the entries are kept in the dead-letter spool under", 1, true) then
      summaries.in_spool = (summaries.in_spool or 0) + tonumber(n)
    end
  end
  if l:find("could not be queued", 1, true) then
    summaries.held = (summaries.held or 0) + 1
  end
  local exiting = l:find("worker is exiting and the log queue for", 1, true)
  if exiting then
    summaries.exiting = (summaries.exiting or 0) + 1
  end
  if l:find("could not create the log queue for", 1, true) then
    config_errors[#config_errors + 1] = l
  end
  local nl = l:match("(%d+) entries for %S+ were not logged because")
  if nl then
    not_logged = not_logged + tonumber(nl)
  end
  if l:find("failed to process entries", 1, true) then
    forwarded_warn = forwarded_warn + 1
  end
  if l:find("), nothing was left to send", 1, true) then
    shutdown_ok = shutdown_ok + 1
  end
  if l:find(") before everything was delivered", 1, true) then
    shutdown_lossy = shutdown_lossy + 1
  end
end

local function count_keys(t, prefix)
  local n = 0
  for k in pairs(t) do
    if not prefix or k:sub(1, #prefix) == prefix then
      n = n + 1
    end
  end
  return n
end

-- Every answered request's entry is received or reported dropped, exactly
-- once, with the status the client saw; nothing arrives twice.
local function check_accounted(prefix)
  for path, code in pairs(answered) do
    if not prefix or path:sub(1, #prefix) == prefix then
      local r, d = received[path], dropped[path]
      local times = (r and r.count or 0) + (d and d.count or 0)
                    + (spooled[path] or 0)
      if times ~= 1 then
        fail("%s (answered %d) was received %d, reported dropped %d and "
             .. "spooled %d times", path, code, r and r.count or 0,
             d and d.count or 0, spooled[path] or 0)
      else
        local st = r and r.status or d and d.status or code
        expect(st == code, "%s: entry has status %s, the client saw %d", path,
               tostring(st), code)
      end
    end
  end
  for path, r in pairs(received) do
    expect(requested[path], "received an entry for %s, never requested", path)
    if not answered[path] then
      expect(r.count + (dropped[path] and dropped[path].count or 0) == 1,
             "%s (no response seen) accounted more than once", path)
    end
  end
  for path in pairs(dropped) do
    expect(requested[path], "dropped an entry for %s, never requested", path)
  end
  for path, n in pairs(spooled) do
    expect(requested[path], "spooled an entry for %s, never requested", path)
    if not answered[path] then
      expect(n + (received[path] and received[path].count or 0)
             + (dropped[path] and dropped[path].count or 0) == 1,
             "%s (no response seen) accounted more than once", path)
    end
  end
end

local function sum(t)
  local n = 0
  for _, v in pairs(t) do
    n = n + v
  end
  return n
end

print(fmt("%s: %d requests, %d answered, %d entries received, %d dropped "
          .. "entry lines, %d spooled, summaries %s, %d config errors, "
          .. "%d not logged", mode, n_requested, n_answered, n_received,
          n_dropped_lines, n_spooled, cjson.encode(summaries),
          #config_errors, not_logged))

if mode == "deliver" then
  expect(n_answered == n_requested, "every request answered (%d of %d)",
         n_answered, n_requested)
  expect(n_answered == 400, "400 requests made (%d)", n_answered)
  check_accounted()
  expect(n_received == n_answered, "received %d entries for %d requests",
         n_received, n_answered)
  expect(n_dropped_lines == 0, "nothing dropped (%d)", n_dropped_lines)
  expect(error_lines == (opts.sandbox == "no" and custom_field_errors or 0),
         "no [error] line in error.log (%d)", error_lines)
  for path, r in pairs(received) do
    if path:sub(1, 3) == "/r/" then
      local w = r.entry.batchq_test and r.entry.batchq_test.worker
      if opts.sandbox == "no" then
        -- no Kong sandbox to run it in: never run unsandboxed
        expect(w == nil, "%s: custom field set without Kong's sandbox: %s",
               path, tostring(w))
      else
        expect(type(w) == "string" and w:match("^w%d$"),
               "%s: custom field batchq_test.worker is %s", path, tostring(w))
      end
    end
  end
  expect(shutdown_ok >= 2, "queues reported a clean shutdown (%d)",
         shutdown_ok)

elseif mode == "down" then
  check_accounted()
  local r_dropped = count_keys(dropped, "/r/")
  expect(r_dropped == count_keys(answered, "/r/"),
         "every /r/ entry (dead endpoint) reported dropped: %d of %d",
         r_dropped, count_keys(answered, "/r/"))
  expect(count_keys(received, "/s/") > 0,
         "the failing receiver recovered and got entries")
  for path, d in pairs(dropped) do
    expect(d.reason == "retries_exhausted", "%s dropped as %s", path, d.reason)
  end
  expect(sum(summaries) == n_dropped_lines,
         "summary lines count %d entries, %d were printed", sum(summaries),
         n_dropped_lines)
  -- Kong's wording: the queue's own line, forwarded once (never repeated
  -- in batchq's summary)
  local kong_wording = 0
  for _, l in ipairs(lines(dir .. "/error.log")) do
    local _, n = l:gsub("entry batch was already tried 2 times, dropping it", "")
    if n > 0 then
      expect(n == 1, "Kong's wording once per line: %s", l:sub(1, 300))
      expect(l:find("(queue for 127.0.0.1:", 1, true), "the endpoint named: %s", l:sub(1, 300))
      kong_wording = kong_wording + 1
    end
  end
  expect(kong_wording > 0, "Kong's wording in the log")
  for _, l in ipairs(summary_texts) do
    expect(not l:find("already tried", 1, true), "summary repeats Kong's wording: %s", l:sub(1, 300))
  end
  expect(forwarded_warn > 0, "the queue's 'failed to process entries' "
         .. "lines are forwarded")

elseif mode == "reload" then
  check_accounted()
  expect(n_answered >= 300, "enough requests answered (%d)", n_answered)
  -- /r/ (receiver up) entries are delivered, except those of requests that
  -- finished after their worker had closed its queues (the timer's premature
  -- run comes before the last in-flight requests): those are printed.
  local late = 0
  for path, d in pairs(dropped) do
    if path:sub(1, 3) == "/r/" then
      expect(d.reason == "worker exiting", "%s (receiver up) dropped as %s",
             path, d.reason)
      late = late + 1
    else
      expect(d.reason == "shutdown" or d.reason == "worker exiting",
             "%s dropped as %s", path, d.reason)
    end
  end
  local exiting = 0
  for _, d in pairs(dropped) do
    if d.reason == "worker exiting" then
      exiting = exiting + 1
    end
  end
  expect(exiting == (summaries.exiting or 0),
         "each late entry has its 'worker is exiting' line (%d, %d)",
         exiting, summaries.exiting or 0)
  if opts.hook == "on" then
    expect(exiting == 0, "with exit_worker() called at exit, no entry comes "
           .. "after the queues closed (%d did)", exiting)
  end
  expect(count_keys(dropped, "/s/") == count_keys(answered, "/s/"),
         "every answered /s/ entry (dead endpoint) reported: %d of %d",
         count_keys(dropped, "/s/"), count_keys(answered, "/s/"))
  expect(shutdown_lossy >= 2, "old and new workers reported lossy "
         .. "shutdowns of the /s/ queues (%d)", shutdown_lossy)
  print(fmt("reload: %d answered: %d delivered, %d reported dropped "
            .. "(%d of them finished after their worker closed its queues)",
            n_answered, count_keys(received), count_keys(dropped), exiting))

elseif mode == "exit" then
  -- A request in flight during quit, 3 queues whose sends hang (the
  -- receiver writes an entry down when it arrives and never answers, so
  -- nothing counts as delivered): every answered entry is reported exactly
  -- once - what the queues held at their shutdown deadline, and the late
  -- request's entry (queued when exit_worker() is hooked, else printed as
  -- "worker exiting").
  expect(n_answered == 4, "4 requests answered (%d)", n_answered)
  for path in pairs(answered) do
    local d = dropped[path]
    expect(d and d.count == 1, "%s reported dropped %d times", path,
           d and d.count or 0)
  end
  for path, d in pairs(dropped) do
    expect(answered[path], "%s reported, never answered", path)
    expect(d.reason == "shutdown" or d.reason == "worker exiting",
           "%s dropped as %s", path, d.reason)
  end
  local late = dropped["/slow/1"]
  if opts.hook == "on" then
    expect(late and late.reason == "shutdown",
           "hooked: the late request's entry was queued (%s)",
           late and late.reason or "missing")
  else
    expect(late and late.reason == "worker exiting",
           "stock template: the late request's entry is printed (%s)",
           late and late.reason or "missing")
  end
  expect(shutdown_lossy == 3, "the 3 queues reported a lossy shutdown (%d)",
         shutdown_lossy)

elseif mode == "badconf" then
  expect(n_answered == n_requested, "every request answered (%d of %d)",
         n_answered, n_requested)
  expect(#config_errors >= 1 and #config_errors <= 2,
         "the configuration error is logged once per worker, not per "
         .. "request (%d lines)", #config_errors)
  for _, l in ipairs(config_errors) do
    expect(l:find("http_endpoint", 1, true), "the error names the key: %s", l)
  end
  expect(not_logged == count_keys(answered, "/r/"),
         "entries not logged are counted: %d reported, %d requests",
         not_logged, count_keys(answered, "/r/"))
  check_accounted("/s/")
  expect(count_keys(received) == count_keys(answered, "/s/"),
         "the good configuration still delivers (%d of %d)",
         count_keys(received), count_keys(answered, "/s/"))
elseif mode == "spool" then
  check_accounted()
  expect(n_answered >= 150, "enough requests answered (%d)", n_answered)
  expect(n_spooled > 0, "entries in the spool")
  expect(n_received == 0, "nothing received (endpoint down)")
  -- Reports can outnumber records: a new worker re-sends the dead letters an
  -- old one left at its shutdown deadline, and reports them again (with the
  -- spool's copy replaced) if they fail again.
  expect((summaries.in_spool or 0) >= n_spooled,
         "summaries say %d entries went to the spool, it holds %d",
         summaries.in_spool or 0, n_spooled)
  print(fmt("spool: %d answered: %d in the spool, %d printed in the error log",
            n_answered, n_spooled, n_dropped_lines))
else
  fail("unknown mode %s", tostring(mode))
end

if failures[1] then
  print(fmt("%d check(s) failed:", #failures))
  for i = 1, math.min(#failures, 40) do
    print("  - " .. failures[i])
  end
  os.exit(1)
end
print("all checks passed")
