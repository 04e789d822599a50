-- batchq-log: what a plugin configuration means for libbatchq.
--
-- queue_conf(conf) is the table handed to batchq.new(); conf_key(conf) names
-- the queue a configuration feeds (equal configurations share a queue).
local null = ngx.null
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local fmt = string.format
local sort = table.sort
local concat = table.concat

local _M = {}

-- Keys of the plugin configuration that are not libbatchq's: they are used
-- here and never sent to batchq.new() (which refuses unknown keys).
local PLUGIN_ONLY = {
  custom_fields_by_lua = true,
  drop_poll_interval = true,
  -- added to `conf` by Kong itself
  route_id = true,
  service_id = true,
  consumer_id = true,
  plugin_instance_name = true,
  protocols = true,
}

-- conf table -> key. Kong hands the same table to every request until the
-- configuration changes, so the key is computed once per configuration.
local key_by_conf = setmetatable({}, { __mode = "k" })

-- A deterministic text for a Lua value: keys sorted, types tagged, so equal
-- configurations give equal keys whatever the table's iteration order
-- (Kong issue #9272: the queue id ignored settings that changed).
local function canonical(v, out)
  local t = type(v)
  if t == "table" then
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then
        return ta < tb
      end
      return tostring(a) < tostring(b)
    end)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      canonical(k, out)
      out[#out + 1] = "="
      canonical(v[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  elseif t == "string" then
    out[#out + 1] = fmt("%q", v)
  else
    out[#out + 1] = t:sub(1, 1) .. tostring(v)
  end
  return out
end

-- What goes to batchq.new(): the configuration minus the plugin's own keys,
-- Kong's additions and unset (null) values, whose defaults are libbatchq's.
local function queue_conf(conf)
  local q = {}
  for k, v in pairs(conf) do
    if type(k) == "string" and not PLUGIN_ONLY[k] and k:sub(1, 1) ~= "_"
       and v ~= null and v ~= nil
    then
      q[k] = v
    end
  end
  return q
end

local function conf_key(conf)
  local key = key_by_conf[conf]
  if not key then
    key = concat(canonical(queue_conf(conf), {}))
    key_by_conf[conf] = key
  end
  return key
end

_M.queue_conf = queue_conf
_M.conf_key = conf_key

return _M
