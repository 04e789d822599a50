// The JSON validator: RapidJSON's SAX reader (iterative, UTF-8 checked) with
// a handler that only counts depth.
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include "text/text.hpp"

namespace batchq::text {

namespace {

// Accepts every event; refuses to open a container past json_max_depth.
struct depth_handler : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, depth_handler> {
  std::size_t depth = 0;
  bool too_deep = false;
  bool open() {
    if (++depth <= json_max_depth) return true;
    too_deep = true;
    return false;
  }
  bool StartObject() { return open(); }
  bool StartArray() { return open(); }
  bool EndObject(rapidjson::SizeType) {
    --depth;
    return true;
  }
  bool EndArray(rapidjson::SizeType) {
    --depth;
    return true;
  }
};

}  // namespace

bool json_valid(std::string_view s, std::string* error) {
  // Iterative: a hostile "[[[[..." cannot overflow the stack. Numbers as
  // strings: we only validate, so skip the float conversion.
  constexpr unsigned flags = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag |
                             rapidjson::kParseNumbersAsStringsFlag;
  rapidjson::MemoryStream ms(s.data(), s.size());
  rapidjson::Reader reader;
  depth_handler handler;
  const rapidjson::ParseResult r = reader.Parse<flags>(ms, handler);
  auto fail = [&](std::size_t offset, const std::string& what) {
    if (error) *error = "invalid JSON at offset " + std::to_string(offset) + ": " + what;
    return false;
  };
  if (handler.too_deep)
    return fail(r.Offset(), "nesting deeper than " + std::to_string(json_max_depth) + " arrays/objects.");
  if (r.IsError()) return fail(r.Offset(), rapidjson::GetParseError_En(r.Code()));
  // MemoryStream reports '\0' at its end, so a NUL byte inside the input
  // looks like the end to the parser; anything left unread is that case.
  if (ms.Tell() != s.size()) return fail(ms.Tell(), "NUL byte in the input.");
  if (error) error->clear();
  return true;
}

}  // namespace batchq::text
