-- tests/kong/test_handler_sandbox.lua - batchq-log's handler running
-- custom_fields_by_lua through Kong's own kong.tools.sandbox (label kong),
-- on every Kong tree, with Kong's real kong.log (serialize and
-- set_serialize_value from kong/pdk/log.lua), the real libbatchq.so and a
-- receiver. Without a Kong tree it exits 77 (skipped).
--
--   KONG_SRC=/path/to/kong ctest -R kong_handler_sandbox
--   BATCHQ_LIB=... BATCHQ_RECEIVER=... LUA_PATH=... luajit tests/kong/test_handler_sandbox.lua [tree]
--
-- What http-log does with the code (sandbox(code, opts)() per request) is
-- what the plugin must do: Kong's sandbox refuses to change the standard
-- library, untrusted_lua = off refuses the code, `require` is limited to
-- untrusted_lua_sandbox_requires, globals do not outlive a request. Unlike
-- http-log, a refused or failing expression costs only its field: the entry
-- is still logged, with an error line.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../lua/?.lua;" .. here .. "/../nginx/?.lua;"
               .. package.path

local kl = require "kong_loader"

local tree = kl.tree_or_fork(arg)

-- As OpenResty's LuaJIT (LUAJIT_ENABLE_LUA52COMPAT): Kong's sandbox
-- (kong-lua-sandbox.lua) calls table.pack / table.unpack.
if not table.pack then
  table.pack = function(...) return { n = select("#", ...), ... } end
end
table.unpack = table.unpack or unpack

local K = kl.load(tree)
local cjson = require "cjson.safe"
local h = require "helpers"
local test, check, eq, has = h.test, h.check, h.eq, h.has

check(K.sandbox, "this Kong tree has kong.tools.sandbox")

-- kong.log: Kong's own (serialize, set_serialize_value), with the levels
-- the plugin writes to captured here.
local logged = {}
local pdk = K.log_pdk()
local klog = setmetatable({}, { __index = pdk })
for _, level in ipairs { "err", "warn", "notice", "info", "debug" } do
  klog[level] = function(...)
    local parts = {}
    for i = 1, select("#", ...) do
      parts[#parts + 1] = tostring((select(i, ...)))
    end
    logged[#logged + 1] = { level = level, msg = table.concat(parts) }
  end
end
_G.kong.log = klog

local function find_logged(needle, from)
  local out = {}
  for i = from or 1, #logged do
    if logged[i].msg:find(needle, 1, true) then
      out[#out + 1] = logged[i]
    end
  end
  return out
end

local handler = require "kong.plugins.batchq-log.handler"
local sandbox_mod = require "kong.tools.sandbox"

-- kong.tools.sandbox reads kong.configuration once and keeps it; this makes
-- it read the new values.
local function set_untrusted(mode, requires)
  K.set_configuration({ untrusted_lua = mode, untrusted_lua_sandbox_requires = requires or {} })
  for k in pairs(sandbox_mod.configuration) do
    sandbox_mod.configuration[k] = nil
  end
end

local rx
local seq = 0
-- One request through the handler's log phase; returns its uri.
local function log_request(conf)
  seq = seq + 1
  local uri = "/sandbox/" .. seq
  K.request({ method = "GET", uri = uri, status = 200 })
  handler:log(conf)
  return uri
end

-- The entry the receiver got for uri (waits for it).
local function received(uri)
  local found
  h.wait_for(function()
    for _, l in ipairs(rx.entries()) do
      local e = cjson.decode(l)
      if e and e.request and e.request.uri == uri then
        found = e
        return true
      end
    end
  end, 15000)
  return found
end

local function conf_with(fields)
  -- http-log's configuration as this Kong version saves it, plus the fields
  local row = assert(K.process("batchq-log", { http_endpoint = rx.url, custom_fields_by_lua = fields }))
  return row.config
end

test("a field from Kong's sandbox reaches the receiver (set_serialize_value)", function()
  rx = h.start_receiver("--quiet")
  set_untrusted("sandbox")
  local conf = conf_with({ ["batchq.answer"] = "return 6 * 7", who = "return type(kong) == 'table' and 'kong' or 'none'" })
  local uri = log_request(conf)
  local e = received(uri)
  check(e, "entry received")
  eq(e and e.batchq and e.batchq.answer, 42, "batchq.answer")
  eq(e and e.who, "kong", "kong is in the sandbox's environment")
end, true)

test("string.upper cannot be replaced; the entry is still logged, with an error line", function()
  set_untrusted("sandbox")
  local upper = string.upper
  local conf = conf_with({ evil = "string.upper = function() return 'pwned' end return 1" })
  local mark = #logged
  local uri = log_request(conf)
  eq(string.upper, upper, "string.upper unchanged")
  eq(("x"):upper(), "X", "string.upper still works")
  local e = received(uri)
  check(e, "entry still logged")
  eq(e and e.evil, nil, "no field from refused code")
  local errs = find_logged("custom_fields_by_lua: evil:", mark + 1)
  eq(#errs, 1, "one error line")
end, true)

test("untrusted_lua = off: the code is refused, the entry is logged", function()
  -- Kong's schema itself refuses to save such code with untrusted_lua = off;
  -- a configuration saved before the switch still reaches the handler.
  set_untrusted("sandbox")
  local conf = conf_with({ f = "ran = true return 1" })
  set_untrusted("off")
  _G.ran = nil
  local mark = #logged
  local uri = log_request(conf)
  eq(_G.ran, nil, "not run")
  local e = received(uri)
  check(e, "entry logged")
  eq(e and e.f, nil, "no field")
  local errs = find_logged("custom_fields_by_lua: f:", mark + 1)
  eq(#errs, 1, "error line")
  has(errs[1] and errs[1].msg or "", "untrusted_lua", "says why")
  set_untrusted("sandbox")
end, true)

test("assert works; require only what untrusted_lua_sandbox_requires allows", function()
  set_untrusted("sandbox", {})
  local conf = conf_with({ a = "return assert(1 + 1)", r = "return require('cjson.safe') and 'yes'" })
  local mark = #logged
  local uri = log_request(conf)
  local e = received(uri)
  eq(e and e.a, 2, "assert")
  eq(e and e.r, nil, "require refused by default")
  local errs = find_logged("custom_fields_by_lua: r:", mark + 1)
  eq(#errs, 1, "error line for require")
  has(errs[1] and errs[1].msg or "", "not allowed within sandbox")

  set_untrusted("sandbox", { "cjson.safe" })
  local conf2 = conf_with({ r = "return require('cjson.safe') and 'yes'" })
  local uri2 = log_request(conf2)
  local e2 = received(uri2)
  eq(e2 and e2.r, "yes", "require of an allowed module")
end, true)

test("globals do not persist from one request to the next", function()
  set_untrusted("sandbox")
  local conf = conf_with({ n = "counter = (counter or 0) + 1 return counter" })
  local u1 = log_request(conf)
  local u2 = log_request(conf)
  local e1, e2 = received(u1), received(u2)
  eq(e1 and e1.n, 1, "first request")
  eq(e2 and e2.n, 1, "second request: a fresh environment")
  eq(rawget(_G, "counter"), nil, "no global leaked")
  rx.stop()
end, true)

-- Close the worker's queues (as exit_worker_by_lua would) and free the
-- regexes Kong's code compiled, so LeakSanitizer runs see nothing left.
handler.exit_worker()
kl.close()
h.finish()
