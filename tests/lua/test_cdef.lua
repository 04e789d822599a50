-- tests/lua/test_cdef.lua - capi/lua/batchq/cdef.lua follows capi/batchq.h:
--   * every function the cdef declares is declared the same way in the
--     header, and every function of the header is declared or listed in
--     cdef.NOT_BOUND (so a new C function is not forgotten);
--   * every struct of the cdef has the header's fields, in the same order;
--   * cdef.errors is exactly enum batchq_error;
--   * the Lua view q:stats() has every batchq_stats_t field, and the fields
--     the counter table (include/batchq/detail/counters.hpp, printed by the
--     batchq_counters_dump tool) gives the C struct.
-- The comparison is also run on a damaged copy of the header, to show that
-- it notices a difference. Needs BATCHQ_HEADER (capi/batchq.h), LUA_PATH,
-- BATCHQ_LIB and BATCHQ_COUNTERS_DUMP in the environment, as ctest sets them.
local header_path = assert(os.getenv("BATCHQ_HEADER"), "BATCHQ_HEADER must name capi/batchq.h")
local dump = assert(os.getenv("BATCHQ_COUNTERS_DUMP"), "BATCHQ_COUNTERS_DUMP must name batchq_counters_dump")

local cdef = require "batchq.cdef"

-- helpers.lua (the test runner) sits next to this file.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local h = require "helpers"
local test = h.test

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- One spelling per declaration: no comments, single spaces, none around
-- punctuation.
local function norm(s)
  s = s:gsub("%s+", " ")
  s = s:gsub(" ?([%*%(%)%[%],;{}]) ?", "%1")
  return (s:gsub("^ ", ""):gsub(" $", ""))
end

local function strip_comments(s)
  s = s:gsub("/%*.-%*/", " ")
  s = s:gsub("//[^\n]*", " ")
  return s
end

