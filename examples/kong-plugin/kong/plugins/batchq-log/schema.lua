-- batchq-log schema: http-log's fields with the same names, types and
-- defaults *as on the Kong version that loads it*, then batchq's own.
--
-- One file for every Kong version (2.8 to 3.x):
--   * 2.x: http-log's `headers` is typedefs.headers (name -> array of strings)
--     and retry_count / queue_size / flush_timeout have defaults 10 / 1 / 2.
--   * 3.x (a Kong with kong.tools.queue_schema): http-log's `queue` record is
--     Kong's own queue schema, the three fields above are deprecated and have
--     no default (null), `headers` is name -> string.
--   * Kong before 3.4 allows only integer `between` bounds (metaschema), so
--     fractional bounds are written as `gt` plus a custom validator.
-- Shared fields carry http-log's constraints (none for the numbers), so every
-- configuration http-log accepts is accepted unchanged; conf.lua maps values
-- libbatchq cannot take (e.g. timeout = 0 or 2^40) to what http-log does.
--
-- batchq's fields that duplicate the 3.x `queue` record (max_entries,
-- max_bytes, flush_mode, backoff, initial/max_retry_delay, max_retry_time,
-- concurrency) have no default on 3.x: unset, the `queue` record decides;
-- set, they override it (see conf.lua).
local typedefs = require "kong.db.schema.typedefs"
local has_meta, meta = pcall(require, "kong.meta")

local lower = string.lower
local pairs = pairs
local type = type

local KONG_MAJOR = has_meta and type(meta) == "table" and meta._VERSION_TABLE
                   and meta._VERSION_TABLE.major or 3
local has_queue_schema, queue_schema = pcall(require, "kong.tools.queue_schema")
local KONG_QUEUE = has_queue_schema and type(queue_schema) == "table"

-- Headers the sender sets itself (as in http-log).
local RESERVED_HEADERS = {
  ["host"] = true,
  ["content-length"] = true,
  ["content-type"] = true,
}

local function validate_headers(headers)
  for name in pairs(headers) do
    if RESERVED_HEADERS[lower(name)] then
      return nil, "cannot contain '" .. name .. "' header"
    end
  end
  return true
end

local function has_userinfo(url)
  local authority = type(url) == "string" and url:match("^%a[%w+.-]*://([^/?#]*)")
  return authority ~= nil and authority:find("@", 1, true) ~= nil
end

local function validate_spool_dir(dir)
  if dir:sub(1, 1) ~= "/" then
    return nil, "must be an absolute path"
  end
  return true
end

-- A number of seconds in (lo, hi] or [lo, hi] without a fractional `between`.
local function seconds(default, lo, hi, extra)
  local f = { type = "number", default = default, gt = lo - 1e-9 }
  f.custom_validator = function(v)
    if v < lo or v > hi then
      return nil, "value should be between " .. lo .. " and " .. hi
    end
    return true
  end
  for k, v in pairs(extra or {}) do
    f[k] = v
  end
  return f
end

-- The default of a batchq field that duplicates a 3.x `queue` field.
local function queue_default(v)
  if KONG_QUEUE then
    return nil
  end
  return v
end

-- http-log's own default of retry_count / queue_size / flush_timeout: none on
-- 3.x (deprecated fields), as in 2.x otherwise.
local function legacy_default(v)
  if KONG_QUEUE then
    return nil
  end
  return v
end

local headers_field
if KONG_MAJOR < 3 then
  headers_field = typedefs.headers { keys = typedefs.header_name,
                                     custom_validator = validate_headers }
else
  headers_field = { type = "map",
                    keys = typedefs.header_name,
                    values = { type = "string", referenceable = true },
                    custom_validator = validate_headers }
end

