-- batchq-log: custom_fields_by_lua, run as http-log runs it.
--
-- http-log (2.8.5, 3.4.2 and 3.9.3 alike) does, for every request:
--   sandbox(expression, { env = { kong = kong, ngx = ngx } })()
-- with `sandbox` from Kong's own kong.tools.sandbox: the code is compiled in
-- a fresh environment each time (so globals do not outlive the request), the
-- standard library is read-only under untrusted_lua = sandbox, `require` is
-- limited to untrusted_lua_sandbox_requires, and untrusted_lua = off refuses
-- to run it at all. The same here, with one difference: an expression that
-- is refused or fails costs its field only, with an error line; the entry is
-- still logged (in http-log the error ends the log phase, so the entry is
-- lost).
--
-- Outside Kong (no kong.tools.sandbox) the code is never run unsandboxed:
-- the field is left out, with an error line.
local type = type
local pairs = pairs
local pcall = pcall
local require = require
local tostring = tostring

local report = require "kong.plugins.batchq-log.report"

local _M = {}

-- An error is logged at most once per REPEAT_AFTER for each field and
-- message, not once per request.
local REPEAT_AFTER = 60 -- s
local last_logged = {}

local function log_once(key, msg)
  local id = key .. "\0" .. msg
  local t = ngx.now()
  local at = last_logged[id]
  if at and t - at < REPEAT_AFTER then
    return
  end
  last_logged[id] = t
  report.log_err("custom_fields_by_lua: ", key, ": ", msg,
                 " (the entry is logged without this field)")
end

local sandbox -- kong.tools.sandbox's sandbox(), or false when missing
local sandbox_err
local sandbox_opts

local function get_sandbox()
  if sandbox == nil then
    local ok, mod = pcall(require, "kong.tools.sandbox")
    if ok and type(mod) == "table" and type(mod.sandbox) == "function" then
      sandbox = mod.sandbox
    else
      sandbox = false
      sandbox_err = "Kong's sandbox (kong.tools.sandbox) cannot be loaded: "
                    .. tostring(mod)
    end
  end
  if sandbox and not sandbox_opts then
    -- http-log's own options, built once (kong is set by then)
    sandbox_opts = { env = { kong = kong or rawget(_G, "kong"), ngx = ngx } }
  end
  return sandbox
end

-- Runs every expression; returns an array of { key, value } for those that
-- ran, in no particular order (http-log's pairs() order).
function _M.run(fields)
  local out = {}
  local run_in = get_sandbox()
  for key, code in pairs(fields) do
    if not run_in then
      log_once(tostring(key), sandbox_err)
    elseif type(code) == "string" then
      local ok, fn = pcall(run_in, code, sandbox_opts)
      if not ok then
        -- untrusted_lua = off, or the code does not compile
        log_once(tostring(key), tostring(fn))
      else
        local ok2, value = pcall(fn)
        if ok2 then
          out[#out + 1] = { key, value }
        else
          log_once(tostring(key), tostring(value))
        end
      end
    end
  end
  return out
end

-- Sets entry["a"]["b"] for the key "a.b", creating tables on the way (what
-- kong.log.set_serialize_value does, for hosts without Kong's PDK).
function _M.set_path(entry, key, value)
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

return _M