-- { functions = {name = decl}, structs = {name = {field, ...}}, errors = {NAME = n} }
-- of C declarations (the header's text or the cdef's).
local function parse(text, is_header)
  text = strip_comments(text)
  if is_header then
    text = text:gsub("\\\n", " ")          -- macro continuation lines
    text = text:gsub("\n%s*#[^\n]*", "\n")  -- preprocessor lines
    text = text:gsub("^%s*#[^\n]*", "")
    text = text:gsub('extern "C" {', "")
  end
  local out = { functions = {}, structs = {}, errors = {}, opaque = {} }
  text = text:gsub("typedef%s+struct%s+([%w_]+)%s*(%b{})%s*([%w_]+)%s*;", function(tag, body, name)
    assert(tag == name, "struct tag and typedef name differ: " .. tag .. " / " .. name)
    local fields = {}
    for field in body:sub(2, -2):gmatch("([^;]+);") do
      fields[#fields + 1] = norm(field)
    end
    out.structs[name] = fields
    return " "
  end)
  text = text:gsub("typedef%s+struct%s+([%w_]+)%s+([%w_]+)%s*;", function(tag, name)
    out.opaque[name] = tag
    return " "
  end)
  text = text:gsub("enum%s+([%w_]+)%s*(%b{})%s*;", function(name, body)
    if name == "batchq_error" then
      for k, v in body:gmatch("BATCHQ_([%w_]+)%s*=%s*(%-?%d+)") do
        out.errors[k] = tonumber(v)
      end
    end
    return " "
  end)
  text = text:gsub("typedef[^;]-%(%*%s*([%w_]+)%)[^;]*;", " ")  -- function pointer types
  for decl in text:gmatch("([^;]+);") do
    local d = norm(decl):gsub("^BATCHQ_API ", "")
    local name = d:match("([%w_]+)%(")
    if name then
      out.functions[name] = d .. ";"
    end
  end
  return out
end

-- The list of differences between the header and the cdef ({} = none).
local function compare(h, c)
  local diffs = {}
  local function say(...)
    diffs[#diffs + 1] = string.format(...)
  end
  for name, decl in pairs(c.functions) do
    if not h.functions[name] then
      say("cdef declares %s, batchq.h has no such function", name)
    elseif h.functions[name] ~= decl then
      say("%s differs:\n    batchq.h: %s\n    cdef:     %s", name, h.functions[name], decl)
    end
  end
  for name in pairs(h.functions) do
    if not c.functions[name] and not cdef.NOT_BOUND[name] then
      say("batchq.h declares %s: add it to batchq/cdef.lua (or to its NOT_BOUND list)", name)
    end
  end
  for name in pairs(cdef.NOT_BOUND) do
    if not h.functions[name] then
      say("NOT_BOUND names %s, which batchq.h does not declare", name)
    end
  end
  for name, fields in pairs(c.structs) do
    local hf = h.structs[name]
    if not hf then
      say("cdef declares struct %s, batchq.h does not", name)
    else
      for i = 1, math.max(#hf, #fields) do
        if hf[i] ~= fields[i] then
          say("struct %s field %d: batchq.h %s, cdef %s", name, i, tostring(hf[i]), tostring(fields[i]))
          break
        end
      end
    end
  end
  for name, tag in pairs(c.opaque) do
    if h.opaque[name] ~= tag then
      say("cdef declares the opaque type %s, batchq.h does not", name)
    end
  end
  for k, v in pairs(h.errors) do
    if cdef.errors[k] ~= v then
      say("batchq.h has BATCHQ_%s = %d, cdef.errors has %s", k, v, tostring(cdef.errors[k]))
    end
  end
  for k, v in pairs(cdef.errors) do
    if h.errors[k] ~= v then
      say("cdef.errors has %s = %d, batchq.h has %s", k, v, tostring(h.errors[k]))
    end
  end
  table.sort(diffs)
  return diffs
end

local header_text = read(header_path)
local header = parse(header_text, true)
local mine = parse(cdef.declarations, false)

test("the header parses into what this test expects", function()
  assert(header.functions.batchq_new and header.functions.batchq_stats, "functions found")
  assert(header.structs.batchq_stats_t and #header.structs.batchq_stats_t > 30, "batchq_stats_t found")
  assert(header.errors.EINVAL == -1 and header.errors.OK == 0, "enum batchq_error found")
  assert(next(mine.functions) and mine.structs.batchq_dropped, "the cdef parses")
end)

test("cdef.lua matches batchq.h (functions, structs, error codes)", function()
  local diffs = compare(header, mine)
  assert(#diffs == 0, "\n  " .. table.concat(diffs, "\n  "))
end)

test("the comparison notices a changed header", function()
  -- A field appended to batchq_stats_t, an argument changed, a new
  -- function, an error code added: each must be reported.
  local damaged = header_text
    :gsub("uint64_t drops_unreported;", "uint64_t drops_unreported;\n  uint64_t new_counter;")
    :gsub("int batchq_flush%(batchq_queue %*q, int64_t timeout_ms%)", "int batchq_flush(batchq_queue *q, int timeout_ms)")
    :gsub("BATCHQ_API void batchq_free", "BATCHQ_API int batchq_new_thing(void);\nBATCHQ_API void batchq_free")
    :gsub("BATCHQ_EFORK = %-13", "BATCHQ_EFORK = -13,\n  BATCHQ_ENEW = -14")
  local diffs = table.concat(compare(parse(damaged, true), mine), "\n")
  assert(diffs:find("struct batchq_stats_t field", 1, true), "field: " .. diffs)
  assert(diffs:find("batchq_flush differs", 1, true), "argument: " .. diffs)
  assert(diffs:find("batchq_new_thing", 1, true), "new function: " .. diffs)
  assert(diffs:find("BATCHQ_ENEW", 1, true), "error code: " .. diffs)
end)

test("cdef.stats_fields are batchq_stats_t's uint64_t fields", function()
  local want = {}
  for _, f in ipairs(header.structs.batchq_stats_t) do
    local name = f:match("^uint64_t ([%w_]+)$")
    if name then
      want[#want + 1] = name
    end
  end
  assert(#want == #cdef.stats_fields, #want .. " scalar fields in batchq.h, " .. #cdef.stats_fields .. " in cdef")
  for i = 1, #want do
    assert(want[i] == cdef.stats_fields[i], "field " .. i .. ": " .. want[i] .. " / " .. tostring(cdef.stats_fields[i]))
  end
end)

test("q:stats() has a key for every counter of the table, and nothing else", function()
  -- The counter table's C names, as batchq_counters_dump prints them
  -- ("<group> <c_field>" per row).
  local p = assert(io.popen("'" .. dump .. "'"))
  local rows = p:read("*a")
  p:close()
  local want, n = {}, 0
  for group, c in rows:gmatch("(%w+) ([%w_]+)\n") do
    n = n + 1
    if group == "result" then
      for _, suffix in ipairs({ "_full", "_too_large", "_invalid_json", "_shutdown" }) do
        want[c .. suffix] = true
      end
    else
      want[c] = true
    end
  end
  assert(n > 20, "the dump printed the table: " .. rows)
  local batchq = require "batchq"
  local q = assert(batchq.new({ http_endpoint = "http://127.0.0.1:9/" }))
  local st = assert(q:stats())
  q:close(0)
  for k in pairs(want) do
    assert(st[k] ~= nil, "q:stats() lacks " .. k)
  end
  for k in pairs(st) do
    assert(want[k], "q:stats() has " .. k .. ", which the counter table does not")
  end
  assert(type(st.dropped_by_reason) == "table" and st.dropped_by_reason.shutdown == 0, "dropped_by_reason")
end)

h.finish()