local fields = {
  -- http-log ---------------------------------------------------------
  { http_endpoint = typedefs.url({ required = true, encrypted = true,
                                   referenceable = true }) },
  { method = { type = "string", default = "POST",
               one_of = { "POST", "PUT", "PATCH" } } },
  { content_type = { type = "string", default = "application/json",
                     one_of = { "application/json",
                                "application/json; charset=utf-8",
                                "application/x-ndjson" } } },
  { timeout = { type = "number", default = 10000 } },     -- ms, per socket operation
  { keepalive = { type = "number", default = 60000 } },   -- ms
  { retry_count = { type = "integer", default = legacy_default(10) } },
  { queue_size = { type = "integer", default = legacy_default(1) } },
  { flush_timeout = { type = "number", default = legacy_default(2) } }, -- s
  { headers = headers_field },
}
if KONG_QUEUE then
  fields[#fields + 1] = { queue = typedefs.queue or queue_schema }
end
local batchq_fields = {
  { custom_fields_by_lua = typedefs.lua_code },

  -- batchq: queue -------------------------------------------------------
  { max_entries = { type = "integer", default = queue_default(10000), between = { 0, 100000000 } } },
  { max_bytes = { type = "integer", default = queue_default(0), gt = -1 } },   -- 0 = no bound
  { batch_max_bytes = { type = "integer", default = 0, gt = -1 } },     -- 0 = no bound
  { overflow = { type = "string", default = "drop_oldest",
                 one_of = { "drop_oldest", "refuse_new" } } },
  { process_delay = { type = "number", default = 0, between = { 0, 86400 } } }, -- s
  { flush_mode = { type = "string", default = queue_default("kong_idle"),
                   one_of = { "kong_idle", "coalescing" } } },
  { backoff = { type = "string", default = queue_default("kong_quadratic"),
                one_of = { "kong_quadratic", "exponential" } } },
  { initial_retry_delay = seconds(queue_default(0.01), 0.001, 86400) },
  { max_retry_delay = seconds(queue_default(60), 0.001, 86400) },
  { max_retry_time = { type = "number", default = queue_default(0), between = { 0, 86400 } } }, -- s, 0 = none
  { jitter = { type = "boolean", default = false } },
  -- no default: unset, conf.lua decides (more than 1 at batch size 1)
  { concurrency = { type = "integer", between = { 1, 64 } } },
  { shutdown_timeout = { type = "number", default = 5, between = { 0, 3600 } } },            -- s

  -- batchq: HTTP ----------------------------------------------------------
  { format = { type = "string", default = "kong",
               one_of = { "kong", "json_array", "ndjson" } } },
  { connect_timeout = { type = "integer", default = 0, between = { 0, 86400000 } } },  -- ms, 0 = min(timeout, 5000)
  { gzip = { type = "boolean", default = false } },
  -- http-log never verifies the server's certificate; opt in here.
  { ssl_verify = { type = "boolean", default = false } },
  { ca_file = { type = "string" } },
  { client_cert = { type = "string" } },
  { client_key = { type = "string" } },
  { drop_permanent_4xx = { type = "boolean", default = false } },

  -- batchq: spool ---------------------------------------------------------
  { spool_dir = { type = "string", custom_validator = validate_spool_dir } },
  { spool_mode = { type = "string", default = "dead_letter",
                   one_of = { "dead_letter", "write_ahead" } } },
  { spool_max_bytes = { type = "integer", default = 1073741824, gt = -1 } },

  -- batchq: reporting (plugin) --------------------------------------------
  { drop_buffer_entries = { type = "integer", default = 10000, between = { 0, 100000000 } } },
  { drop_poll_interval = seconds(1, 0.01, 3600) },   -- s
}
for _, f in ipairs(batchq_fields) do
  fields[#fields + 1] = f
end

return {
  name = "batchq-log",
  fields = {
    { protocols = typedefs.protocols },
    { config = {
        type = "record",
        fields = fields,
        entity_checks = {
          -- Credentials come either from the URL or from a header, not both.
          { custom_entity_check = {
              field_sources = { "http_endpoint", "headers" },
              fn = function(entity)
                local headers = entity.headers
                if type(headers) ~= "table" or not has_userinfo(entity.http_endpoint) then
                  return true
                end
                for name in pairs(headers) do
                  if lower(name) == "authorization" then
                    return nil, "specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed"
                  end
                end
                return true
              end,
          } },
          -- libbatchq sets Content-Encoding itself when gzip is on.
          { custom_entity_check = {
              field_sources = { "gzip", "headers" },
              fn = function(entity)
                if entity.gzip ~= true or type(entity.headers) ~= "table" then
                  return true
                end
                for name in pairs(entity.headers) do
                  if lower(name) == "content-encoding" then
                    return nil, "cannot contain a 'Content-Encoding' header when gzip is on"
                  end
                end
                return true
              end,
          } },
          -- A client key without its certificate is a mistake; a certificate
          -- alone is fine (its file may hold the key too).
          { custom_entity_check = {
              field_sources = { "client_cert", "client_key" },
              fn = function(entity)
                if type(entity.client_key) == "string" and type(entity.client_cert) ~= "string" then
                  return nil, "client_key needs client_cert"
                end
                return true
              end,
          } },
        },
      },
    },
  },
}
