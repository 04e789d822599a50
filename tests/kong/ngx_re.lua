-- tests/kong/ngx_re.lua - ngx.re.find / match / gmatch / sub / gsub on
-- PCRE2 through the FFI, for running Kong's Lua outside nginx. Same calling
-- conventions as lua-nginx-module (options "i", "x", "s", "m", "u", "a",
-- "D"; "j", "o" and "J" are accepted and ignored; ctx.pos honoured), same
-- engine family as nginx (PCRE), so a regex Kong's schema validates behaves
-- as it would in Kong.
local ffi = require "ffi"

ffi.cdef [[
typedef struct pcre2_code_8 pcre2_code_8;
typedef struct pcre2_match_data_8 pcre2_match_data_8;
pcre2_code_8 *pcre2_compile_8(const char *pattern, size_t length, uint32_t options,
                              int *errorcode, size_t *erroroffset, void *ccontext);
void pcre2_code_free_8(pcre2_code_8 *code);
pcre2_match_data_8 *pcre2_match_data_create_from_pattern_8(const pcre2_code_8 *code, void *gcontext);
void pcre2_match_data_free_8(pcre2_match_data_8 *md);
int pcre2_match_8(const pcre2_code_8 *code, const char *subject, size_t length, size_t startoffset,
                  uint32_t options, pcre2_match_data_8 *md, void *mcontext);
size_t *pcre2_get_ovector_pointer_8(pcre2_match_data_8 *md);
int pcre2_get_error_message_8(int errorcode, unsigned char *buffer, size_t bufflen);
int pcre2_pattern_info_8(const pcre2_code_8 *code, uint32_t what, void *where);
]]

local pcre = ffi.load("pcre2-8.so.0")

local OPT = {
  i = 0x00000008, -- CASELESS
  m = 0x00000400, -- MULTILINE
  s = 0x00000020, -- DOTALL
  x = 0x00000080, -- EXTENDED
  u = 0x00080000, -- UTF
  D = 0x00000040, -- DUPNAMES
  a = 0x80000000, -- ANCHORED
  j = 0, o = 0, J = 0,
}
local INFO_CAPTURECOUNT, INFO_NAMECOUNT, INFO_NAMEENTRYSIZE, INFO_NAMETABLE = 4, 17, 18, 19

local cache = {}
local errcode, erroff = ffi.new("int[1]"), ffi.new("size_t[1]")
local u32 = ffi.new("uint32_t[1]")
local ptr = ffi.new("const char *[1]")
local msgbuf = ffi.new("unsigned char[256]")

