-- tests/kong/test_kong_suite.lua - batchq-log against Kong's own code (label
-- kong). Without an argument it finds the Kong trees (KONG_SRC, a
-- ";"-separated list, else <repo>/../shared/kong-src/*), runs itself once per
-- tree in a fresh luajit (Kong's modules are global state) and reports per
-- tag; with no tree at all it exits 77, which ctest reports as skipped.
--
--   KONG_SRC=/path/to/kong ctest -L kong          (a Kong checkout)
--   BATCHQ_LIB=... LUA_PATH=... luajit tests/kong/test_kong_suite.lua [tree]
--
-- Per tree: the plugin's schema through Kong's MetaSubSchema, plugin_loader
-- and plugins entity; http-log configurations as that version saves them,
-- through Kong's process_auto_fields + validate, into batchq-log and the real
-- libbatchq; a sweep of every boundary value http-log's schema accepts for the
-- fields batchq-log shares; Kong's added keys and vault `$refs`; in-place
-- reference updates as kong.vault.update does them.
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../lua/?.lua;" .. package.path

local kl = require "kong_loader"

local tree = kl.tree_or_fork(arg)

local K = kl.load(tree)
local h = require "helpers"
local cjson = require "cjson.safe"
local batchq = require "batchq"
local plugin_conf = require "kong.plugins.batchq-log.conf"

local test, check, eq = h.test, h.check, h.eq
local null = ngx.null
local fmt = string.format
-- Kong 3.3+ has its queue library and the `queue` record (kong.tools.queue_schema)
local KONG3Q = (pcall(K.require, "kong.tools.queue_schema"))

local ENDPOINT = "http://127.0.0.1:9/logs"

local function show(v)
  return (cjson.encode(v)) or tostring(v)
end

-- Order-independent text of a value, to compare tables.
local function canon(v)
  if type(v) ~= "table" then
    return v == null and "null" or type(v) .. ":" .. tostring(v)
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local val = v[k]
    if val == nil then val = v[tonumber(k)] end
    out[#out + 1] = k .. "=" .. canon(val)
  end
  return "{" .. table.concat(out, ",") .. "}"
end

local function errtext(e)
  return type(e) == "table" and show(e) or tostring(e)
end

local function deep_copy(t)
  if type(t) ~= "table" then
    return t
  end
  local c = {}
  for k, v in pairs(t) do
    c[k] = deep_copy(v)
  end
  return c
end

-- batchq.new on the mapping of a processed configuration; closes the queue.
local function make_queue(conf)
  local qc = plugin_conf.queue_conf(conf)
  local q, err = batchq.new(qc)
  if q then
    q:close(0)
  end
  return q ~= nil, err, qc
end

local function process(name, config, extra)
  return K.process(name, deep_copy(config), extra)
end

print(fmt("# Kong %s, libbatchq %s", K.version, batchq.version()))

test("schema: MetaSubSchema, plugin_loader and the plugins entity take batchq-log", function()
  local def = require "kong.plugins.batchq-log.schema"
  local ok, err = K.MetaSchema.MetaSubSchema:validate(def)
  check(ok, "MetaSubSchema: " .. errtext(err))
  local sub, lerr = K.load_plugin("batchq-log")
  check(sub, "plugin_loader.load_subschema: " .. errtext(lerr))
  local row, perr = process("batchq-log", { http_endpoint = ENDPOINT })
  check(row, "process + validate: " .. errtext(perr))
  eq(row.config.ssl_verify, false, "ssl_verify default (http-log never verifies)")
  check((KONG3Q and type(row.config.queue) == "table") or (not KONG3Q and row.config.queue == nil),
        "queue record exactly where Kong has kong.tools.queue_schema")
end)

test("schema: a bad configuration is refused with Kong's field error", function()
  local row, err = process("batchq-log", { http_endpoint = ENDPOINT, method = "GET" })
  check(not row, "method GET accepted")
  check(type(err) == "table" and err.config and err.config.method, "error names config.method: " .. errtext(err))
  row, err = process("batchq-log", { http_endpoint = ENDPOINT, initial_retry_delay = 0.0001 })
  check(not row, "initial_retry_delay 0.0001 accepted")
  row, err = process("batchq-log", { http_endpoint = ENDPOINT, drop_poll_interval = 0.5 })
  check(row, "drop_poll_interval 0.5 refused: " .. errtext(err))
end)

-- A configuration that uses every http-log field with a value other than
-- its default, as that version of Kong saves it.
local function full_http_log_config()
  local c = {
    http_endpoint = "http://user:pw@127.0.0.1:9/path?x=1",
    method = "PUT",
    content_type = "application/json",
    timeout = 1234.5,
    keepalive = 0,
    retry_count = 3,
    queue_size = 7,
    flush_timeout = 0.25,
    custom_fields_by_lua = { added = "return 1" },
  }
  if K.major < 3 then
    c.headers = { ["X-Multi"] = { "a", "b" }, ["X-One"] = { "c" } }
  else
    c.headers = { ["X-One"] = "c" }
  end
  if KONG3Q then
    c.queue = { max_batch_size = 50, max_coalescing_delay = 0.5, max_entries = 100, max_bytes = 1000000,
                max_retry_time = 30, initial_retry_delay = 0.5, max_retry_delay = 10 }
  end
  return c
end

test("saved http-log configurations load unchanged into batchq-log and make a queue", function()
  for _, input in ipairs { { http_endpoint = ENDPOINT }, full_http_log_config() } do
    local saved, err = process("http-log", input)
    check(saved, "http-log refused its own configuration: " .. errtext(err))
    -- what the database holds: config with Kong's defaults and nulls
    local row, berr = process("batchq-log", saved.config)
    check(row, "batchq-log refused a saved http-log configuration " .. show(saved.config) .. ": " .. errtext(berr))
    for k, v in pairs(saved.config) do
      eq(canon(row.config[k]), canon(v), "config." .. k .. " unchanged")
    end
    local ok, qerr, qc = make_queue(row.config)
    check(ok, "batchq.new(" .. show(qc) .. "): " .. tostring(qerr))
  end
end)

-- Kong's defaults for a field of a schema definition, found by name.
local function field_def(fields, name)
  for _, f in ipairs(fields) do
    local n, d = next(f)
    if n == name then
      return d
    end
  end
end

test("mapping: http-log's semantics on this version", function()
  local saved = assert(process("http-log", { http_endpoint = ENDPOINT }))
  local row = assert(process("batchq-log", saved.config))
  local m = plugin_conf.map(row.config)
  eq(m.timeout_scope, "operation", "timeout per socket operation")
  eq(m.ssl_verify, false, "no certificate verification")
  eq(m.timeout, saved.config.timeout, "timeout")
  eq(m.keepalive, saved.config.keepalive, "keepalive")
  if KONG3Q then
    local qdef = K.require("kong.tools.queue_schema")
    local qf = qdef.fields
    local function default(n) return field_def(qf, n).default end
    eq(m.success_status_max, 299, "3.x: success is status < 300")
    eq(m.backoff, "exponential", "3.x backoff")
    eq(m.flush_mode, "coalescing", "3.x flush")
    eq(m.flush_timeout, default("max_coalescing_delay"), "max_coalescing_delay")
    eq(m.queue_size, default("max_batch_size"), "max_batch_size")
    eq(m.max_entries, default("max_entries"), "max_entries")
    eq(m.initial_retry_delay, default("initial_retry_delay"), "initial_retry_delay")
    eq(m.max_retry_delay, default("max_retry_delay"), "max_retry_delay")
    eq(m.max_retry_time, default("max_retry_time"), "max_retry_time")
    eq(m.max_bytes, nil, "max_bytes unset")
    -- concurrency_limit 1 at max_batch_size 1: the q1 default (conf.lua)
    eq(m.concurrency, m.queue_size == 1 and plugin_conf.Q1_CONCURRENCY or 1, "concurrency_limit 1")
    check(m.retry_count >= 1000000, "3.x: retries bounded by time only, got " .. tostring(m.retry_count))
  else
    local def = field_def(K.load_plugin("http-log").fields, "config").fields
    eq(m.success_status_max, 399, "2.x: success is status < 400")
    eq(m.backoff, "kong_quadratic", "2.x backoff")
    eq(m.flush_mode, "kong_idle", "2.x flush")
    eq(m.retry_count, field_def(def, "retry_count").default, "retry_count")
    eq(m.queue_size, field_def(def, "queue_size").default, "queue_size")
    eq(m.flush_timeout, field_def(def, "flush_timeout").default, "flush_timeout")
    eq(m.process_delay, 0, "process_delay 0 (http-log)")
    eq(m.concurrency, m.queue_size == 1 and plugin_conf.Q1_CONCURRENCY or 1, "concurrency at queue_size 1")
  end
  local ok, err, qc = make_queue(row.config)
  check(ok, "batchq.new(" .. show(qc) .. "): " .. tostring(err))
end)

if KONG3Q then
  test("mapping: 3.x deprecated fields as Queue.get_plugin_params reads them", function()
    local function mapped(extra)
      local c = { http_endpoint = ENDPOINT, queue = { max_batch_size = 20, max_coalescing_delay = 3 } }
      for k, v in pairs(extra) do c[k] = v end
      local saved = assert(process("http-log", c))
      return plugin_conf.map(assert(process("batchq-log", saved.config)).config)
    end
    local m = mapped {}
    eq(m.queue_size, 20, "queue.max_batch_size")
    eq(m.flush_timeout, 3, "queue.max_coalescing_delay")
    m = mapped { queue_size = 1, flush_timeout = 2, retry_count = 10 }
    eq(m.queue_size, 20, "queue_size at its old default is ignored")
    eq(m.flush_timeout, 3, "flush_timeout at its old default is ignored")
    m = mapped { queue_size = 5, flush_timeout = 0.5, retry_count = 2 }
    eq(m.queue_size, 5, "queue_size overrides max_batch_size")
    eq(m.flush_timeout, 0.5, "flush_timeout overrides max_coalescing_delay")
    check(m.retry_count >= 1000000, "retry_count no longer works on 3.x")
  end)
end

test("mapping: values Kong accepts but libbatchq cannot take are mapped as nginx/Kong read them", function()
  local function mapped(c)
    c.http_endpoint = ENDPOINT
    local saved = assert(process("http-log", c))
    return plugin_conf.map(assert(process("batchq-log", saved.config)).config)
  end
  eq(mapped({ timeout = 0 }).timeout, 60000, "timeout 0: nginx's lua_socket_*_timeout default")
  eq(mapped({ timeout = 1234.9 }).timeout, 1234, "fractional ms truncated as nginx does")
  eq(mapped({ timeout = 2 ^ 40 }).timeout, 86400000, "huge timeout capped at a day")
  eq(mapped({ keepalive = 0 }).keepalive, 86400000, "keepalive 0: no idle limit (a day)")
  eq(mapped({ queue_size = 0 }).queue_size, 1, "queue_size 0: one entry per batch")
  if KONG3Q then
    local m = mapped({ queue = { max_batch_size = 500, max_entries = 100 } })
    eq(m.queue_size, 100, "a batch never exceeds max_entries")
    m = mapped({ queue = { initial_retry_delay = 100, max_retry_delay = 5 } })
    eq(m.initial_retry_delay, 5, "first wait capped by max_retry_delay")
    m = mapped({ queue = { max_retry_time = -1 } })
    eq(m.retry_count, 1, "max_retry_time -1: no retry")
    local qf = K.require("kong.tools.queue_schema").fields
    if field_def(qf, "concurrency_limit") then
      eq(mapped({ queue = { concurrency_limit = -1 } }).concurrency, 16, "concurrency_limit -1")
    end
  else
    eq(mapped({ retry_count = -5 }).retry_count, 0, "negative retry_count")
    eq(mapped({ queue_size = 20000 }).max_entries, 20000, "batchq's bound grows to one batch (2.x is unbounded)")
  end
end)

-- Boundary values of a field definition, from its validators.
local function boundary_values(def)
  local vals, seen = {}, {}
  local function add(v)
    if v ~= nil and v ~= null and not seen[v] then
      seen[v] = true
      vals[#vals + 1] = v
    end
  end
  add(def.default)
  if def.one_of then
    for _, v in ipairs(def.one_of) do add(v) end
  end
  if def.type == "boolean" then
    add(true) add(false)
  end
  if def.type == "number" or def.type == "integer" then
    local int = def.type == "integer"
    if def.between then
      local lo, hi = def.between[1], def.between[2]
      add(lo) add(hi)
      add(int and math.floor((lo + hi) / 2) or (lo + hi) / 2)
      if not int then add(lo + (hi - lo) / 3) end
    end
    if def.gt then
      add(int and math.floor(def.gt) + 1 or def.gt + 0.001)
    end
    if not def.between and not def.one_of then
      -- no bound in the schema: the type's own edges
      for _, v in ipairs { 0, -1, 1, 2, 2 ^ 31, 2 ^ 40, 2 ^ 53 } do add(v) end
      if not int then
        for _, v in ipairs { 0.001, 0.5, 1.5, 1e-9 } do add(v) end
      end
    end
  end
  return vals
end

test("sweep: every boundary value http-log accepts is accepted by batchq-log and makes a queue", function()
  local sub = assert(K.load_plugin("http-log"))
  local cfields = field_def(sub.fields, "config").fields
  local mine = field_def(assert(K.load_plugin("batchq-log")).fields, "config").fields
  local skip = { http_endpoint = true, headers = true, custom_fields_by_lua = true }
  local cases = {}
  for _, f in ipairs(cfields) do
    local name, def = next(f)
    if not skip[name] and field_def(mine, name) then
      if def.type == "record" then
        for _, sf in ipairs(def.fields) do
          local sname, sdef = next(sf)
          for _, v in ipairs(boundary_values(sdef)) do
            cases[#cases + 1] = { label = name .. "." .. sname, config = { [name] = { [sname] = v } } }
          end
        end
      else
        for _, v in ipairs(boundary_values(def)) do
          cases[#cases + 1] = { label = name, config = { [name] = v } }
        end
      end
    end
  end
  check(#cases > 20, "too few cases derived from http-log's schema: " .. #cases)
  local accepted, failures = 0, {}
  for _, c in ipairs(cases) do
    c.config.http_endpoint = ENDPOINT
    local saved = process("http-log", c.config)
    if saved then
      accepted = accepted + 1
      local row, err = process("batchq-log", saved.config)
      if not row then
        failures[#failures + 1] = fmt("%s = %s: batchq-log schema refused: %s", c.label,
                                      show(c.config[c.label:match("^[^.]+")]), errtext(err))
      else
        local ok, qerr, qc = make_queue(row.config)
        if not ok then
          failures[#failures + 1] = fmt("%s = %s: batchq.new(%s): %s", c.label,
                                        show(c.config[c.label:match("^[^.]+")]), show(qc), tostring(qerr))
        end
      end
    end
  end
  print(fmt("# sweep: %d values derived, %d accepted by http-log, %d failures", #cases, accepted, #failures))
  check(#failures == 0, table.concat(failures, "\n"))
end)

-- The table Kong hands the handler: the row's config plus what
-- plugins_iterator's get_plugin_config adds on that version.
local function handler_conf(row)
  local cfg = row.config
  cfg.route_id = row.route and row.route.id
  cfg.service_id = row.service and row.service.id
  cfg.consumer_id = row.consumer and row.consumer.id
  cfg.plugin_instance_name = row.instance_name
  cfg.__plugin_id = row.id
  cfg.__ws_id = "00000000-0000-4000-8000-000000000000"
  cfg.__key__ = "plugins:batchq-log:::::" .. cfg.__ws_id
  cfg.__seq__ = 1
  return cfg
end

local LIB = {}
for _, k in ipairs(plugin_conf.LIB_KEYS or {}) do LIB[k] = true end

-- Vault references, resolved by Kong's own code when it reads a row
-- (process_auto_fields "select"): 3.x through kong.vault (K.vault(): Kong's
-- vault PDK with a custom vault reading K.secrets), 2.8 through its own
-- kong.pdk.vault instance and the env vault ({vault://env/log-url} ->
-- $LOG_URL).
local ffi = require "ffi"
ffi.cdef "int setenv(const char *name, const char *value, int overwrite);"
local function ref(name)
  return K.major >= 3 and "{vault://suite/" .. name .. "}" or "{vault://env/" .. name .. "}"
end
local function set_secret(name, value)
  if K.major >= 3 then
    K.secrets[name] = value
  else
    ffi.C.setenv((name:upper():gsub("-", "_")), value, 1)
  end
end
if K.major >= 3 then
  K.vault()
end

local function select_row(config)
  local extra = { route = { id = "11111111-1111-4111-8111-111111111111" } }
  if K.plugins_entity.fields.instance_name then
    extra.instance_name = "logs-a" -- 3.x
  end
  local inserted, ierr = process("batchq-log", config, extra)
  assert(inserted, errtext(ierr))
  K.set_phase("access")
  local row, err = K.plugins_entity:process_auto_fields(inserted, "select")
  K.set_phase(nil)
  assert(row, errtext(err))
  return row
end

test("Kong's added keys and $refs are never passed to batchq.new", function()
  set_secret("log-url", ENDPOINT)
  set_secret("log-token", "Bearer one")
  local headers = K.major < 3 and { Authorization = { ref("log-token") } }
                  or { Authorization = ref("log-token") }
  local row = select_row({ http_endpoint = ref("log-url"), headers = headers })
  local conf = handler_conf(row)
  if K.major >= 3 then
    check(type(conf["$refs"]) == "table", "Kong added $refs: " .. show(conf))
  end
  local qc = plugin_conf.queue_conf(conf)
  for k in pairs(qc) do
    check(LIB[k], "queue_conf passes a key that is not libbatchq's: " .. tostring(k))
  end
  for _, k in ipairs { "$refs", "route_id", "service_id", "consumer_id", "plugin_instance_name", "__plugin_id",
                       "__ws_id", "__key__", "__seq__", "protocols", "queue", "custom_fields_by_lua",
                       "drop_poll_interval" } do
    eq(qc[k], nil, k .. " passed on")
  end
  eq(qc.http_endpoint, ENDPOINT, "resolved endpoint")
  local ok, err = make_queue(conf)
  check(ok, "batchq.new: " .. tostring(err))
end)

if K.major >= 3 then
  test("in-place updates by Kong's kong.vault.update change the queue key; nothing else does", function()
    set_secret("log-url", ENDPOINT)
    set_secret("log-token", "Bearer one")
    local row = select_row({ http_endpoint = ref("log-url"), headers = { Authorization = ref("log-token") } })
    local conf = handler_conf(row)
    local vault = K.vault()
    K.set_phase("access")
    local k1 = plugin_conf.conf_key(conf)
    eq(plugin_conf.conf_key(conf), k1, "same table, same values, same key")
    -- per request, the plugins iterator calls kong.vault.update(cfg)
    local seq, key = conf.__seq__, conf.__key__
    vault.update(conf)
    eq(plugin_conf.conf_key(conf), k1, "update with unchanged secrets keeps the key")
    -- the secret rotates; the next request's update writes it in place
    set_secret("log-token", "Bearer two")
    K.rotate_secrets()
    vault.update(conf)
    eq(conf.headers.Authorization, "Bearer two", "Kong updated the header in place")
    eq(conf.__seq__, seq, "__seq__ unchanged by the update")
    eq(conf.__key__, key, "__key__ unchanged by the update")
    local k2 = plugin_conf.conf_key(conf)
    check(k2 ~= k1, "rotated header secret: the key must change")
    eq(plugin_conf.queue_conf(conf).headers.Authorization, "Bearer two", "new secret mapped")
    set_secret("log-url", "http://127.0.0.1:10/other")
    K.rotate_secrets()
    vault.update(conf)
    eq(conf.http_endpoint, "http://127.0.0.1:10/other", "Kong updated the endpoint in place")
    local k3 = plugin_conf.conf_key(conf)
    check(k3 ~= k2, "new endpoint: the key must change")
    eq(plugin_conf.queue_conf(conf).http_endpoint, "http://127.0.0.1:10/other", "new endpoint mapped")
    K.set_phase(nil)
  end)
end

test("Kong's kong.log.serialize entries reach the receiver through a mapped http-log configuration", function()
  local rx = h.start_receiver()
  local saved = assert(process("http-log", { http_endpoint = rx.url }))
  local row = assert(process("batchq-log", saved.config))
  local q = assert(batchq.new(plugin_conf.queue_conf(row.config)))
  local entry = K.serialize({ method = "POST", uri = "/orders?id=7", status = 201,
                              headers = { Authorization = "Bearer secret", ["X-Req"] = "1" },
                              route = { id = "11111111-1111-4111-8111-111111111111" },
                              service = { id = "22222222-2222-4222-8222-222222222222" } })
  eq(entry.request.headers.authorization, "REDACTED", "Kong's serialize redacts Authorization")
  assert(q:enqueue(assert(cjson.encode(entry))))
  assert(q:flush(20000))
  q:close(1000)
  local lines = rx.entries()
  eq(#lines, 1, "entries received")
  local got = cjson.decode(lines[1] or "")
  check(got, "receiver line is JSON: " .. tostring(lines[1]))
  eq(got.request.method, "POST", "method")
  eq(got.request.querystring.id, "7", "querystring")
  eq(got.response.status, 201, "status")
  eq(got.route.id, "11111111-1111-4111-8111-111111111111", "route")
  eq(got.request.headers.authorization, "REDACTED", "still redacted")
end, true)

test("the sandbox Kong runs custom_fields_by_lua in is loadable here", function()
  check(K.sandbox, "kong.tools.sandbox")
  local fn = K.sandbox.sandbox("string.upper = function() return 'pwned' end")
  local ok = pcall(fn)
  check(not ok, "Kong's sandbox let string.upper be replaced")
  eq(string.upper("a"), "A", "string.upper intact")
end)

kl.close()
h.finish()
