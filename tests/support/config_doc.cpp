// batchq_config_doc: the configuration reference, from the one table of keys
// in lib/config.cpp.
//   batchq_config_doc                    the Markdown table on stdout
//   batchq_config_doc --check README.md  exit 1 if README.md's generated
//                                        section differs (ctest config_reference)
//   batchq_config_doc --update README.md rewrite that section in place
//   batchq_config_doc --lua              the keys as a Lua table (for
//                                        tests/lua/test_plugin_keys.lua)
#include <cstdio>
#include <string>

#include "config_keys.hpp"
#include "support/readme_section.hpp"

namespace {

const char* kind_name(batchq::detail::config_kind k) {
  switch (k) {
    case batchq::detail::config_kind::string: return "string";
    case batchq::detail::config_kind::choice: return "choice";
    case batchq::detail::config_kind::boolean: return "boolean";
    case batchq::detail::config_kind::integer: return "integer";
    case batchq::detail::config_kind::seconds: return "seconds";
    case batchq::detail::config_kind::millis: return "millis";
    case batchq::detail::config_kind::object: return "object";
  }
  return "?";
}

std::string lua_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

int print_lua() {
  std::printf("return {\n");
  for (const auto& k : batchq::detail::config_keys()) {
    std::string choices;
    for (const auto& c : k.choices) choices += lua_string(c) + ", ";
    std::printf(
        "  { name = %s, kind = %s, lo = %.17g, hi = %.17g, unbounded_lo = %s, clamp = %s, "
        "required = %s, choices = { %s}, default = %s },\n",
        lua_string(k.name).c_str(), lua_string(kind_name(k.kind)).c_str(), k.lo, k.hi,
        k.unbounded_lo ? "true" : "false", k.clamp ? "true" : "false", k.required ? "true" : "false", choices.c_str(),
        lua_string(k.default_json).c_str());
  }
  std::printf("}\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string table = batchq::detail::config_reference_markdown();
  if (argc == 1) {
    std::fputs(table.c_str(), stdout);
    return 0;
  }
  const std::string mode = argv[1];
  if (mode == "--lua") return print_lua();
  if ((mode != "--check" && mode != "--update") || argc != 3) {
    std::fprintf(stderr, "usage: %s [--lua | --check README.md | --update README.md]\n", argv[0]);
    return 2;
  }
  return batchq_test::readme_section("batchq_config_doc", mode, argv[2], "config-reference", table);
}
