-- batchq/loader.lua - finds and loads libbatchq.so for the batchq module:
--   local lib, path = require("batchq.loader").load()
-- BATCHQ_LIB if set (and nothing else), else every package.cpath entry,
-- else next to batchq.lua and in the lib/ directories an install puts
-- beside it, else the dynamic linker's own search; raises an error listing
-- every path tried and how to fix it. See capi/lua/README.md.
local ffi = require "ffi"

local concat = table.concat
local getenv = os.getenv
local io_open = io.open
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local error = error

local M = {}

-- Candidate file names for one package.cpath template such as
-- "/usr/local/lib/lua/5.1/?.so": both the Lua-module name (batchq.so) and the
-- CMake target's name (libbatchq.so) are accepted, the latter also with its
-- SOVERSION suffix so that an installed runtime-only package works.
local function candidates(template)
  local out = {}
  if not template:find("?", 1, true) then
    return out
  end
  for _, name in ipairs({ "batchq", "libbatchq" }) do
    local p = template:gsub("%?", name)
    out[#out + 1] = p
    if name == "libbatchq" and p:sub(-3) == ".so" then
      out[#out + 1] = p .. ".0"
    end
  end
  return out
end

local function file_exists(path)
  local f = io_open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

-- The directory batchq.lua sits in (found from this file's own path,
-- debug.getinfo's "@/path/batchq/loader.lua"), and the lib/ directories an
-- install puts next to it, in that order.
local function module_dirs()
  local info = debug and debug.getinfo and debug.getinfo(1, "S")
  local src = info and info.source or ""
  -- This file is <dir>/batchq/loader.lua; batchq.lua is <dir>/batchq.lua.
  local dir = src:match("^@(.*)/batchq/[^/]*$")
  if not dir then
    if src:match("^@batchq/[^/]*$") then
      dir = "."
    else
      return {}
    end
  end
  return { dir, dir .. "/../lib", dir .. "/../../lib", dir .. "/../../../lib" }
end

function M.load()
  local tried = {}

  local function try(path, must_exist)
    if must_exist and not file_exists(path) then
      tried[#tried + 1] = path .. " (no such file)"
      return nil
    end
    local ok, lib = pcall(ffi.load, path)
    if ok then
      return lib, path
    end
    tried[#tried + 1] = path .. " (" .. tostring(lib) .. ")"
    return nil
  end

  -- An explicit path wins and is the only one tried: a test or a deployment
  -- that names a file must not silently get another copy from the cpath.
  local override = getenv("BATCHQ_LIB")
  if override and override ~= "" then
    local lib, path = try(override, false)
    if lib then
      return lib, path
    end
    error("batchq: could not load the library named by BATCHQ_LIB: "
          .. concat(tried, "; "), 2)
  end

  -- Tries each existing file of `paths` not tried yet.
  local seen = {}
  local function try_each(paths)
    for _, path in ipairs(paths) do
      if not seen[path] then
        seen[path] = true
        local lib, found = try(path, true)
        if lib then
          return lib, found
        end
      end
    end
  end

  for template in package.cpath:gmatch("[^;]+") do
    local lib, found = try_each(candidates(template))
    if lib then
      return lib, found
    end
  end

  -- Then next to this module, and in the lib/ directories an install
  -- prefix puts beside it (<prefix>/share/lua/5.1/batchq.lua ->
  -- <prefix>/lib/libbatchq.so): Kong's default lua_package_cpath knows
  -- neither.
  for _, dir in ipairs(module_dirs()) do
    local lib, found = try_each({ dir .. "/libbatchq.so", dir .. "/libbatchq.so.0", dir .. "/batchq.so" })
    if lib then
      return lib, found
    end
  end

  -- Last: the dynamic linker's own search (LD_LIBRARY_PATH, ld.so.cache).
  local lib, found = try("batchq", false)
  if lib then
    return lib, found
  end

  error("batchq: could not find libbatchq.so. To fix it, either set "
        .. "BATCHQ_LIB=/path/to/libbatchq.so in the environment (under nginx "
        .. "also add `env BATCHQ_LIB;` to nginx.conf), or add the library's "
        .. "directory to the Lua C path: in kong.conf "
        .. "`lua_package_cpath = /path/to/?.so;;` (environment: "
        .. "KONG_LUA_PACKAGE_CPATH), in plain OpenResty "
        .. "`lua_package_cpath \"/path/to/?.so;;\";`. Paths tried:\n  "
        .. concat(tried, "\n  "), 2)
end

return M
