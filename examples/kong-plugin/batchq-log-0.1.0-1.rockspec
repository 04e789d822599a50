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
    format, as saved by Kong 2.8 or 3.x) and sends through libbatchq: bounded
    memory, a worker exit that never blocks, optional disk spool, and every
    entry that cannot be delivered is reported in the error log (or kept in
    the spool) with the reason. The rock builds libbatchq.so (the batchq
    project's C ABI, CMake, needs libcurl and RapidJSON headers) and installs
    it beside the Lua modules' C libraries, where Kong's default
    lua_package_cpath finds it.
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
  type = "command",
  -- Only the shared library: no tests, examples or install rules of the
  -- C++ project (nothing lands outside the rock but what `install` lists).
  build_command = [[
    cmake -S . -B build.luarocks -DCMAKE_BUILD_TYPE=Release \
      -DBATCHQ_BUILD_TESTS=OFF -DBATCHQ_BUILD_EXAMPLES=OFF \
      -DBATCHQ_INSTALL=OFF -DBATCHQ_WERROR=OFF &&
    cmake --build build.luarocks --target batchq_capi
  ]],
  install_command = "true",
  install = {
    lua = {
      ["kong.plugins.batchq-log.handler"] = "examples/kong-plugin/kong/plugins/batchq-log/handler.lua",
      ["kong.plugins.batchq-log.schema"] = "examples/kong-plugin/kong/plugins/batchq-log/schema.lua",
      ["kong.plugins.batchq-log.conf"] = "examples/kong-plugin/kong/plugins/batchq-log/conf.lua",
      ["kong.plugins.batchq-log.queues"] = "examples/kong-plugin/kong/plugins/batchq-log/queues.lua",
      ["kong.plugins.batchq-log.report"] = "examples/kong-plugin/kong/plugins/batchq-log/report.lua",
      ["kong.plugins.batchq-log.custom_fields"] = "examples/kong-plugin/kong/plugins/batchq-log/custom_fields.lua",
      -- the FFI binding
      ["batchq"] = "capi/lua/batchq.lua",
      ["batchq.cdef"] = "capi/lua/batchq/cdef.lua",
      ["batchq.loader"] = "capi/lua/batchq/loader.lua",
    },
    -- into the tree's C module directory (LIBDIR, e.g. /usr/local/lib/lua/5.1
    -- for Kong's own tree), which is on Kong's default lua_package_cpath:
    -- the binding finds it there by scanning package.cpath for libbatchq.so
    lib = {
      ["libbatchq"] = "build.luarocks/capi/libbatchq.so",
    },
  },
}
