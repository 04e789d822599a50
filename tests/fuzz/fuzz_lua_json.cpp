// tests/fuzz/fuzz_lua_json.cpp - libFuzzer target: the LuaJIT string.buffer
// decoder (batchq::lua_json_check / lua_to_json, what batchq_enqueue_lua()
// checks on the caller's thread and converts on the sending thread).
//
// Properties, for any bytes: no crash, hang or unbounded memory (the JSON
// is at most 20 bytes per input byte plus 16); the check at enqueue and the
// conversion agree; a refusal leaves the output as it was and says why with
// one of the two documented prefixes; an accepted input gives one JSON value
// (RapidJSON accepts it, except for invalid UTF-8, which cjson passes
// through as well).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "batchq/lua_json.hpp"
#include "batchq/payload.hpp"

namespace {

[[noreturn]] void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_lua_json: %s: %s\n", what, detail.c_str());
  std::abort();
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view enc(reinterpret_cast<const char*>(data), size);
  std::string check_error;
  const bool checked = batchq::lua_json_check(enc, &check_error);
  std::string out = "prefix:";
  std::string error;
  const bool converted = batchq::lua_to_json(enc, out, &error);
  if (checked != converted) finding("check and conversion disagree", check_error + " / " + error);
  if (!converted) {
    if (out != "prefix:") finding("a refusal changed the output", out);
    if (error != check_error) finding("check and conversion give different reasons", check_error + " / " + error);
    if (!starts_with(error, "not a LuaJIT string.buffer encoding: ") &&
        !starts_with(error, "cannot become JSON (cjson.encode refuses it): "))
      finding("refusal without a documented prefix", error);
    return 0;
  }
  const std::string json = out.substr(7);
  if (json.size() > 20 * size + 16) finding("output larger than 20 x input + 16", std::to_string(json.size()));
  std::string why;
  if (!batchq::validate_json(json, &why) && why.find("encoding") == std::string::npos)
    finding("output is not JSON", why + ": " + json.substr(0, 200));
  return 0;
}
