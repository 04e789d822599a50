-- batchq-log schema: http-log's fields with the same names, types and
-- defaults, then batchq's own. The defaults of batchq's fields are
-- libbatchq's defaults (see the README's configuration reference), so a
-- field Kong leaves unset behaves the same as one set to its default.
--
-- Loaded by Kong only; the handler does not need it (tests drive the handler
-- with plain tables).
local typedefs = require "kong.db.schema.typedefs"

local lower = string.lower
local pairs = pairs
local type = type

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

return {
  name = "batchq-log",
  fields = {
    { protocols = typedefs.protocols },
    { config = {
        type = "record",
        fields = {
          -- http-log ---------------------------------------------------------
          { http_endpoint = typedefs.url({ required = true, encrypted = true,
                                           referenceable = true }) },
          { method = { type = "string", default = "POST",
                       one_of = { "POST", "PUT", "PATCH" } } },
          { content_type = { type = "string", default = "application/json",
                             one_of = { "application/json",
                                        "application/json; charset=utf-8",
                                        "application/x-ndjson" } } },
          { timeout = { type = "number", default = 10000, gt = 0 } },   -- ms
          { keepalive = { type = "number", default = 60000, between = { 0, 86400000 } } }, -- ms
          { retry_count = { type = "integer", default = 10, between = { 0, 1000000 } } },
          { queue_size = { type = "integer", default = 1, between = { 1, 100000000 } } },
          { flush_timeout = { type = "number", default = 2, between = { 0.001, 86400 } } }, -- s
          { headers = { type = "map",
                        keys = typedefs.header_name,
                        values = { type = "string", referenceable = true },
                        custom_validator = validate_headers } },
          { custom_fields_by_lua = typedefs.lua_code },

          -- batchq: queue -------------------------------------------------------
          { max_entries = { type = "integer", default = 10000, between = { 0, 100000000 } } },
          { max_bytes = { type = "integer", default = 0, gt = -1 } },           -- 0 = no bound
          { batch_max_bytes = { type = "integer", default = 0, gt = -1 } },     -- 0 = no bound
          { overflow = { type = "string", default = "drop_oldest",
                         one_of = { "drop_oldest", "refuse_new" } } },
          { process_delay = { type = "number", default = 0, between = { 0, 86400 } } }, -- s
          { flush_mode = { type = "string", default = "kong_idle",
                           one_of = { "kong_idle", "coalescing" } } },
          { backoff = { type = "string", default = "kong_quadratic",
                        one_of = { "kong_quadratic", "exponential" } } },
          { initial_retry_delay = { type = "number", default = 0.01, between = { 0.001, 86400 } } }, -- s
          { max_retry_delay = { type = "number", default = 60, between = { 0.001, 86400 } } },       -- s
          { max_retry_time = { type = "number", default = 0, between = { 0, 86400 } } },             -- s, 0 = none
          { jitter = { type = "boolean", default = false } },
          { concurrency = { type = "integer", default = 1, between = { 1, 64 } } },
          { shutdown_timeout = { type = "number", default = 5, between = { 0, 3600 } } },            -- s

          -- batchq: HTTP ----------------------------------------------------------
          { format = { type = "string", default = "kong",
                       one_of = { "kong", "json_array", "ndjson" } } },
          { connect_timeout = { type = "integer", default = 0, between = { 0, 86400000 } } },  -- ms, 0 = min(timeout, 5000)
          { gzip = { type = "boolean", default = false } },
          { ssl_verify = { type = "boolean", default = true } },
          { ca_file = { type = "string" } },
          { client_cert = { type = "string" } },
          { client_key = { type = "string" } },
          { drop_permanent_4xx = { type = "boolean", default = false } },

          -- batchq: spool ---------------------------------------------------------
          -- Each nginx worker uses <spool_dir>/worker-<id>.
          { spool_dir = { type = "string", custom_validator = validate_spool_dir } },
          { spool_mode = { type = "string", default = "dead_letter",
                           one_of = { "dead_letter", "write_ahead" } } },
          { spool_max_bytes = { type = "integer", default = 1073741824, gt = -1 } },

          -- batchq: reporting (plugin) --------------------------------------------
          { drop_buffer_entries = { type = "integer", default = 10000, between = { 0, 100000000 } } },
          { drop_poll_interval = { type = "number", default = 1, between = { 0.01, 3600 } } },   -- s
        },
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
