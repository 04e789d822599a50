-- tests/fuzz/make_lua_json_seeds.lua <dir> - writes real LuaJIT string.buffer
-- encodings as the seed corpus of fuzz_lua_json (one value per file).
--   luajit tests/fuzz/make_lua_json_seeds.lua tests/fuzz/corpus/lua_json
local buffer = require "string.buffer"
local ffi = require "ffi"
local dir = assert(arg[1], "usage: make_lua_json_seeds.lua <dir>")
local ok, cjson = pcall(require, "cjson")
local null = ok and cjson.null or nil

local all = {}
for i = 0, 255 do all[#all + 1] = string.char(i) end

local seeds = {
  kong_entry = {
    request = { uri = "/status/200", url = "http://example.com:8000/status/200", method = "GET", size = 87,
                querystring = {}, headers = { host = "example.com", ["user-agent"] = "wrk", accept = "*/*" } },
    response = { status = 200, size = 1234, headers = { ["content-type"] = "application/json",
                                                         ["content-length"] = "1000" } },
    latencies = { request = 3, kong = 1, proxy = 2 },
    tries = { { balancer_latency = 0, port = 80, balancer_start = 1700000000000, ip = "127.0.0.1" } },
    client_ip = "127.0.0.1", started_at = 1700000000123,
    upstream_uri = "/status/200", service = { name = "svc", id = "8f6c3d8c-4bfb-4f5a-9d9a-1b2c3d4e5f60" },
  },
  array = { 1, 2, 3, "four", true, false },
  holes = { 1, nil, 3, nil, 5 },
  sparse_ok = { [10] = 1 },
  sparse_bad = { [11] = 1 },
  zero_index = { [0] = "zero", "one" },
  mixed = { 1, 2, x = "y", [2.5] = "half", [-1] = "neg" },
  numbers = { 0, -0.0, 1e308, 1e-308, 2 ^ 53, 123456789012345678, 0.1, 1 / 3, 5e-324 },
  bad_numbers = { 1 / 0, -1 / 0 },
  strings = { table.concat(all), "", "a/b", "\"q\"" },
  nested = { { { { { { { { { { "deep" } } } } } } } } } },
  empty = {},
  null_value = { a = null, b = { null } },
  cdata = { a = 1LL, b = ffi.new("uint64_t", 2), c = ffi.new("complex", 1, 2) },
  lightud = { a = debug.upvalueid(function() return dir end, 1) }, -- a non-NULL lightuserdata
  bool_key = { [true] = 1 },
  top_string = "top/level",
  top_number = 42.5,
}
local dict = buffer.new({ dict = { "request", "response" } })
dict:encode({ request = 1, response = 2 })
local n = 0
local function write(name, bytes)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
  n = n + 1
end
for name, v in pairs(seeds) do
  write(name, buffer.encode(v))
end
write("dict_string", dict:tostring())
print(("wrote %d seeds to %s"):format(n, dir))
