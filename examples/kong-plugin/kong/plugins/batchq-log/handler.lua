-- batchq-log: Kong's http-log, with batchq as the queue.
--
-- Same configuration names, defaults and wire format as http-log (see
-- schema.lua), but nothing is dropped silently: every entry that cannot be
-- delivered - retries used up, queue bound reached, worker shutdown deadline,
-- a bad configuration - is reported in the error log with the reason, and
-- either kept in the spool (spool_dir) or printed there in full.
--
-- This file holds Kong's phases only. The rooms beside it:
--   conf.lua           what a plugin configuration means for libbatchq
--   queues.lua         the worker's queues: create, switch, retire, worker exit
--   report.lua         how drops, refusals and the queue's own lines are logged
--   custom_fields.lua  custom_fields_by_lua in Kong's sandbox, as http-log runs it
local plugin_conf = require "kong.plugins.batchq-log.conf"
local queues = require "kong.plugins.batchq-log.queues"
local custom_fields = require "kong.plugins.batchq-log.custom_fields"

local type = type
local next = next
local ipairs = ipairs

local BatchqLogHandler = {
  PRIORITY = 12, -- http-log's
  VERSION = "0.1.0",
}

function BatchqLogHandler:init_worker()
  queues.start()
end

function BatchqLogHandler:log(conf)
  local pdk_log = (kong or rawget(_G, "kong")).log
  local fields = conf.custom_fields_by_lua
  local values
  if type(fields) == "table" and next(fields) then
    values = custom_fields.run(fields)
    local set = pdk_log.set_serialize_value
    if set then
      -- as http-log: Kong's serializer adds them
      for _, kv in ipairs(values) do
        set(kv[1], kv[2])
      end
      values = nil
    end
  end
  local entry = pdk_log.serialize()
  if values then
    for _, kv in ipairs(values) do
      custom_fields.set_path(entry, kv[1], kv[2])
    end
  end
  queues.enqueue_entry(conf, entry)
end

-- For exit_worker_by_lua_block: runs after the worker's last request. Only
-- with use_exit_worker_hook() called in init_worker (see queues.lua and the
-- README's Kong section).
BatchqLogHandler.exit_worker = queues.exit_worker
BatchqLogHandler.use_exit_worker_hook = queues.use_exit_worker_hook

-- For tests and status pages: the stats of this worker's queues.
BatchqLogHandler.stats = queues.stats

-- What batchq.new() gets for a configuration (exposed for tests).
BatchqLogHandler._queue_conf = plugin_conf.queue_conf

return BatchqLogHandler
