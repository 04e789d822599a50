-- bench/nginx/purelua_logger.lua - the peer of case 4: a pure-Lua Kong 2.x
-- style http logger (http-log + kong.tools.batch_queue), written for the
-- benchmark from Kong's documented behaviour:
--
--  * log(conf): entry = cjson.encode(kong.log.serialize()), then queue:add;
--  * queue_size 1 (http-log's default): no batching - every entry gets its own
--    ngx.timer.at(0) that sends it (Kong 2.x batch_queue does exactly this);
--  * queue_size N > 1: entries go into the current batch (a Lua table); a full
--    batch is queued and sent by one processing timer chain, oldest first; a
--    partial batch is closed by a flush timer after flush_timeout;
--  * sending: cosocket HTTP/1.1 POST (keep-alive pool, as resty.http does),
--    body = the entry (1) or [e1,...,eN] (Kong's format);
--  * retries: a failed batch is re-sent after retry_count attempts at most,
--    with Kong's quadratic delay;
--  * worker exit: a timer that runs prematurely returns without sending
--    (Kong 2.x): what is still queued is lost. That is measured, not hidden.
local cjson = require "cjson.safe"

local ngx = ngx
local timer_at = ngx.timer.at
local tcp = ngx.socket.tcp
local concat = table.concat
local tonumber = tonumber

local _M = {}

local queues = {} -- one per conf table (per worker)

local function parse_url(url)
  local host, port, path = url:match("^http://([^:/]+):?(%d*)(.*)$")
  return host, tonumber(port) or 80, (path ~= "" and path or "/")
end

-- One POST on a pooled connection. true or nil, err.
local function post(conf, body)
  local sock = tcp()
  sock:settimeout(conf.timeout or 10000)
  local ok, err = sock:connect(conf._host, conf._port)
  if not ok then
    return nil, "failed to connect to " .. conf._host .. ":" .. conf._port .. ": " .. err
  end
  local req = "POST " .. conf._path .. " HTTP/1.1\r\nHost: " .. conf._host .. ":" .. conf._port ..
              "\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n"
  ok, err = sock:send({ req, body })
  if not ok then
    sock:close()
    return nil, "send: " .. err
  end
  local line, rerr = sock:receive("*l")
  if not line then
    sock:close()
    return nil, "receive: " .. rerr
  end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  local clen = 0
  while true do
    local h = sock:receive("*l")
    if not h then
      sock:close()
      return nil, "receive headers"
    end
    if h == "" then break end
    local v = h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if v then clen = tonumber(v) end
  end
  if clen > 0 then sock:receive(clen) end
  sock:setkeepalive(conf.keepalive or 60000)
  if status ~= 200 then
    return nil, "status " .. tostring(status)
  end
  return true
end

local function payload(entries)
  if #entries == 1 then
    return entries[1]
  end
  return "[" .. concat(entries, ",") .. "]"
end

local process

local function schedule_process(q, batch, delay)
  local ok, err = timer_at(delay, process, q, batch)
  if not ok then
    ngx.log(ngx.ERR, "failed to create process timer: ", err)
  end
end

process = function(premature, q, batch)
  if premature then
    return -- Kong 2.x: nothing is sent when the worker exits
  end
  local ok, err = post(q.conf, payload(batch.entries))
  if not ok then
    batch.retries = batch.retries + 1
    if batch.retries < (q.conf.retry_count or 10) then
      schedule_process(q, batch, batch.retries * batch.retries)
    else
      ngx.log(ngx.ERR, "entry batch was already tried ", batch.retries, " times, dropping it: ", err)
    end
    if q.batch_max_size > 1 then q.processing = false end
    return
  end
  if q.batch_max_size > 1 then
    -- next batch in the chain, oldest first
    table.remove(q.batch_queue, 1)
    local nxt = q.batch_queue[1]
    if nxt then
      schedule_process(q, nxt, 0)
    else
      q.processing = false
    end
  end
end

local function flush(q)
  local cb = q.current_batch
  if #cb.entries == 0 then return end
  local bq = q.batch_queue
  bq[#bq + 1] = cb
  q.current_batch = { entries = {}, retries = 0 }
  if not q.processing then
    q.processing = true
    schedule_process(q, bq[1], 0)
  end
end

local function flush_timer(premature, q)
  q.flush_scheduled = false
  if premature then return end
  flush(q)
end

local function add(q, entry)
  if q.batch_max_size == 1 then
    schedule_process(q, { entries = { entry }, retries = 0 }, 0)
    return true
  end
  local cb = q.current_batch
  local n = #cb.entries + 1
  cb.entries[n] = entry
  if n >= q.batch_max_size then
    flush(q)
  elseif not q.flush_scheduled then
    q.flush_scheduled = true
    timer_at(q.conf.flush_timeout or 2, flush_timer, q)
  end
  return true
end

local function get_queue(conf)
  local q = queues[conf]
  if q then return q end
  conf._host, conf._port, conf._path = parse_url(conf.http_endpoint)
  q = {
    conf = conf,
    batch_max_size = conf.queue_size or 1,
    current_batch = { entries = {}, retries = 0 },
    batch_queue = {},
    processing = false,
    flush_scheduled = false,
  }
  queues[conf] = q
  return q
end

function _M.log(conf)
  local data, err = cjson.encode(kong.log.serialize())
  if not data then
    ngx.log(ngx.ERR, "cannot encode: ", err)
    return
  end
  add(get_queue(conf), data)
end

return _M
