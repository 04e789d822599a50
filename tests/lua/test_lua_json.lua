-- tests/lua/test_lua_json.lua - enqueue_table(): LuaJIT string.buffer
-- encodings become the JSON cjson.encode() makes, on batchq's side.
--
--   BATCHQ_LIB=<build>/capi/libbatchq.so BATCHQ_RECEIVER=<build>/tests/batchq_receiver \
--   LUA_PATH="<src>/capi/lua/?.lua;;" luajit tests/lua/test_lua_json.lua [seed] [count]
--
-- The equivalence test draws random values (seeded; nesting, sparse and
-- mixed keys, numbers at the edges, strings with every byte, NULL
-- lightuserdata, cdata, functions) and checks, for each one, through the
-- real path (string.buffer in this luajit -> libbatchq.so's decoder):
--   cjson.encode(v) succeeds -> ours succeeds and
--                               cjson.decode(ours) deep-equals cjson.decode(cjson.encode(v))
--                               and has the same length (the same bytes but
--                               for the order of object keys);
--   cjson.encode(v) refuses  -> ours refuses.
-- The one allowed difference: string.buffer itself cannot encode tables
-- nested deeper than 100 (LuaJIT's limit), which cjson (limit 1000) can;
-- enqueue_table() then refuses and the host falls back to cjson. Such draws
-- are counted and must be exactly the too-deep ones.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path

local ffi = require "ffi"
local cjson = require "cjson"
local h = require "helpers"
local batchq = require "batchq"

local fmt = string.format
local test, check, eq, has = h.test, h.check, h.eq, h.has

local SEED = tonumber(arg[1]) or 20261130
local COUNT = tonumber(arg[2]) or 20000

-- Deep equality of decoded JSON values (cjson.null compares by identity).
-- `rel`: relative tolerance for numbers (the receiver re-serializes what it
-- gets with RapidJSON, whose default parse may differ in the last bit).
local function deep_eq(a, b, path, rel)
  if type(a) ~= type(b) then
    return false, fmt("%s: %s vs %s", path, type(a), type(b))
  end
  if type(a) ~= "table" then
    if a == b or (rel and type(a) == "number" and math.abs(a - b) <= rel * math.abs(b)) then
      return true
    end
    return false, fmt("%s: %s vs %s", path, tostring(a), tostring(b))
  end
  for k, v in pairs(a) do
    local ok, why = deep_eq(v, b[k], path .. "." .. tostring(k), rel)
    if not ok then
      return false, why
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false, path .. "." .. tostring(k) .. " only in the second"
    end
  end
  return true
end

-- Random values ---------------------------------------------------------------

local random = math.random
local EDGE_NUMBERS = {
  0, -0.0, 1, -1, 0.5, -2.5, 0.1, 1 / 3, 2 / 3, 1e308, -1e308, 1e-308, -1e-308, 5e-324, 2.2250738585072014e-308,
  2 ^ 53, 2 ^ 53 - 1, -2 ^ 53, 2 ^ 63, -2 ^ 63, 2 ^ 64, 1e14, 1e14 - 1, -1e14 + 1, 1e15, 1e16, 1e17,
  123456789012345678, 99999999999999.5, 12345678.901234567, 2 ^ 31, 2 ^ 31 - 1, -2 ^ 31, 2 ^ 32, 1e21, 1e22,
  1.7976931348623157e308, 4.9e-324, 1e-5, 1e-4, 123e-7, 0.000123456789012345,
}
local BAD_NUMBERS = { math.huge, -math.huge, 0 / 0 }
local ODD_KEYS = { 0, -1, 1.5, -0.5, 2 ^ 31, 2 ^ 31 - 1, 2 ^ 32 + 5, 2 ^ 40, 1e300, 2 ^ 53, 1e15 }

local function random_string()
  local r = random()
  if r < 0.05 then
    local t = {}
    for i = 0, 255 do
      t[#t + 1] = string.char(i)
    end
    return table.concat(t)
  end
  local n = random(0, r < 0.5 and 8 or 40)
  local t = {}
  for i = 1, n do
    local c
    if random() < 0.5 then
      c = random(0, 255)
    else
      c = random(32, 126)
    end
    t[i] = string.char(c)
  end
  return table.concat(t)
end

local function random_number()
  local r = random()
  if r < 0.4 then
    return EDGE_NUMBERS[random(#EDGE_NUMBERS)]
  elseif r < 0.6 then
    return random(-1000000, 1000000)
  elseif r < 0.8 then
    return (random() - 0.5) * 10 ^ random(-30, 30)
  else
    return random(-2 ^ 31, 2 ^ 31) * 2 ^ random(0, 40)
  end
end

-- `bad` is the chance of an element cjson refuses.
local function random_value(depth, bad)
  local r = random()
  if r < bad then
    local k = random(6)
    if k == 1 then
      return BAD_NUMBERS[random(#BAD_NUMBERS)]
    elseif k == 2 then
      return ffi.new("int64_t", random(-100, 100))
    elseif k == 3 then
      return ffi.new("uint64_t", random(0, 100))
    elseif k == 4 then
      return debug.upvalueid(random_value, 1) -- a non-NULL lightuserdata
    elseif k == 5 then
      return print -- a function: string.buffer refuses it too
    else
      return { [true] = 1 } -- a key that is not a number or string
    end
  end
  if depth > 0 and r < 0.35 then
    local shape = random(7)
    local t = {}
    local n = random(0, 12)
    if shape == 1 then -- array
      for i = 1, n do
        t[i] = random_value(depth - 1, bad)
      end
    elseif shape == 2 then -- array with holes
      for i = 1, n do
        if random() < 0.6 then
          t[i] = random_value(depth - 1, bad)
        end
      end
    elseif shape == 3 then -- sparse: may be "excessively sparse" or not
      for _ = 1, random(0, 3) do
        t[random(1, 30)] = random_value(depth - 1, bad)
      end
    elseif shape == 4 then -- object
      for _ = 1, n do
        t[random_string()] = random_value(depth - 1, bad)
      end
    elseif shape == 5 then -- mixed: array part plus string keys
      for i = 1, n do
        t[i] = random_value(depth - 1, bad)
      end
      for _ = 1, random(1, 4) do
        t["k" .. random(1, 100)] = random_value(depth - 1, bad)
      end
    elseif shape == 6 then -- odd number keys (0, negative, fractional, huge)
      for i = 1, random(0, 4) do
        t[i] = random_value(depth - 1, bad)
      end
      for _ = 1, random(1, 3) do
        t[ODD_KEYS[random(#ODD_KEYS)]] = random_value(depth - 1, bad)
      end
    else -- built by deleting: array part with nils at the end
      for i = 1, n + 3 do
        t[i] = random_value(depth - 1, bad)
      end
      for i = n + 1, n + 3 do
        t[i] = nil
      end
    end
    return t
  end
  local k = random(10)
  if k <= 3 then
    return random_number()
  elseif k <= 6 then
    return random_string()
  elseif k == 7 then
    return random() < 0.5
  elseif k == 8 then
    return cjson.null -- the NULL lightuserdata, as ngx.null
  elseif k == 9 then
    return {}
  end
  return random(0, 100)
end

local function nested(levels)
  local t = { leaf = 1 }
  for _ = 2, levels do
    t = { t }
  end
  return t
end

-- The tests ---------------------------------------------------------------------

test("has_string_buffer", function()
  eq(batchq.has_string_buffer, true, "this luajit has string.buffer")
end)

test(fmt("equivalence with cjson.encode over %d random values (seed %d)", COUNT, SEED), function()
  math.randomseed(SEED)
  local same, refused_both, too_deep = 0, 0, 0
  for i = 1, COUNT do
    local bad = (i % 4 == 0) and 0.02 or 0
    local v
    if i % 997 == 0 then
      v = nested(random(90, 130)) -- around string.buffer's depth limit
    elseif i % 1499 == 0 then
      v = nested(random(995, 1005)) -- around cjson's
    else
      v = random_value(random(0, 5), bad)
    end
    local cj_ok, cj = pcall(cjson.encode, v)
    local ours, err = batchq.to_json(v)
    if cj_ok then
      if ours then
        local ok, why = deep_eq(cjson.decode(ours), cjson.decode(cj), "$")
        check(ok, fmt("draw %d: decoded JSON differs: %s\n ours: %s\n cjson: %s", i, tostring(why), ours, cj))
        -- Same bytes but for the order of object keys (see lua_json.hpp).
        eq(#ours, #cj, fmt("draw %d: length of the JSON (ours %s, cjson %s)", i, ours, cj))
        same = same + 1
      else
        -- only string.buffer's own depth limit may refuse what cjson takes
        has(err, "cannot be encoded with string.buffer", fmt("draw %d: refused (%s) what cjson encodes: %s", i,
                                                             tostring(err), cj:sub(1, 200)))
        has(err, "deep", "draw " .. i)
        too_deep = too_deep + 1
      end
    else
      check(ours == nil, fmt("draw %d: cjson refuses (%s) but ours gave %s", i, tostring(cj), tostring(ours)))
      refused_both = refused_both + 1
    end
  end
  print(fmt("  equal: %d, refused by both: %d, too deep for string.buffer (cjson fallback): %d",
            same, refused_both, too_deep))
  check(same > COUNT / 2, "most draws are encodable")
  check(refused_both > COUNT / 50, "refusals are exercised: " .. refused_both)
  check(too_deep > 0, "the depth limit is exercised")
end)

test("every byte of a string, and the edge numbers, byte for byte", function()
  local all = {}
  for i = 0, 255 do
    all[#all + 1] = string.char(i)
  end
  local s = table.concat(all)
  eq(batchq.to_json({ s = s, [s] = 1 }) ~= nil, true, "encodes")
  local v = { s }
  eq(batchq.to_json(v), cjson.encode(v), "string")
  for _, n in ipairs(EDGE_NUMBERS) do
    eq(batchq.to_json({ n }), cjson.encode({ n }), "number " .. fmt("%.17g", n))
    eq(batchq.to_json({ [fmt("%.17g", n)] = n, x = { n } }) ~= nil, true, "number in an object")
  end
end)

-- The fast path writes into a per-thread buffer sized from the encoding and
-- grown mid-entry when escapes make the JSON longer (a control byte becomes
-- 6 bytes), then dropped after an entry past 1 MiB: a small entry, a huge
-- escape-heavy one, and small ones again must all come out as cjson's.
test("the JSON writer's buffer: growth mid-entry and after a huge entry", function()
  local small = { "x/y", 1.5, { 1, 2, 3 } } -- arrays: the same bytes as cjson's
  eq(batchq.to_json(small), cjson.encode(small), "small first")
  local ctl = string.rep("\1", 200000) -- 1.2 MB of JSON from 200 kB
  local big = { ctl, "tail\"\\/" }
  eq(batchq.to_json(big), cjson.encode(big), "escape-heavy entry larger than the buffer's first size")
  local mixed = {}
  for i = 1, 2000 do
    mixed[i] = string.rep("\n", i % 64) .. string.rep("a", i % 13)
  end
  eq(batchq.to_json(mixed), cjson.encode(mixed), "many strings, the buffer grows several times")
  eq(batchq.to_json(small), cjson.encode(small), "small after the huge ones")
  eq(batchq.to_json({ k = ctl }) ~= nil, true, "object with the huge string")
  local o = cjson.decode(batchq.to_json({ k = ctl, z = 1 }))
  eq(o.k, ctl, "huge string round-trips")
  eq(o.z, 1, "value after the huge string")
end)

test("cjson's shapes: empty table, sparse arrays, ngx.null", function()
  eq(batchq.to_json({}), "{}", "empty table")
  eq(batchq.to_json({ {}, { {} } }), "[{},[{}]]", "nested empties")
  eq(batchq.to_json({ [10] = 1 }), cjson.encode({ [10] = 1 }), "sparse but safe (<= 10)")
  eq(batchq.to_json({ [3] = 1, [1] = 2 }), "[2,null,1]", "holes are null")
  eq(batchq.to_json({ null = cjson.null, a = { cjson.null } }) ~= nil, true, "NULL lightuserdata")
  eq(batchq.to_json({ cjson.null, cjson.null }), "[null,null]", "NULL lightuserdata")
  eq(batchq.to_json({ [0] = "z", "a" }), cjson.encode({ [0] = "z", "a" }), "index 0 makes an object")
  eq(batchq.to_json("a/b"), '"a\\/b"', "top-level string, / escaped")
  eq(batchq.to_json(false), "false", "top-level boolean")
  local ours, err, code = batchq.to_json({ [11] = 1 })
  eq(ours, nil, "excessively sparse")
  has(err, "excessively sparse array")
  eq(code, batchq.errors.EJSON, "code")
  ours, err = batchq.to_json({ x = 0 / 0 })
  eq(ours, nil, "NaN")
  has(err, "NaN or Inf")
  ours, err = batchq.to_json({ n = 1LL })
  eq(ours, nil, "int64 cdata")
  has(err, "cdata")
  ours, err = batchq.to_json({ [true] = 1 })
  eq(ours, nil, "boolean key")
  has(err, "key must be a number or string")
  ours, err = batchq.to_json({ f = print })
  eq(ours, nil, "function")
  has(err, "cannot be encoded with string.buffer")
end)

-- The C side's refusals of malformed bytes (the fuzz target covers any bytes).
-- batchq_lua_to_json is declared by the module's batchq/cdef.lua, which
-- lua_cdef checks against batchq.h.
local function c_to_json(bytes)
  local lib = ffi.load(os.getenv("BATCHQ_LIB"))
  local out = ffi.new("char[?]", 20 * #bytes + 17)
  local n = ffi.new("size_t[1]")
  local e = ffi.new("char[256]")
  local rc = lib.batchq_lua_to_json(bytes, #bytes, out, 20 * #bytes + 17, n, e, 256)
  if rc ~= 0 then
    return nil, ffi.string(e), rc
  end
  return ffi.string(out, n[0])
end

test("malformed encodings are refused with a message, never a crash", function()
  local buf = require("string.buffer")
  local good = buf.encode({ a = { 1, 2, "x" }, b = "y" })
  check(deep_eq(cjson.decode(c_to_json(good)), { a = { 1, 2, "x" }, b = "y" }, "$"), "whole encoding")
  for cut = 1, #good - 1 do
    local ours, err, rc = c_to_json(good:sub(1, cut))
    eq(ours, nil, "truncated at " .. cut)
    has(err, "not a LuaJIT string.buffer encoding", "truncated at " .. cut)
    eq(rc, -5, "BATCHQ_EJSON")
  end
  local _, err = c_to_json(good .. "\0")
  has(err, "trailing bytes")
  _, err = c_to_json("\019")
  has(err, "unknown tag")
  _, err = c_to_json("\015\000") -- dictionary string
  has(err, "string dictionary")
  local dict = buf.new({ dict = { "a" } })
  dict:encode({ a = 1 })
  _, err = c_to_json(dict:tostring())
  has(err, "string dictionary")
  _, err = c_to_json("\009\001\000\001") -- { [nil] = true }
  has(err, "key is nil")
end)

-- End to end: through a queue to a loopback receiver, and to poll_dropped.
test("enqueue_table: the receiver gets cjson's JSON", function()
  local rx = h.start_receiver("--quiet")
  local q = assert(batchq.new({ http_endpoint = rx.url, queue_size = 7, flush_timeout = 0.05 }))
  math.randomseed(SEED + 1)
  local want = {}
  local N = 300
  while #want < N do
    local v = random_value(4, 0)
    if type(v) ~= "table" then
      v = { v = v }
    end
    local ok, cj = pcall(cjson.encode, v)
    if ok and cj:sub(1, 1) == "{" then
      want[#want + 1] = cj
      v.seq = #want
      want[#want] = cjson.encode(v)
      assert(q:enqueue_table(v))
    end
  end
  local ok, err, code = q:enqueue_table({ bad = 0 / 0 })
  eq(ok, nil, "refused")
  has(err, "NaN")
  eq(code, batchq.errors.EJSON, "code")
  assert(q:flush(20000))
  check(h.wait_for(function() return #rx.entries() >= N end, 10000), "receiver got " .. #rx.entries())
  local got = {}
  for _, line in ipairs(rx.entries()) do
    local e = cjson.decode(line)
    got[e.seq] = e
  end
  for i = 1, N do
    local okk, why = deep_eq(got[i], cjson.decode(want[i]), "$", 1e-15)
    check(okk, fmt("entry %d: %s", i, tostring(why)))
  end
  local s = q:stats()
  eq(s.delivered, N, "delivered")
  eq(s.refused_invalid_json, 1, "refused counted")
  assert(q:close(5000))
  rx.stop()
end, true)

test("enqueue_table: dropped entries come back as JSON", function()
  local url = "http://127.0.0.1:" .. h.dead_port() .. "/logs"
  local q = assert(batchq.new({ http_endpoint = url, retry_count = 2, queue_size = 3, flush_timeout = 0.05,
                                timeout = 2000, backoff = "exponential", initial_retry_delay = 0.01,
                                max_retry_delay = 0.05 }))
  local sent = {}
  for i = 1, 10 do
    local v = { n = i, path = "/a/b", list = { 1, 2, { x = "y" } }, empty = {} }
    local json = batchq.to_json(v)
    check(deep_eq(cjson.decode(json), cjson.decode(cjson.encode(v)), "$"), "to_json is cjson's")
    sent[json] = true
    assert(q:enqueue_table(v))
  end
  assert(q:flush(20000))
  local d = assert(q:poll_dropped(100))
  eq(#d, 10, "dropped")
  for _, e in ipairs(d) do
    check(sent[e.data], "dropped entry is the JSON: " .. e.data)
    sent[e.data] = nil
  end
  assert(q:close(0))
end)

test("enqueue_table: dead-letter spool holds JSON", function()
  local dir = h.TMP .. "/spool"
  assert(h.sh("mkdir -p " .. dir))
  local url = "http://127.0.0.1:" .. h.dead_port() .. "/logs"
  local q = assert(batchq.new({ http_endpoint = url, retry_count = 1, flush_timeout = 0.05, timeout = 2000,
                                spool_dir = dir }))
  local v = { marker = "spooled-as-json", path = "/x/y", n = 1.5 }
  assert(q:enqueue_table(v))
  assert(q:flush(20000))
  local d = assert(q:poll_dropped(10))
  eq(#d, 1, "dropped")
  eq(d[1].data, batchq.to_json(v), "drop report")
  check(deep_eq(cjson.decode(d[1].data), cjson.decode(cjson.encode(v)), "$"), "drop report is cjson's JSON")
  eq(d[1].spooled, true, "spooled")
  assert(q:close(0))
  local raw = assert(io.popen("cat " .. dir .. "/dead-letter/* 2>/dev/null")):read("*a")
  has(raw, batchq.to_json(v), "the dead-letter segment holds the JSON bytes")
end)

test("enqueue_table: write-ahead spool holds JSON", function()
  local dir = h.TMP .. "/wal"
  assert(h.sh("mkdir -p " .. dir))
  local url = "http://127.0.0.1:" .. h.dead_port() .. "/logs"
  local q = assert(batchq.new({ http_endpoint = url, retry_count = 1, flush_timeout = 60, queue_size = 100,
                                timeout = 2000, spool_dir = dir, spool_mode = "write_ahead" }))
  local v = { marker = "wal-as-json", path = "/p" }
  assert(q:enqueue_table(v))
  local raw = assert(io.popen("cat " .. dir .. "/write-ahead/* 2>/dev/null")):read("*a")
  has(raw, batchq.to_json(v), "the write-ahead segment holds the JSON bytes")
  q:close(0) -- the entry is still queued: "timeout", and it stays in the write-ahead spool
end)

test("enqueue_table arguments and closed queue", function()
  local q = assert(batchq.new({ http_endpoint = "http://127.0.0.1:" .. h.dead_port() .. "/" }))
  assert(q:close(0))
  local ok, err, code = q:enqueue_table({})
  eq(ok, nil, "closed")
  eq(code, batchq.errors.ESHUTDOWN, "code " .. tostring(err))
end)

h.finish()
