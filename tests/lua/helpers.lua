-- tests/lua/helpers.lua - what the LuaJIT tests share: a tiny test runner,
-- assertions, a temp dir, sleeping, and batchq_receiver processes.
--
--   local h = require "helpers"
--   h.test("name", function() h.eq(1, 1, "one") end)
--   h.test("needs a receiver", function() local rx = h.start_receiver() end, true)
--   h.finish()   -- stops receivers, prints "N passed, N failed", exits
local ffi = require "ffi"

local fmt = string.format

ffi.cdef [[
int poll(void *fds, unsigned long nfds, int timeout);
char *mkdtemp(char *template);
struct bq_test_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
int socket(int domain, int type, int protocol);
int bind(int fd, const void *addr, uint32_t len);
int getsockname(int fd, void *addr, uint32_t *len);
int close(int fd);
uint16_t ntohs(uint16_t);
uint32_t htonl(uint32_t);
]]

local C = ffi.C
local _M = {}

function _M.sleep_ms(ms)
  C.poll(nil, 0, ms)
end

-- Waits until pred() is true or about `ms` elapsed (counted in sleeps:
-- os.clock is CPU time, not wall time).
function _M.wait_for(pred, ms)
  local step = 20
  for _ = 0, math.ceil(ms / step) do
    if pred() then
      return true
    end
    _M.sleep_ms(step)
  end
  return pred()
end

function _M.read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end

function _M.read_lines(path)
  local out = {}
  local s = _M.read_file(path)
  if not s then
    return out
  end
  for line in s:gmatch("[^\n]+") do
    out[#out + 1] = line
  end
  return out
end

function _M.sh(cmd)
  local ok = os.execute(cmd)
  return ok == 0 or ok == true
end

local function mkdtemp()
  local base = os.getenv("TMPDIR") or "/tmp"
  local buf = ffi.new("char[?]", #base + 32)
  ffi.copy(buf, base .. "/batchq-lua-XXXXXX")
  local p = C.mkdtemp(buf)
  assert(p ~= nil, "mkdtemp failed")
  return ffi.string(p)
end

_M.TMP = mkdtemp()
_M.RECEIVER = os.getenv("BATCHQ_RECEIVER")
if _M.RECEIVER == "" then
  _M.RECEIVER = nil
end

local receivers = {}
local seq = 0

-- Starts batchq_receiver with extra flags; returns { port=, url=, out=,
-- stop=, entries= }.
function _M.start_receiver(flags)
  seq = seq + 1
  local dir = fmt("%s/rx%d", _M.TMP, seq)
  assert(_M.sh("mkdir -p " .. dir))
  local r = {
    out = dir .. "/entries",
    stdout = dir .. "/stdout",
    stderr = dir .. "/stderr",
    pidfile = dir .. "/pid",
  }
  -- `timeout` is a safety net: if this script dies, the receiver does not
  -- outlive it by more than two minutes.
  assert(_M.sh(fmt("timeout 120 %s --port 0 --out %s %s >%s 2>%s </dev/null & echo $! >%s",
                   _M.RECEIVER, r.out, flags or "", r.stdout, r.stderr, r.pidfile)))
  r.pid = tonumber((_M.read_file(r.pidfile) or ""):match("%d+"))
  assert(r.pid, "receiver did not start")
  receivers[#receivers + 1] = r
  local ok = _M.wait_for(function()
    local s = _M.read_file(r.stdout) or ""
    r.port = tonumber(s:match("listening on 127%.0%.0%.1:(%d+)"))
    return r.port ~= nil
  end, 10000)
  assert(ok, "receiver did not print its port: " .. (_M.read_file(r.stderr) or ""))
  r.url = fmt("http://127.0.0.1:%d/logs", r.port)
  function r.stop()
    if r.pid then
      _M.sh("kill " .. r.pid .. " 2>/dev/null")
      _M.wait_for(function()
        return not _M.sh("kill -0 " .. r.pid .. " 2>/dev/null")
      end, 5000)
      r.pid = nil
    end
  end
  function r.entries()
    return _M.read_lines(r.out)
  end
  return r
end

-- A port nothing listens on: bind an ephemeral port, then close it.
function _M.dead_port()
  local fd = C.socket(2, 1, 0) -- AF_INET, SOCK_STREAM
  assert(fd >= 0)
  local sa = ffi.new("struct bq_test_sockaddr_in")
  sa.family = 2
  sa.port = 0
  sa.addr = C.htonl(0x7f000001)
  assert(C.bind(fd, sa, ffi.sizeof(sa)) == 0)
  local len = ffi.new("uint32_t[1]", ffi.sizeof(sa))
  assert(C.getsockname(fd, sa, len) == 0)
  local port = C.ntohs(sa.port)
  C.close(fd)
  return port
end

-- test runner -------------------------------------------------------------------------

local passed, failed, skipped = 0, 0, 0

function _M.test(name, fn, needs_receiver)
  if needs_receiver and not _M.RECEIVER then
    skipped = skipped + 1
    print("skip - " .. name .. " (BATCHQ_RECEIVER not set)")
    return
  end
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
    print("ok - " .. name)
  else
    failed = failed + 1
    print("not ok - " .. name .. "\n  " .. tostring(err):gsub("\n", "\n  "))
  end
end

function _M.check(cond, msg)
  if not cond then
    error(msg or "check failed", 2)
  end
  return cond
end

function _M.eq(got, want, what)
  if got ~= want then
    error(fmt("%s: expected %s, got %s", what or "value", tostring(want),
              tostring(got)), 2)
  end
end

function _M.has(s, needle, what)
  if type(s) ~= "string" or not s:find(needle, 1, true) then
    error(fmt("%s: %q does not contain %q", what or "text", tostring(s),
              needle), 2)
  end
end

function _M.finish()
  for _, r in ipairs(receivers) do
    r.stop()
  end
  if failed == 0 then
    _M.sh("rm -rf " .. _M.TMP)
  else
    print("kept " .. _M.TMP .. " for inspection")
  end
  print(fmt("%d passed, %d failed%s", passed, failed,
            skipped > 0 and fmt(" (%d skipped)", skipped) or ""))
  os.exit(failed == 0 and 0 or 1)
end

return _M
