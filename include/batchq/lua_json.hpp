// batchq/lua_json.hpp - LuaJIT string.buffer encodings to the JSON that
// lua-cjson's cjson.encode() would have made of the same value. http_log
// uses it for entries taken with enqueue_lua() (C ABI: batchq_enqueue_lua);
// it is public so that hosts, tests and tools can convert such bytes too.
//
// The input is what `require("string.buffer").new():encode(value)` writes
// (LuaJIT's "Serialization Format Specification", doc/ext_buffer.html; the
// encoder is src/lj_serialize.c). The output follows lua-cjson 2.1.0 with
// its default settings, which is what Kong's http-log uses (`require
// "cjson"`, never reconfigured there):
//   - numbers as printf("%.14g"); NaN and +-Inf refused
//     ("Cannot serialise number: must not be NaN or Inf");
//   - strings: `"` `\` `/` escaped, control characters and 0x7f as \b \t \n
//     \f \r or \u00XX, every other byte copied (no UTF-8 check);
//   - a table is an array when every key is an integer >= 1 (length = the
//     largest key, holes as null), unless it is "excessively sparse"
//     (largest key > 2 * number of keys and > 10: refused, cjson's
//     encode_sparse_array(false, 2, 10)); otherwise an object whose number
//     keys are printed as above inside quotes; other key types refused;
//     an empty table is {};
//   - nil and the NULL lightuserdata (ngx.null, cjson.null) as null; other
//     lightuserdata and FFI cdata (int64_t, uint64_t, complex) refused, as
//     cjson refuses them ("type not supported");
//   - tables nested deeper than 1000 refused (cjson's encode_max_depth).
// The bytes are cjson's except for the order of an object's keys: string-
// keyed tables come out in the encoded order (the reverse of lua_next()'s,
// which cjson uses); JSON objects are unordered, and the two decode equal.
// What a table's metatable said is not in the encoding (string.buffer drops
// it), so cjson.array_mt / empty_array_mt cannot be honoured: an empty table
// is always {}.
//
// Refused as malformed: truncated data, unknown tags, trailing bytes, a
// dictionary reference (buffer.new{dict=..., metatable=...}: the
// dictionaries are not in the bytes), a nil or NaN table key, a repeated
// array index. Memory: the JSON is at most 20 bytes per input byte plus 16;
// the decoder's scratch space is linear in the input. Time: linear.
//
// Thread-safe: every call uses thread-local scratch space.
#ifndef BATCHQ_LUA_JSON_HPP
#define BATCHQ_LUA_JSON_HPP

#include <cstddef>
#include <string>
#include <string_view>

#include "batchq/export.hpp"

namespace batchq {

/// cjson's encode_max_depth default: tables nested deeper are refused.
constexpr std::size_t lua_json_max_depth = 1000;

/// true if `enc` is exactly one encoded value that cjson.encode() would
/// encode. On false, *error (if not null) says why and where, e.g.
/// "cannot become JSON: excessively sparse array (table at offset 12)".
/// Does not build the JSON (this is the cheap check made at enqueue).
BATCHQ_CXX_API bool lua_json_check(std::string_view enc, std::string* error = nullptr);

/// Appends the JSON for `enc` to `out`. On false `out` is left as it was and
/// *error says why (the same messages as lua_json_check).
BATCHQ_CXX_API bool lua_to_json(std::string_view enc, std::string& out, std::string* error = nullptr);

}  // namespace batchq

#endif  // BATCHQ_LUA_JSON_HPP
