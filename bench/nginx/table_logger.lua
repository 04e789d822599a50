-- bench/nginx/table_logger.lua - mode batchq_q100_table of run_nginx_bench.sh
-- (issue 14): the batchq Lua module fed with q:enqueue_table(entry), so the
-- worker never makes JSON (string.buffer encode + buf:ref(); batchq's thread
-- makes the JSON), without the Kong plugin in between. Falls back to
-- cjson.encode where string.buffer is missing or refuses the entry, as the
-- plugin should. One queue per worker, created on first use (after fork);
-- closed at worker exit, where what could not be sent is printed as
-- "dropped entry (<reason>)" like the plugin does.
local batchq = require "batchq"
local cjson = require "cjson.safe"

local _M = {}
local q
local EJSON = batchq.errors.EJSON

local function report(d)
  ngx.log(ngx.ERR, "dropped entry (", d.reason, "): ", d.data)
end

function _M.log(conf)
  if not q then
    local err
    q, err = batchq.new({ http_endpoint = conf.http_endpoint, queue_size = conf.queue_size })
    if not q then
      ngx.log(ngx.ERR, "batchq.new: ", err)
      return
    end
  end
  local entry = kong.log.serialize()
  local ok, err, code
  if batchq.has_string_buffer then
    ok, err, code = q:enqueue_table(entry)
  end
  if not ok and (code == nil or code == EJSON) then
    ok, err = q:enqueue(cjson.encode(entry))
  end
  if not ok then
    ngx.log(ngx.ERR, "dropped entry (", tostring(err), ")")
  end
end

function _M.exit_worker()
  if not q then
    return
  end
  q:close(5000)
  for _, d in ipairs(q:poll_dropped(100000)) do
    report(d)
  end
end

return _M
