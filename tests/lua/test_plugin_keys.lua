-- tests/lua/test_plugin_keys.lua - the Kong plugin (batchq-log) against the
-- one table of configuration keys (lib/config.cpp, printed by
-- `batchq_config_doc --lua`):
--   * every key conf.lua may pass (LIB_KEYS) is a key of the table;
--   * every value the plugin's schema.lua accepts (its bounds, one_of lists
--     and defaults; with Kong 3.x's own `queue` record from the Kong trees
--     in ../shared/kong-src when there) becomes, through conf.lua's map(),
--     values the table accepts: a configuration Kong saves never gives a
--     queue that libbatchq refuses.
-- No library is loaded: this checks the plugin's files against the table.
-- Needs BATCHQ_CONFIG_DOC and LUA_PATH (as ctest sets them).
local doc = assert(os.getenv("BATCHQ_CONFIG_DOC"), "BATCHQ_CONFIG_DOC must name batchq_config_doc")
local cjson = require "cjson.safe"

-- helpers.lua (the test runner) sits next to this file.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local h = require "helpers"
local test = h.test

-- The table of keys ----------------------------------------------------------
local p = assert(io.popen("'" .. doc .. "' --lua"))
local keys_src = p:read("*a")
p:close()
local KEYS = {}
for _, k in ipairs(assert(loadstring(keys_src, "=batchq_config_doc"))()) do
  KEYS[k.name] = k
end

-- nil when the table accepts `v` for `key`, else why not.
local function refused(key, v)
  local k = KEYS[key]
  if not k then
    return "not a libbatchq key"
  end
  local t = type(v)
  if k.kind == "string" then
    return t ~= "string" and "not a string" or nil
  elseif k.kind == "choice" then
    for _, c in ipairs(k.choices) do
      if v == c then return nil end
    end
    return "not one of " .. table.concat(k.choices, ", ")
  elseif k.kind == "boolean" then
    return t ~= "boolean" and "not a boolean" or nil
  elseif k.kind == "object" then
    return t ~= "table" and "not an object" or nil
  end
  if t ~= "number" or v ~= v then
    return "not a number"
  end
  if k.kind == "integer" and math.floor(v) ~= v then
    return "not an integer"
  end
  if not k.unbounded_lo and v < k.lo then
    return "below " .. k.lo
  end
  if not k.clamp and v > k.hi then
    return "above " .. k.hi
  end
  return nil
end

-- The plugin's files, with stand-ins for what they take from Kong -------------
_G.ngx = _G.ngx or { null = cjson.null }

local function typedef(def)
  return setmetatable(def, { __call = function(self, overrides)
    local t = {}
    for k, v in pairs(self) do t[k] = v end
    for k, v in pairs(overrides or {}) do t[k] = v end
    return t
  end })
end

