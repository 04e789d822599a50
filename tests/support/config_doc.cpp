// batchq_config_doc: the configuration reference, from the one table of keys
// in lib/config.cpp.
//   batchq_config_doc                    the Markdown table on stdout
//   batchq_config_doc --check README.md  exit 1 if README.md's generated
//                                        section differs (ctest config_reference)
//   batchq_config_doc --update README.md rewrite that section in place
//   batchq_config_doc --lua              the keys as a Lua table (for
//                                        tests/lua/test_plugin_keys.lua)
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "config_keys.hpp"

namespace {

const char* const k_begin = "<!-- BEGIN config-reference: generated from lib/config.cpp by batchq_config_doc --update README.md; edit the table there -->\n";
const char* const k_end = "<!-- END config-reference -->\n";

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
    std::printf("  { name = %s, kind = %s, lo = %.17g, hi = %.17g, unbounded_lo = %s, clamp = %s, "
                "required = %s, choices = { %s}, default = %s },\n",
                lua_string(k.name).c_str(), lua_string(kind_name(k.kind)).c_str(), k.lo, k.hi,
                k.unbounded_lo ? "true" : "false", k.clamp ? "true" : "false", k.required ? "true" : "false",
                choices.c_str(), lua_string(k.default_json).c_str());
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
  std::ifstream in(argv[2], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[2]);
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  const auto b = text.find(k_begin);
  const auto e = b == std::string::npos ? b : text.find(k_end, b);
  if (e == std::string::npos) {
    std::fprintf(stderr, "%s: %s has no generated section; put these two lines where the table goes:\n%s%s", argv[0],
                 argv[2], k_begin, k_end);
    return 1;
  }
  const auto body = b + std::string(k_begin).size();
  const std::string current = text.substr(body, e - body);
  if (mode == "--check") {
    if (current == table) {
      std::printf("%s: the configuration reference is current\n", argv[2]);
      return 0;
    }
    std::fprintf(stderr,
                 "%s: the configuration reference differs from lib/config.cpp's table of keys; regenerate it with\n"
                 "  <build>/tests/batchq_config_doc --update %s\n--- in %s:\n%s--- generated:\n%s",
                 argv[2], argv[2], argv[2], current.c_str(), table.c_str());
    return 1;
  }
  text.replace(body, e - body, table);
  std::ofstream out(argv[2], std::ios::binary | std::ios::trunc);
  out << text;
  return out ? 0 : 1;
}
