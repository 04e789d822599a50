-- tests/lua/test_load.lua - how capi/lua/batchq.lua finds libbatchq.so.
--
-- Runs child luajit processes with different environments:
--   * found through package.cpath (LUA_CPATH), as OpenResty's
--     lua_package_cpath would give it, with BATCHQ_LIB unset;
--   * BATCHQ_LIB naming a missing file: require fails and says so;
--   * nothing on the cpath: require fails listing every path it tried.
-- Needs BATCHQ_LIB (the built library; its directory is used) and LUA_PATH
-- (to find batchq.lua) in the environment, as ctest sets them.
local fmt = string.format

local lib = assert(os.getenv("BATCHQ_LIB"), "BATCHQ_LIB must name the built library")
local lib_dir = lib:match("^(.*)/[^/]+$") or "."
local lua_path = os.getenv("LUA_PATH") or ""
local luajit = arg and arg[-1] or "luajit"

-- helpers.lua (the test runner) sits next to this file.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local h = require "helpers"
local test = h.test

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs `code` in a fresh luajit with the given environment overrides;
-- returns (ok, output).
local function run(env, code)
  local parts = { "env -u BATCHQ_LIB" }
  for k, v in pairs(env) do
    parts[#parts + 1] = k .. "=" .. shell_quote(v)
  end
  parts[#parts + 1] = shell_quote(luajit)
  parts[#parts + 1] = "-e " .. shell_quote(code)
  parts[#parts + 1] = "2>&1; echo \"exit=$?\""
  local p = assert(io.popen(table.concat(parts, " ")))
  local out = p:read("*a")
  p:close()
  local status = tonumber(out:match("exit=(%d+)%s*$"))
  return status == 0, out
end


local PRINT_PATH = [[
local b = require "batchq"
io.write("path=", b.library_path, " version=", b.version(), "\n")
]]

test("found through package.cpath (batchq.so or libbatchq.so)", function()
  local ok, out = run({ LUA_PATH = lua_path,
                        LUA_CPATH = lib_dir .. "/?.so;;" }, PRINT_PATH)
  assert(ok, out)
  local path = out:match("path=(%S+)")
  assert(path and path:sub(1, #lib_dir) == lib_dir,
         "loaded from the cpath directory: " .. out)
end)

test("BATCHQ_LIB overrides the cpath and must exist", function()
  local ok, out = run({ LUA_PATH = lua_path, LUA_CPATH = lib_dir .. "/?.so;;",
                        BATCHQ_LIB = "/nonexistent/libbatchq.so" }, PRINT_PATH)
  assert(not ok, "require must fail: " .. out)
  assert(out:find("BATCHQ_LIB", 1, true), out)
  assert(out:find("/nonexistent/libbatchq.so", 1, true), out)
end)

test("not found: the error lists every path tried", function()
  local ok, out = run({ LUA_PATH = lua_path,
                        LUA_CPATH = "/nonexistent-a/?.so;/nonexistent-b/?.so;;" },
                      PRINT_PATH)
  assert(not ok, "require must fail: " .. out)
  for _, p in ipairs({ "/nonexistent-a/batchq.so",
                       "/nonexistent-a/libbatchq.so",
                       "/nonexistent-b/libbatchq.so" }) do
    assert(out:find(p, 1, true), "mentions " .. p .. ": " .. out)
  end
end)

test("loading the module twice does not redefine the C types", function()
  local ok, out = run({ LUA_PATH = lua_path, BATCHQ_LIB = lib }, [[
local a = require "batchq"
package.loaded.batchq = nil
local b = require "batchq"
assert(a ~= b)
local q = assert(b.new({ http_endpoint = "http://127.0.0.1:1/" }))
assert(q:close(0))
print("twice ok")
]])
  assert(ok and out:find("twice ok", 1, true), out)
end)

-- Copies of the module and the library in a temporary tree, loaded with
-- BATCHQ_LIB unset and nothing useful on the cpath: only the module's own
-- location can lead to the library.
local module_src = lua_path:match("([^;]*)/%?%.lua")
-- Without the sanitizer runtime the ASan build preloads: `cp -R` of a
-- directory fails under it.
local function sh(cmd)
  local ok = os.execute("env -u LD_PRELOAD sh -c " .. shell_quote(cmd))
  assert(ok == 0 or ok == true, "failed: " .. cmd)
end
local p = assert(io.popen("mktemp -d \"${TMPDIR:-/tmp}/batchq-load-XXXXXX\""))
local tmp = p:read("*l")
p:close()
assert(tmp and tmp ~= "", "mktemp")
local NO_CPATH = "/nonexistent-cpath/?.so;;"  -- ";;": the default cpath (lua-cjson)

-- The module as an install lays it out: batchq.lua and batchq/*.lua in dir.
local function module_copy(dir)
  return fmt("cp -R %s %s %s/", shell_quote(module_src .. "/batchq.lua"), shell_quote(module_src .. "/batchq"),
             shell_quote(dir))
end

test("found next to the module (no BATCHQ_LIB, not on the cpath)", function()
  local dir = tmp .. "/flat"
  sh(fmt("mkdir -p %s && %s && cp %s %s/libbatchq.so", shell_quote(dir), module_copy(dir), shell_quote(lib),
         shell_quote(dir)))
  local ok, out = run({ LUA_PATH = dir .. "/?.lua", LUA_CPATH = NO_CPATH }, PRINT_PATH)
  assert(ok, out)
  assert(out:find("path=" .. dir .. "/libbatchq.so", 1, true), "loaded next to the module: " .. out)
end)

test("found in <prefix>/lib from <prefix>/share/lua/5.1/batchq.lua", function()
  local prefix = tmp .. "/prefix"
  sh(fmt("mkdir -p %s/share/lua/5.1 %s/lib && %s && cp %s %s/lib/libbatchq.so.0", shell_quote(prefix),
         shell_quote(prefix), module_copy(prefix .. "/share/lua/5.1"), shell_quote(lib), shell_quote(prefix)))
  local ok, out = run({ LUA_PATH = prefix .. "/share/lua/5.1/?.lua", LUA_CPATH = NO_CPATH }, PRINT_PATH)
  assert(ok, out)
  assert(out:find("/lib/libbatchq.so.0", 1, true) and out:find(prefix, 1, true), "loaded from <prefix>/lib: " .. out)
end)

test("missing: the error names the paths tried and the kong.conf line that fixes it", function()
  local dir = tmp .. "/alone"
  sh(fmt("mkdir -p %s && %s", shell_quote(dir), module_copy(dir)))
  local ok, out = run({ LUA_PATH = dir .. "/?.lua", LUA_CPATH = NO_CPATH }, PRINT_PATH)
  assert(not ok, "require must fail: " .. out)
  for _, want in ipairs({ dir .. "/libbatchq.so", dir .. "/../lib/libbatchq.so",
                          "/nonexistent-cpath/libbatchq.so",
                          "BATCHQ_LIB=/path/to/libbatchq.so",
                          "lua_package_cpath = /path/to/?.so;;", "kong.conf" }) do
    assert(out:find(want, 1, true), "mentions " .. want .. ": " .. out)
  end
end)

os.execute("rm -rf " .. shell_quote(tmp))

h.finish()