-- schema.lua with (queue_schema = Kong's queue record) or without (2.x).
local function load_schema(queue_schema)
  package.loaded["kong.db.schema.typedefs"] = {
    url = typedef({ type = "string" }),
    protocols = typedef({ type = "set" }),
    header_name = typedef({ type = "string" }),
    lua_code = typedef({ type = "map" }),
    headers = typedef({ type = "map" }),
  }
  package.loaded["kong.tools.queue_schema"] = queue_schema
  package.loaded["kong.plugins.batchq-log.schema"] = nil
  local schema = require "kong.plugins.batchq-log.schema"
  package.loaded["kong.tools.queue_schema"] = nil
  for _, f in ipairs(schema.fields) do
    if f.config then
      local fields = {}
      for _, e in ipairs(f.config.fields) do
        local name, def = next(e)
        fields[#fields + 1] = { name = name, def = def }
      end
      return fields
    end
  end
  error("schema.lua has no config record")
end

-- Kong 3.x's queue record, from each Kong tree that has one: KONG_SRC
-- (";"-separated), else <repo>/../shared/kong-src/* or, from a worktree,
-- <repo>/../../shared/kong-src/* (as tests/kong/kong_loader.lua).
local function kong_queue_schemas()
  local here = arg[0]:match("^(.*)/[^/]*$") or "."
  local repo = here .. "/../.."
  local trees = {}
  local env = os.getenv("KONG_SRC")
  if env and env ~= "" then
    for t in env:gmatch("[^;]+") do trees[#trees + 1] = t end
  else
    for _, base in ipairs({ repo .. "/../shared/kong-src", repo .. "/../../shared/kong-src" }) do
      local ls = io.popen("ls -d '" .. base .. "'/*/ 2>/dev/null")
      for t in ls:lines() do trees[#trees + 1] = t end
      ls:close()
      if #trees > 0 then break end
    end
  end
  local out = {}
  for _, tree in ipairs(trees) do
    local path = tree:gsub("/$", "") .. "/kong/tools/queue_schema.lua"
    local f = io.open(path, "rb")
    if f then
      local src = f:read("*a")
      f:close()
      package.loaded["kong.db.schema"] = { define = function(t) return t end }
      out[path] = assert(loadstring(src, "@" .. path))()
      package.loaded["kong.db.schema"] = nil
    end
  end
  return out
end

local conf = require "kong.plugins.batchq-log.conf"

-- Values a field definition accepts at its edges: its default, its bounds,
-- its one_of entries, and for an unbounded number a very large one.
local function edge_values(def)
  local out = {}
  if def.default ~= nil then out[#out + 1] = def.default end
  if def.one_of then
    for _, v in ipairs(def.one_of) do out[#out + 1] = v end
  end
  if def.type == "number" or def.type == "integer" then
    local lo, hi
    if def.between then
      lo, hi = def.between[1], def.between[2]
    end
    if def.gt then
      lo = def.type == "integer" and math.floor(def.gt) + 1 or def.gt + 1e-9
    end
    if def.custom_validator then  -- schema.lua's seconds(): [lo, hi] by validator
      for _, cand in ipairs({ 3600, 86400, 1e6 }) do
        if def.custom_validator(cand) then hi = cand end
      end
      if lo and not def.custom_validator(lo) then lo = lo + 1e-6 end
    end
    out[#out + 1] = lo or -2 ^ 31
    out[#out + 1] = hi or 2 ^ 53
    if def.type == "number" then out[#out + 1] = (lo or 0) + 0.0005 end
  end
  if def.type == "boolean" then
    out[#out + 1] = true
    out[#out + 1] = false
  end
  return out
end

-- A configuration with every schema default (as Kong fills them).
local function defaults_of(fields)
  local c = { http_endpoint = "http://127.0.0.1:9/" }
  for _, f in ipairs(fields) do
    if f.def.default ~= nil then c[f.name] = f.def.default end
  end
  return c
end

-- Every key map(c) gives is one the table accepts with that value.
local function check_mapping(c, what)
  local q = conf.map(c)
  for key, v in pairs(q) do
    local why = refused(key, v)
    if why then
      error(what .. ": conf.map gives " .. key .. " = " .. tostring(v) .. ", which libbatchq refuses: " .. why, 0)
    end
  end
  return q
end

test("every key conf.lua may pass (LIB_KEYS) is a libbatchq key", function()
  assert(next(KEYS), "the table printed")
  for _, key in ipairs(conf.LIB_KEYS) do
    assert(KEYS[key], "conf.lua passes " .. key .. ", which lib/config.cpp's table does not have")
  end
end)

test("Kong 2.x schema: each field's edge values map to values libbatchq takes", function()
  local fields = load_schema(nil)
  local base = defaults_of(fields)
  local n = 0
  check_mapping(base, "defaults")
  for _, f in ipairs(fields) do
    for _, v in ipairs(edge_values(f.def)) do
      local c = {}
      for k, x in pairs(base) do c[k] = x end
      c[f.name] = v
      local q = check_mapping(c, f.name .. " = " .. tostring(v))
      for key in pairs(q) do
        local listed = false
        for _, l in ipairs(conf.LIB_KEYS) do listed = listed or l == key end
        assert(listed, "conf.map gives " .. key .. ", which LIB_KEYS does not list")
      end
      n = n + 1
    end
  end
  assert(n > 40, "edge values tried: " .. n)
end)

test("Kong 3.x schema with Kong's queue record: edge values map to values libbatchq takes", function()
  local trees = kong_queue_schemas()
  local n = 0
  for tag, queue_schema in pairs(trees) do
    local fields = load_schema(queue_schema)
    local base = defaults_of(fields)
    local qdefaults = {}
    for _, e in ipairs(queue_schema.fields) do
      local name, def = next(e)
      qdefaults[name] = def.default
    end
    base.queue = qdefaults
    check_mapping(base, tag .. " defaults")
    for _, e in ipairs(queue_schema.fields) do
      local name, def = next(e)
      for _, v in ipairs(edge_values(def)) do
        local c = {}
        for k, x in pairs(base) do c[k] = x end
        c.queue = {}
        for k, x in pairs(qdefaults) do c.queue[k] = x end
        c.queue[name] = v
        check_mapping(c, tag .. " queue." .. name .. " = " .. tostring(v))
        n = n + 1
      end
    end
    for _, f in ipairs(fields) do
      for _, v in ipairs(edge_values(f.def)) do
        local c = {}
        for k, x in pairs(base) do c[k] = x end
        c[f.name] = v
        check_mapping(c, tag .. " " .. f.name .. " = " .. tostring(v))
        n = n + 1
      end
    end
  end
  if not next(trees) then
    print("# no Kong 3.x tree found: only the 2.x schema was checked")
  else
    assert(n > 40, "edge values tried: " .. n)
  end
end)

test("the check notices a key libbatchq would refuse", function()
  assert(refused("max_entries", -1), "max_entries -1")
  assert(refused("concurrency", 65), "concurrency 65")
  assert(refused("overflow", "drop_newest"), "overflow drop_newest")
  assert(refused("no_such_key", 1), "unknown key")
  assert(not refused("queue_size", 2 ^ 40), "queue_size is clamped, not refused")
end)

h.finish()
