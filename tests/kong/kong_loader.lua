-- tests/kong/kong_loader.lua - loads Kong's own Lua from a Kong source tree
-- into plain LuaJIT, with stand-ins only for what the tests do not exercise
-- (nginx's C API, OpenSSL bindings, uuid, the plugin servers, wasm...).
--
-- API (one Kong tree per process: Kong's modules are global state):
--
--   local kl = require "kong_loader"      -- tests/kong on package.path
--   kl.trees()         -> { { tag = "3.9.3", path = "/.../kong-src/3.9.3" }, ... },
--                         { paths without a kong/ folder }
--                         from KONG_SRC (";"-separated) or <repo>/../shared/kong-src/*
--                         (or <repo>/../../shared/kong-src/* from a worktree)
--   kl.tree_or_fork(arg) -> the tree this process tests (arg[1]); without one,
--                         runs the calling script once per tree in a child
--                         luajit, prints a line per tree and exits (0 all
--                         passed, 1 a failure or a KONG_SRC entry that is not
--                         a Kong tree, 77 no tree: ctest's "skipped")
--   kl.close()         frees the regexes ngx.re compiled: call before os.exit
--                      (LeakSanitizer runs see them otherwise)
--   local K = kl.load(path [, opts])
--       opts.plugin_paths: extra package.path roots holding kong/plugins/<name>
--                          (default: $BATCHQ_KONG_PLUGIN_PATH, else
--                          <repo>/examples/kong-plugin)
--   K.version, K.major, K.minor   Kong's version from the tree's kong/meta.lua
--   K.require(name)               require a Kong module (plain require works too)
--   K.Schema, K.MetaSchema, K.Entity, K.typedefs, K.plugin_loader, K.Errors
--   K.plugins_entity              the "plugins" entity (Entity.new of entities/plugins)
--   K.load_plugin(name)           -> subschema definition, or nil, err: through
--                                    plugin_loader.load_subschema (MetaSubSchema
--                                    validation + Entity.new_subschema); once
--                                    per name (K.process calls it as needed)
--   K.process(name, config [, extra])
--                                 -> the plugin row Kong would store and hand to
--                                    the handler (process_auto_fields "insert" +
--                                    validate), or nil, err_t. `extra` adds entity
--                                    fields (route, service, protocols, ...)
--   K.sandbox                     kong.tools.sandbox (nil where the tree has none)
--   K.set_configuration(t)        fields of kong.configuration (untrusted_lua, ...)
--   K.set_phase(phase)            what ngx.get_phase() returns (default "init_worker")
--   K.vault()                     Kong's real vault PDK as kong.vault (env vault,
--                                 and {vault://suite/x} -> K.secrets.x)
--   K.rotate_secrets()            what Kong's rotation timer does once secrets are due
--   K.request(req)                make `req` the current stand-in request (see
--                                 K.request below for its fields)
--   K.serialize([req])            Kong's real kong.log.serialize (kong/pdk/log.lua)
--                                 for the current request (or `req`)
--   K.log_pdk()                   Kong's kong.log object itself (serialize,
--                                 set_serialize_value...), e.g. for _G.kong.log
--
-- The stand-in `ngx` is built here (ngx.re on PCRE2 through the FFI, see
-- ngx_re.lua); the tests may replace fields of it (ngx.ctx, ngx.var, ...).
local ffi = require "ffi"
local cjson = require "cjson.safe"

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
if here:sub(1, 1) ~= "/" then
  here = (os.getenv("PWD") or ".") .. "/" .. here
end
ffi.cdef "char *realpath(const char *path, char *resolved); void free(void *p);"
local function realpath(path)
  local p = ffi.C.realpath(path, nil)
  if p == nil then
    return path
  end
  local s = ffi.string(p)
  ffi.C.free(p)
  return s
end
here = realpath(here)
local repo = realpath(here .. "/../..")

local _M = { repo = repo, here = here }

-- lua-filesystem (a dependency of penlight, which Kong needs anyway): no
-- shell is started, so no sanitizer runtime preloaded into one can change
-- the answer.
local lfs = require "lfs"

local function isdir(path)
  return lfs.attributes(path, "mode") == "directory"
end

local function split(s, sep)
  local out = {}
  for part in (s .. sep):gmatch("(.-)" .. sep:gsub("%p", "%%%0")) do
    if part ~= "" then
      out[#out + 1] = part
    end
  end
  return out
end

-- Kong trees to test: KONG_SRC, else <repo>/../shared/kong-src/* (a clone
-- with shared/ beside it), else <repo>/../../shared/kong-src/* (a git
-- worktree one level further down).
function _M.trees()
  local list = {}
  local env = os.getenv("KONG_SRC")
  local paths = {}
  if env and env ~= "" then
    paths = split(env, ";")
  else
    local base = repo .. "/../shared/kong-src"
    if not isdir(base) then
      base = repo .. "/../../shared/kong-src"
    end
    if isdir(base) then
      local names = {}
      for name in lfs.dir(base) do
        if name ~= "." and name ~= ".." then
          names[#names + 1] = name
        end
      end
      table.sort(names)
      for _, name in ipairs(names) do
        paths[#paths + 1] = realpath(base .. "/" .. name)
      end
    end
  end
  local bad = {}
  for _, path in ipairs(paths) do
    if not isdir(path .. "/kong") then
      if env and env ~= "" then -- a named tree that is not one is an error
        bad[#bad + 1] = path
      end
    else
      local f = io.open(path .. "/kong/meta.lua")
      local tag = path:match("([^/]+)/*$")
      if f then
        local src = f:read("*a")
        f:close()
        local ma, mi, pa = src:match("major%s*=%s*(%d+).-minor%s*=%s*(%d+).-patch%s*=%s*(%d+)")
        if ma then
          tag = ma .. "." .. mi .. "." .. pa
        end
      end
      list[#list + 1] = { tag = tag, path = path }
    end
  end
  return list, bad
end

-------------------------------------------------------------------------------
-- the stand-in ngx

local C = ffi.C
ffi.cdef [[
int gettimeofday(struct timeval_kl { long sec; long usec; } *tv, void *tz);
int getpid(void);
]]

local function b64enc(s)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((s:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local function now()
  local tv = ffi.new("struct timeval_kl")
  C.gettimeofday(tv, nil)
  return tonumber(tv.sec) + tonumber(tv.usec) / 1e6
end

local log_levels = { STDERR = 0, EMERG = 1, ALERT = 2, CRIT = 3, ERR = 4, WARN = 5, NOTICE = 6, INFO = 7, DEBUG = 8 }

-- What ngx.log wrote (level, message), for tests that check log lines.
_M.logged = {}

-- md5 / sha1 as nginx has them, from OpenSSL's libcrypto
ffi.cdef [[
unsigned char *MD5(const unsigned char *d, size_t n, unsigned char *md);
unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md);
]]
local crypto_ok, crypto = pcall(ffi.load, "crypto")
if not crypto_ok then
  crypto_ok, crypto = pcall(ffi.load, "libcrypto.so.3")
end
local function digest(fn, len)
  return function(s)
    assert(crypto_ok, "libcrypto not found")
    local out = ffi.new("unsigned char[?]", len)
    crypto[fn](s, #s, out)
    return ffi.string(out, len)
  end
end
local md5_bin, sha1_bin = digest("MD5", 16), digest("SHA1", 20)
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- ngx.shared.DICT stand-in: one Lua table per dict, per process (one nginx
-- worker). TTLs are remembered as given; expire_all() makes every entry's
-- remaining TTL 0 (what time passing would do).
local function new_shdict()
  local data, ttls = {}, {}
  local d = {}
  function d:get(k) return data[k] end
  function d:set(k, v, ttl) data[k] = v; ttls[k] = ttl or 0; return true end
  d.safe_set = d.set
  function d:add(k, v, ttl)
    if data[k] ~= nil then return false, "exists" end
    return self:set(k, v, ttl)
  end
  d.safe_add = d.add
  function d:replace(k, v, ttl)
    if data[k] == nil then return false, "not found" end
    return self:set(k, v, ttl)
  end
  function d:delete(k) data[k] = nil; ttls[k] = nil; return true end
  function d:incr(k, n, init, init_ttl)
    if data[k] == nil then
      if init == nil then return nil, "not found" end
      data[k], ttls[k] = init, init_ttl or 0
    end
    data[k] = data[k] + n
    return data[k]
  end
  function d:ttl(k)
    if data[k] == nil then return nil, "not found" end
    return ttls[k]
  end
  function d:expire(k, ttl) ttls[k] = ttl; return true end
  function d:get_keys(max)
    local out = {}
    for k in pairs(data) do
      out[#out + 1] = k
      if max and max > 0 and #out >= max then break end
    end
    return out
  end
  function d:flush_all() data, ttls = {}, {} end
  function d:flush_expired() return 0 end
  function d:expire_all() for k in pairs(ttls) do ttls[k] = 0 end end
  return d
end

local function make_ngx()
  local cached_now = now()
  local ngx = {
    null = cjson.null,                  -- the NULL lightuserdata, as in nginx
    OK = 0, ERROR = -1, AGAIN = -2, DONE = -4, DECLINED = -5,
    HTTP_OK = 200, HTTP_INTERNAL_SERVER_ERROR = 500, HTTP_NOT_FOUND = 404,
    config = {
      subsystem = "http", debug = false, ngx_lua_version = 10025,
      nginx_version = 1025003, is_console = false,
      prefix = function() return "/tmp/" end,
      nginx_configure = function() return "" end,
    },
    re = require "ngx_re",
    ctx = {},
    var = {},
    arg = {},
    header = {},
    shared = setmetatable({}, { __index = function(t, name)
      local dict = new_shdict()
      rawset(t, name, dict)
      return dict
    end }),
    status = 200,
    now = function() return cached_now end,
    time = function() return math.floor(cached_now) end,
    update_time = function() cached_now = now() end,
    today = function() return os.date("!%Y-%m-%d", math.floor(cached_now)) end,
    localtime = function() return os.date("%Y-%m-%d %H:%M:%S", math.floor(cached_now)) end,
    utctime = function() return os.date("!%Y-%m-%d %H:%M:%S", math.floor(cached_now)) end,
    http_time = function(t) return os.date("!%a, %d %b %Y %H:%M:%S GMT", t) end,
    cookie_time = function(t) return os.date("!%a, %d-%b-%y %H:%M:%S GMT", t) end,
    get_phase = function() return _M.phase or "init_worker" end,
    sleep = function() end,
    encode_base64 = function(s, no_padding)
      local r = b64enc(s)
      return no_padding and (r:gsub("=+$", "")) or r
    end,
    md5_bin = md5_bin,
    md5 = function(s) return hex(md5_bin(s)) end,
    sha1_bin = sha1_bin,
    escape_uri = function(s)
      return (tostring(s):gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
    end,
    unescape_uri = function(s)
      return (tostring(s):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
    end,
    log = function(level, ...)
      local parts = {}
      for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
      _M.logged[#_M.logged + 1] = { level = level, msg = table.concat(parts) }
    end,
    worker = {
      id = function() return 0 end,
      pid = function() return C.getpid() end,
      count = function() return 1 end,
      exiting = function() return false end,
    },
    timer = {
      at = function() return true end,
      every = function() return true end,
      running_count = function() return 0 end,
      pending_count = function() return 0 end,
    },
    thread = { spawn = function(f, ...) return coroutine.create(f) end, wait = function() return true end },
    socket = { tcp = function() error("no sockets in the Kong suite", 2) end },
    location = {},
    req = {},
    resp = {},
    on_abort = function() return true end,
    exit = function() end,
    say = function() end,
    print = function() end,
    get_now_ts = function() return cached_now end,
  }
  for k, v in pairs(log_levels) do
    ngx[k] = v
  end
  return ngx
end

-------------------------------------------------------------------------------
-- modules stood in for: nothing here is what the suite tests.

local function stub_module(name, value)
  package.preload[name] = function() return value end
end

local function unavailable(name)
  return setmetatable({}, { __index = function(_, k)
    return function() error(name .. "." .. tostring(k) .. " is not available in the Kong suite", 2) end
  end })
end

local function install_stubs(ngx)
  -- OpenResty's lua-cjson has decode_array_with_array_mt, Debian's does not;
  -- Kong calls it when it loads (request body decoding, not tested here).
  local function patch(cj)
    if not cj.decode_array_with_array_mt then
      cj.decode_array_with_array_mt = function() end
    end
    if not cj.array_mt then
      cj.array_mt = {}
    end
    -- OpenResty's allows 16 digits (Kong asks for them), Debian's 14
    local precision = cj.encode_number_precision
    cj.encode_number_precision = function(p) return precision(math.min(p or 14, 14)) end
    local new = cj.new
    if new then
      cj.new = function(...)
        return patch(new(...))
      end
    end
    return cj
  end
  for _, m in ipairs { "cjson", "cjson.safe" } do
    patch(require(m))
  end
  -- types lua-resty-core declares (Kong's utils use them at load time)
  if not pcall(ffi.typeof, "ngx_str_t") then
    ffi.cdef [[
      typedef intptr_t ngx_int_t;
      typedef struct { size_t len; const unsigned char *data; } ngx_str_t;
    ]]
  end
  -- nginx C API wrappers of lua-resty-core
  stub_module("ngx.re", ngx.re)
  stub_module("ngx.errlog", { raw_log = function(level, msg) ngx.log(level, msg) end,
                              get_sys_filter_level = function() return ngx.DEBUG end })
  -- TLS details of the client connection: the stand-in request is plain http
  stub_module("ngx.ssl", setmetatable({ get_tls1_version_str = function() return nil end },
                                      { __index = unavailable("ngx.ssl") }))
  stub_module("ngx.resp", { add_header = function(k, v) ngx.header[k] = v end })
  stub_module("multipart", unavailable("multipart"))
  stub_module("ngx.base64", {
    encode_base64url = function(s) return (ngx.encode_base64(s, true):gsub("+", "-"):gsub("/", "_")) end,
    decode_base64url = function() return nil, "not available" end,
  })
  stub_module("ngx.process", { type = function() return "worker" end, get_master_pid = function() return 1 end })
  stub_module("ngx.semaphore", { new = function() return { post = function() end, wait = function() return true end } end })
  stub_module("resty.core.base", {
    get_request = function() return nil end,
    allows_subsystem = function() return true end,
    get_string_buf = function(n) return ffi.new("char[?]", n) end,
    get_size_ptr = function() return ffi.new("size_t[1]") end,
    FFI_OK = 0, FFI_ERROR = -1, FFI_DECLINED = -5, FFI_NO_REQ_CTX = -100, FFI_BAD_CONTEXT = -101,
  })
  -- OpenSSL bindings: certificate/key typedefs only, not used by batchq-log
  for _, m in ipairs { "resty.openssl", "resty.openssl.pkey", "resty.openssl.x509", "resty.openssl.digest",
                       "resty.openssl.rand", "resty.openssl.hmac", "resty.openssl.x509.chain",
                       "resty.openssl.x509.name", "resty.openssl.x509.store", "resty.openssl.cipher",
                       "resty.openssl.kdf", "resty.openssl.version", "resty.openssl.bn" } do
    stub_module(m, unavailable(m))
  end
  stub_module("resty.string", { to_hex = function(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end })
  -- uuid: random v4 ids from Lua's generator are enough for entities in memory
  local function uuid()
    return (string.gsub("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", "[xy]", function(c)
      local v = (c == "x") and math.random(0, 15) or math.random(8, 11)
      return string.format("%x", v)
    end))
  end
  stub_module("resty.jit-uuid", setmetatable({ generate_v4 = uuid, seed = function() end,
    is_valid = function(s) return ngx.re.find(s, "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", "ioj") ~= nil end },
    { __call = function() return uuid() end }))
  stub_module("resty.upload", unavailable("resty.upload"))
  stub_module("resty.core.time", {
    monotonic_msec = function() return math.floor(now() * 1000) end,
    monotonic_time = function() return now() end,
  })
  -- JSON-schema fields (3.9): batchq-log has none
  stub_module("resty.ljsonschema", unavailable("resty.ljsonschema"))
  stub_module("resty.ljsonschema.metaschema", { id = "http://json-schema.org/draft-04/schema#" })
  stub_module("ffi-zlib", unavailable("ffi-zlib"))
  stub_module("resty.ipmatcher", unavailable("resty.ipmatcher"))
  local consts = { O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_EXCL = 0x80,
                   O_TRUNC = 0x200, O_APPEND = 0x400, O_NONBLOCK = 0x800, O_SYNC = 0x101000,
                   S_IRUSR = 0x100, S_IWUSR = 0x80, S_IXUSR = 0x40, S_IRWXU = 0x1c0,
                   S_IRGRP = 0x20, S_IWGRP = 0x10, S_IXGRP = 0x8, S_IRWXG = 0x38,
                   S_IROTH = 0x4, S_IWOTH = 0x2, S_IXOTH = 0x1, S_IRWXO = 0x7 }
  local sc = {}
  for k, v in pairs(consts) do sc[k] = function() return v end end
  stub_module("lua_system_constants", sc)
  stub_module("resty.lock", { new = function()
    return { lock = function() return 0 end, unlock = function() return 1 end }
  end })
  stub_module("resty.dns.client", unavailable("resty.dns.client"))
  stub_module("resty.lrucache", require("resty.lrucache"))
  -- external plugin servers and wasm filters: batchq-log is a Lua plugin
  stub_module("kong.runloop.plugin_servers", {
    load_schema = function() return false end, load_plugin = function() return false end,
    get_plugin = function() return nil end,
  })
  stub_module("kong.runloop.wasm.plugins", { load_schema = function() return false end,
                                             load_plugin = function() return false end })
  stub_module("kong.runloop.wasm", { enabled = function() return false end, filters_by_name = {} })
end

-------------------------------------------------------------------------------

local loaded

-- Frees what the garbage collector would free at a normal exit (compiled
-- regexes); call before os.exit.
function _M.close()
  require("ngx_re").release()
end

function _M.load(path, opts)
  assert(not loaded, "kong_loader.load: one Kong tree per process")
  opts = opts or {}
  local env_plugin = os.getenv("BATCHQ_KONG_PLUGIN_PATH")
  local plugin_paths = opts.plugin_paths or { env_plugin ~= "" and env_plugin or repo .. "/examples/kong-plugin" }
  local lp = { here .. "/?.lua" }
  for _, p in ipairs(plugin_paths) do
    lp[#lp + 1] = p .. "/?.lua"
    lp[#lp + 1] = p .. "/?/init.lua"
  end
  lp[#lp + 1] = path .. "/?.lua"
  lp[#lp + 1] = path .. "/?/init.lua"
  package.path = table.concat(lp, ";") .. ";" .. package.path

  local ngx = make_ngx()
  _G.ngx = ngx
  install_stubs(ngx)

  local configuration = { untrusted_lua = "sandbox", untrusted_lua_sandbox_requires = {},
                          untrusted_lua_sandbox_environment = {}, loaded_plugins = { ["batchq-log"] = true },
                          database = "off", role = "traditional" }
  _G.kong = { configuration = configuration, version = nil, log = nil }

  local K = { path = path }
  local meta = require "kong.meta"
  local vt = meta._VERSION_TABLE
  K.version, K.major, K.minor = meta._VERSION, vt.major, vt.minor
  _G.kong.version = meta._VERSION
  _G.kong.version_num = vt.major * 10000 + vt.minor * 100 + vt.patch

  -- kong.log for modules that log through it (the schema library does not)
  local function klog(level)
    return function(...) ngx.log(level, ...) end
  end
  _G.kong.log = { err = klog(ngx.ERR), warn = klog(ngx.WARN), notice = klog(ngx.NOTICE),
                  info = klog(ngx.INFO), debug = klog(ngx.DEBUG), crit = klog(ngx.CRIT),
                  alert = klog(ngx.ALERT), deprecation = setmetatable({}, { __call = function() end }) }

  K.require = require
  K.Schema = require "kong.db.schema"
  K.MetaSchema = require "kong.db.schema.metaschema"
  K.Entity = require "kong.db.schema.entity"
  K.Errors = require "kong.db.errors"
  K.typedefs = require "kong.db.schema.typedefs"
  K.plugin_loader = require "kong.db.schema.plugin_loader"

  -- The entities a plugin row refers to: only their primary keys matter here
  -- (the real ones pull in the router).
  for _, name in ipairs { "routes", "services", "consumers" } do
    assert(K.Entity.new({ name = name, primary_key = { "id" }, fields = { { id = K.typedefs.uuid } } }))
  end
  local plugins_def = require "kong.db.schema.entities.plugins"
  local plugins_entity, err = K.Entity.new(plugins_def)
  assert(plugins_entity, err)
  K.plugins_entity = plugins_entity

  local subschemas = {}
  function K.load_plugin(name)
    if subschemas[name] then
      return subschemas[name]
    end
    local errors = K.Errors.new("kong-suite")
    local sub, err = K.plugin_loader.load_subschema(plugins_entity, name, errors)
    subschemas[name] = sub
    return sub, err
  end

  function K.process(name, config, extra)
    if not subschemas[name] then
      local ok, err = K.load_plugin(name)
      if not ok then
        return nil, err
      end
    end
    local row = { name = name, config = config }
    for k, v in pairs(extra or {}) do
      row[k] = v
    end
    local processed, perr = plugins_entity:process_auto_fields(row, "insert")
    if not processed then
      return nil, perr
    end
    local ok, verr = plugins_entity:validate(processed)
    if not ok then
      return nil, verr
    end
    return processed
  end

  -- Kong's real vault PDK (kong/pdk/vault.lua, 3.x) as kong.vault, with the
  -- bundled env vault and a custom vault "suite" (Kong's vault interface:
  -- get(config, resource, version)) that reads K.secrets, so a test can
  -- change a secret: {vault://suite/name} -> K.secrets.name. Its timers
  -- (kong.timer) run at once: K.rotate_secrets() is what the rotation timer
  -- does when the cached secrets are due (kong.vault.flush: LRU flushed,
  -- every secret fetched again); kong.vault.update(conf) then writes them
  -- into `conf` in place, as the plugins iterator has it do per request.
  K.secrets = {}
  function K.vault()
    if not K.vault_pdk then
      package.preload["kong.vaults.suite"] = function()
        return { name = "suite", VERSION = "1.0.0",
                 get = function(_, resource) return K.secrets[resource] end }
      end
      package.preload["kong.vaults.suite.schema"] = function()
        return { name = "suite", fields = { { config = { type = "record", fields = {} } } } }
      end
      configuration.loaded_vaults = { env = true, suite = true }
      _G.kong.timer = _G.kong.timer or {
        named_at = function(_, _, _, fn, ...) fn(false, ...) return true end,
        named_every = function() return true end,
        at = function(_, _, fn, ...) fn(false, ...) return true end,
        every = function() return true end,
      }
      K.vault_pdk = require("kong.pdk.vault").new(_G.kong)
      _G.kong.vault = K.vault_pdk
    end
    return K.vault_pdk
  end

  function K.rotate_secrets()
    for _, name in ipairs { "kong_secrets", "kong_db_cache", "kong_core_db_cache" } do
      ngx.shared[name]:expire_all()
    end
    K.vault().flush()
  end

  -- ngx.get_phase() of the stand-in ngx (default "init_worker")
  function K.set_phase(phase)
    _M.phase = phase
  end

  function K.set_configuration(t)
    for k, v in pairs(t) do
      configuration[k] = v
    end
  end

  local ok, sandbox = pcall(require, "kong.tools.sandbox")
  K.sandbox = ok and sandbox or nil

  -- kong.log.serialize: Kong's own, from kong/pdk/log.lua, on the stand-in
  -- request that K.serialize(req) builds. nginx's raw-log C function (which
  -- log.lua looks up when it loads and serialize never calls) is the only
  -- part stood in for.
  local log_pdk
  local current = { req = {}, args = {} } -- the request K.serialize stands in for
  local function load_log_pdk()
    if log_pdk == nil then
      -- Kong's PDK keeps these as upvalues: they read `current`.
      ngx.req.get_headers = function()
        local hdrs = {}
        for k, v in pairs(current.req.headers or {}) do hdrs[k:lower()] = v end
        return hdrs
      end
      ngx.req.get_method = function() return current.req.method or "GET" end
      ngx.req.get_uri_args = function() return current.args end
      ngx.req.start_time = function() return current.req.started_at or 1700000000.25 end
      ngx.req.http_version = function() return 1.1 end
      ngx.resp.get_headers = function() return current.req.resp_headers or {} end
      local real_ffi = package.loaded.ffi
      package.loaded.ffi = setmetatable({ C = setmetatable({
        ngx_http_lua_ffi_raw_log = function() return 0 end,
        ngx_stream_lua_ffi_raw_log = function() return 0 end,
      }, { __index = real_ffi.C }) }, { __index = real_ffi })
      local lok, mod = pcall(require, "kong.pdk.log")
      package.loaded.ffi = real_ffi
      assert(lok, mod)
      -- trusted_ips is empty: no client is trusted (Kong's default)
      _G.kong.ip = _G.kong.ip or { is_trusted = function() return false end }
      _G.kong.client = _G.kong.client or { get_ip = function() return ngx.var.remote_addr end }
      _G.kong.request = require("kong.pdk.request").new(_G.kong)
      _G.kong.response = require("kong.pdk.response").new(_G.kong)
      local pok, phases = pcall(require, "kong.pdk.private.phases")
      K.log_phase = pok and phases.phases.log or 0x200
      log_pdk = mod.new()
    end
    return log_pdk
  end

  -- req: { method, uri ("/path?query"), headers (request), status,
  --        resp_headers, route, service, consumer, started_at (s),
  --        request_time (s), client_ip, host, port, scheme,
  --        bytes_sent, request_length, upstream_status }
  -- K.request(req) makes it the current request (ngx.ctx, ngx.var, ngx.req...)
  -- K.serialize([req]) -> what Kong's kong.log.serialize() returns for the
  --                       current request (after K.request(req) when given)
  -- K.log_pdk()        -> Kong's kong.log object (serialize,
  --                       set_serialize_value, ...) for kong.log in tests
  function K.request(req)
    load_log_pdk()
    local path, query = req.uri or "/", nil
    local qpos = path:find("?", 1, true)
    if qpos then
      path, query = path:sub(1, qpos - 1), path:sub(qpos + 1)
    end
    local args = {}
    for k, v in (query or ""):gmatch("([^&=]+)=?([^&]*)") do
      args[k] = v
    end
    ngx.ctx = { KONG_PHASE = K.log_phase, route = req.route, service = req.service,
                authenticated_consumer = req.consumer, KONG_PROXY_LATENCY = req.kong_latency or 1,
                KONG_WAITING_TIME = req.upstream_latency or 2 }
    ngx.var = {
      request_uri = req.uri or "/", uri = path, upstream_uri = path, scheme = req.scheme or "http",
      host = req.host or "kong.test", server_port = tostring(req.port or 8000),
      request_length = tostring(req.request_length or 100), bytes_sent = tostring(req.bytes_sent or 200),
      request_time = tostring(req.request_time or 0.005), remote_addr = req.client_ip or "127.0.0.1",
      is_args = query and "?" or "", args = query, upstream_status = tostring(req.upstream_status or req.status or 200),
      request_id = req.request_id or "0123456789abcdef0123456789abcdef",
    }
    ngx.status = req.status or 200
    current = { req = req, args = args }
  end

  function K.serialize(req)
    local pdk = load_log_pdk()
    if req then
      K.request(req)
    end
    return pdk.serialize()
  end
  K.log_pdk = load_log_pdk

  loaded = K
  return K
end

function _M.tree_or_fork(argv)
  if argv[1] then
    return argv[1]
  end
  local trees, bad = _M.trees()
  if #bad > 0 then
    print("FAIL: not a Kong source tree (no kong/ folder): " .. table.concat(bad, ", "))
    os.exit(1)
  end
  if #trees == 0 then
    print("SKIP: no Kong tree (set KONG_SRC=/path/to/kong, or put trees in ../shared/kong-src/)")
    os.exit(77)
  end
  local failed = {}
  for _, t in ipairs(trees) do
    print("=== Kong " .. t.tag .. " (" .. t.path .. ")")
    io.stdout:flush()
    local ok = os.execute(string.format("'%s' '%s' '%s'", argv[-1], argv[0], t.path))
    if not (ok == 0 or ok == true) then
      failed[#failed + 1] = t.tag
    end
  end
  print(#failed == 0 and ("all Kong trees passed (" .. #trees .. ")")
        or ("FAILED on Kong " .. table.concat(failed, ", ")))
  os.exit(#failed == 0 and 0 or 1)
end

return _M
