-- tests/nginx/kong_standin.lua - the few parts of Kong's PDK that the
-- batchq-log handler calls, on plain OpenResty, so the plugin runs in a test
-- nginx without Kong:
--
--   kong.log.err / warn / notice / info / debug   -> ngx.log, prefixed like
--                                                    Kong's plugin namespace
--   kong.log.serialize()                          -> a table shaped like
--                                                    Kong's basic serializer
--   kong.configuration.untrusted_lua*             -> kong.conf's defaults (for
--                                                    Kong's kong.tools.sandbox)
--
-- require "kong_standin" in init_by_lua installs the global `kong` (Kong
-- itself makes `kong` a global the same way).
local ngx = ngx
local ngx_log = ngx.log
local ngx_var = ngx.var
local ngx_req = ngx.req
local select = select
local tostring = tostring
local tonumber = tonumber
local concat = table.concat

local PREFIX = "[batchq-log] "

-- OpenResty's LuaJIT is built with LUAJIT_ENABLE_LUA52COMPAT, which Kong's
-- sandbox (kong-lua-sandbox.lua: table.pack / table.unpack) relies on; a
-- distribution's LuaJIT under nginx's Lua module may not be.
if not table.pack then
  table.pack = function(...) -- luacheck: ignore
    return { n = select("#", ...), ... }
  end
end
table.unpack = table.unpack or unpack -- luacheck: ignore

local function logger(level)
  return function(...)
    local n = select("#", ...)
    local parts = { PREFIX }
    for i = 1, n do
      parts[#parts + 1] = tostring((select(i, ...)))
    end
    ngx_log(level, concat(parts))
  end
end

local function header_table(get)
  local ok, h = pcall(get, 100)
  if not ok or type(h) ~= "table" then
    return {}
  end
  local out = {}
  for k, v in pairs(h) do
    out[k] = v
  end
  return out
end

-- The fields of Kong's serializer that make sense without Kong's router:
-- request, response, latencies, client_ip, started_at, upstream_uri, tries.
local function serialize()
  local var = ngx_var
  local started = ngx_req.start_time()
  local scheme = var.scheme or "http"
  local host = var.host or "localhost"
  local port = var.server_port or ""
  local request_time = tonumber(var.request_time) or 0
  return {
    request = {
      uri = var.request_uri,
      url = scheme .. "://" .. host .. ":" .. port .. (var.request_uri or ""),
      querystring = ngx_req.get_uri_args(100),
      method = ngx_req.get_method(),
      headers = header_table(ngx_req.get_headers),
      size = tonumber(var.request_length),
    },
    upstream_uri = var.uri,
    response = {
      status = ngx.status,
      headers = header_table(ngx.resp.get_headers),
      size = tonumber(var.bytes_sent),
    },
    tries = {},
    latencies = {
      request = request_time * 1000,
      kong = request_time * 1000,
      proxy = -1,
    },
    client_ip = var.remote_addr,
    started_at = started * 1000,
    source = "kong_standin",
    worker_pid = ngx.worker.pid(),
  }
end

local kong = {
  version = "standin",
  -- kong.conf's defaults for what kong.tools.sandbox reads
  configuration = {
    untrusted_lua = "sandbox",
    untrusted_lua_sandbox_requires = {},
    untrusted_lua_sandbox_environment = {},
  },
  log = {
    err = logger(ngx.ERR),
    warn = logger(ngx.WARN),
    notice = logger(ngx.NOTICE),
    info = logger(ngx.INFO),
    debug = logger(ngx.DEBUG),
    serialize = serialize,
  },
}

_G.kong = kong
return kong