local function compile(regex, opts)
  opts = opts or ""
  local key = opts .. "\0" .. regex
  local c = cache[key]
  if c then
    return c
  end
  local flags = 0
  for ch in opts:gmatch(".") do
    local f = OPT[ch]
    if not f then
      return nil, "unknown flag \"" .. ch .. "\" (flags \"" .. opts .. "\")"
    end
    flags = bit.bor(flags, f)
  end
  local code = pcre.pcre2_compile_8(regex, #regex, flags, errcode, erroff, nil)
  if code == nil then
    pcre.pcre2_get_error_message_8(errcode[0], msgbuf, 256)
    return nil, "pcre2_compile() failed: " .. ffi.string(msgbuf) .. " in \"" .. regex .. "\" at \""
                .. regex:sub(tonumber(erroff[0]) + 1) .. "\""
  end
  ffi.gc(code, pcre.pcre2_code_free_8)
  local md = ffi.gc(pcre.pcre2_match_data_create_from_pattern_8(code, nil), pcre.pcre2_match_data_free_8)
  pcre.pcre2_pattern_info_8(code, INFO_CAPTURECOUNT, u32)
  local ncap = tonumber(u32[0])
  local names = {}
  pcre.pcre2_pattern_info_8(code, INFO_NAMECOUNT, u32)
  local nnames = tonumber(u32[0])
  if nnames > 0 then
    pcre.pcre2_pattern_info_8(code, INFO_NAMEENTRYSIZE, u32)
    local esize = tonumber(u32[0])
    pcre.pcre2_pattern_info_8(code, INFO_NAMETABLE, ptr)
    local tbl = ffi.cast("const unsigned char *", ptr[0])
    for n = 0, nnames - 1 do
      local e = tbl + n * esize
      names[#names + 1] = { idx = e[0] * 256 + e[1], name = ffi.string(e + 2) }
    end
  end
  c = { code = code, md = md, ncap = ncap, names = names }
  cache[key] = c
  return c
end

-- Runs one match from byte `init` (1-based); returns the ovector or nil, err.
local function exec(c, subject, init)
  local rc = pcre.pcre2_match_8(c.code, subject, #subject, init - 1, 0, c.md, nil)
  if rc == -1 then
    return nil
  elseif rc < 0 then
    pcre.pcre2_get_error_message_8(rc, msgbuf, 256)
    return nil, "pcre_exec() failed: " .. ffi.string(msgbuf)
  end
  return pcre.pcre2_get_ovector_pointer_8(c.md)
end

local function captures(c, subject, ov, res)
  res = res or {}
  for i = 0, c.ncap do
    local s, e = ov[2 * i], ov[2 * i + 1]
    if s == ffi.cast("size_t", -1) then
      res[i] = false
    else
      res[i] = subject:sub(tonumber(s) + 1, tonumber(e))
    end
  end
  for _, n in ipairs(c.names) do
    res[n.name] = res[n.idx]
  end
  return res
end

local _M = {}

function _M.find(subject, regex, opts, ctx, nth)
  local c, err = compile(regex, opts)
  if not c then
    return nil, nil, err
  end
  local init = ctx and ctx.pos or 1
  local ov, merr = exec(c, subject, init)
  if not ov then
    return nil, nil, merr
  end
  nth = nth or 0
  local s, e = ov[2 * nth], ov[2 * nth + 1]
  if ctx then
    ctx.pos = tonumber(ov[1]) + 1
  end
  if s == ffi.cast("size_t", -1) then
    return nil
  end
  return tonumber(s) + 1, tonumber(e)
end

function _M.match(subject, regex, opts, ctx, res)
  local c, err = compile(regex, opts)
  if not c then
    return nil, err
  end
  local ov, merr = exec(c, subject, ctx and ctx.pos or 1)
  if not ov then
    return nil, merr
  end
  if ctx then
    ctx.pos = tonumber(ov[1]) + 1
  end
  return captures(c, subject, ov, res)
end

function _M.gmatch(subject, regex, opts)
  local c, err = compile(regex, opts)
  if not c then
    return nil, err
  end
  local pos = 1
  return function()
    if pos > #subject + 1 then
      return nil
    end
    local ov, merr = exec(c, subject, pos)
    if not ov then
      pos = #subject + 2
      return nil, merr
    end
    local s, e = tonumber(ov[0]), tonumber(ov[1])
    pos = (e == s) and e + 2 or e + 1
    return captures(c, subject, ov)
  end
end

local function subst(subject, regex, replace, opts, global)
  local c, err = compile(regex, opts)
  if not c then
    return nil, nil, err
  end
  local out, pos, n = {}, 1, 0
  while pos <= #subject + 1 do
    local ov, merr = exec(c, subject, pos)
    if merr then
      return nil, nil, merr
    end
    if not ov then
      break
    end
    local s, e = tonumber(ov[0]), tonumber(ov[1])
    local caps = captures(c, subject, ov)
    out[#out + 1] = subject:sub(pos, s)
    if type(replace) == "function" then
      out[#out + 1] = replace(caps)
    else
      out[#out + 1] = (replace:gsub("%$(%b{})", function(k) return caps[tonumber(k:sub(2, -2)) or k:sub(2, -2)] or "" end)
                              :gsub("%$(%d)", function(k) return caps[tonumber(k)] or "" end))
    end
    n = n + 1
    if e == s then
      out[#out + 1] = subject:sub(e + 1, e + 1)
      pos = e + 2
    else
      pos = e + 1
    end
    if not global then
      break
    end
  end
  out[#out + 1] = subject:sub(pos)
  return table.concat(out), n
end

function _M.sub(subject, regex, replace, opts)
  return subst(subject, regex, replace, opts, false)
end

function _M.gsub(subject, regex, replace, opts)
  return subst(subject, regex, replace, opts, true)
end

-- ngx.re.split (lua-resty-core's ngx/re.lua): the pieces between matches,
-- with each match's captures inserted after the piece before it; `max` > 0
-- caps the number of pieces.
function _M.split(subject, regex, opts, ctx, max, res)
  local c, err = compile(regex, opts)
  if not c then
    return nil, err
  end
  res = res or {}
  local n = #res
  for i = n, 1, -1 do res[i] = nil end
  local pos, search, pieces = 1, 1, 0
  while search <= #subject do
    if max and max > 0 and pieces >= max - 1 then
      break
    end
    local ov, merr = exec(c, subject, search)
    if merr then
      return nil, merr
    end
    if not ov then
      break
    end
    local s, e = tonumber(ov[0]), tonumber(ov[1])
    if e == s then
      -- an empty match splits between characters, never at the start
      if s + 1 > #subject then break end
      if s + 1 == pos then
        search = s + 2
        goto continue
      end
    end
    res[#res + 1] = subject:sub(pos, s)
    pieces = pieces + 1
    for i = 1, c.ncap do
      local cs, ce = ov[2 * i], ov[2 * i + 1]
      if cs ~= ffi.cast("size_t", -1) then
        res[#res + 1] = subject:sub(tonumber(cs) + 1, tonumber(ce))
      end
    end
    pos = e + 1
    search = (e == s) and e + 2 or e + 1
    ::continue::
  end
  res[#res + 1] = subject:sub(pos)
  return res
end

return _M
