-- tests/nginx/shutdown_shim.lua - TEST ONLY. Until the Lua module has the
-- non-blocking shutdown (q:shutdown_begin(ms) / q:shutdown_poll(), branch
-- kong-lib), this gives queues those two methods on top of the blocking
-- shutdown(ms): same outcome (drained, or what is left at the deadline
-- dropped with reason "shutdown"), but shutdown_begin() waits for it. Tests
-- that are about not waiting (the nginx "exit" scenario) skip while
-- `active` is true. With the real methods present it does nothing. Never
-- loaded by the plugin itself.
local batchq = require "batchq"

local _M = { active = false }

if not batchq._test_shutdown_shim then
  batchq._test_shutdown_shim = true
  local new = batchq.new
  batchq.new = function(conf)
    local q, err, code = new(conf)
    if q then
      local methods = getmetatable(q).__index
      if not methods.shutdown_begin then
        _M.active = true
        methods.shutdown_begin = function(self, ms)
          self:shutdown(ms)
          return true
        end
        methods.shutdown_poll = function()
          return true
        end
      end
    end
    return q, err, code
  end
end

return _M
