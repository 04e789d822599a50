package = "batchq-log"
version = "0.1.0-1"

source = {
  url = "git+https://example.invalid/batchq.git", -- replace with the project's repository
  tag = "v0.1.0",
}

description = {
  summary = "Kong http-log with the batchq queue: same settings, no silent drops",
  detailed = [[
    batchq-log takes http-log's configuration (same names, defaults and wire
    format) and sends through libbatchq: bounded memory, graceful shutdown on
    reload, optional disk spool, and every entry that cannot be delivered is
    reported in the error log (or kept in the spool) with the reason.
    Needs libbatchq.so (the batchq project's C ABI) where lua_package_cpath
    or BATCHQ_LIB points.
  ]],
  license = "MIT",
}

dependencies = {
  "lua >= 5.1",
  -- lua-cjson ships with Kong/OpenResty; the FFI needs LuaJIT.
}

-- Paths are relative to the root of the batchq source tree (the `source`
-- above); `luarocks make examples/kong-plugin/batchq-log-0.1.0-1.rockspec`
-- run from that root works too.
build = {
  type = "builtin",
  modules = {
    ["kong.plugins.batchq-log.handler"] = "examples/kong-plugin/kong/plugins/batchq-log/handler.lua",
    ["kong.plugins.batchq-log.schema"] = "examples/kong-plugin/kong/plugins/batchq-log/schema.lua",
    ["kong.plugins.batchq-log.conf"] = "examples/kong-plugin/kong/plugins/batchq-log/conf.lua",
    -- the FFI binding; libbatchq.so itself is installed by the batchq build
    ["batchq"] = "capi/lua/batchq.lua",
  },
}
