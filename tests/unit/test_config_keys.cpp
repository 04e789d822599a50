// The one table of configuration keys (lib/config.cpp) is what the parser
// does: every key is known, its documented default is what leaving it out
// gives, its documented range is what is accepted, refused or clamped, and
// its choices are the accepted strings (label: unit). The README reference is
// generated from the same table (ctest config_reference).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "batchq/http_log.hpp"
#include "config_keys.hpp"
#include "support/catch.hpp"

using batchq::http_log_options;
using batchq::options_error;
using batchq::parse_http_log_config;
using batchq::detail::config_key_info;
using batchq::detail::config_keys;
using batchq::detail::config_kind;
using batchq::detail::config_value;

namespace {

const std::string k_endpoint = R"("http_endpoint":"http://127.0.0.1:9/")";

std::string with(const std::string& key, const std::string& value) {
  if (key == "http_endpoint") return "{\"http_endpoint\":" + value + "}";
  return "{" + k_endpoint + ",\"" + key + "\":" + value + "}";
}

// "" when accepted, else the error's message.
std::string refusal(const std::string& json, http_log_options* out = nullptr) {
  try {
    http_log_options o = parse_http_log_config(json);
    if (out) *out = o;
    return "";
  } catch (const options_error& e) {
    return e.what();
  }
}

std::string num(double d) {
  if (d >= 9223372036854775807.0) return "9223372036854775807";  // INT64_MAX, as an integer literal
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

// The next value past d, in the key's step (1 for integers and ms).
std::string beyond(const config_key_info& k, double d, int dir) {
  if (dir > 0 && d >= 9223372036854775807.0) return "9223372036854775808";
  const double step = k.kind == config_kind::seconds ? 0.0005 : 1;
  return num(d + dir * step);
}

}  // namespace

TEST_CASE("the table has every key once, and each one is a key the parser knows", "[config]") {
  const auto keys = config_keys();
  REQUIRE(keys.size() > 40);
  std::vector<std::string> seen;
  for (const auto& k : keys) {
    INFO(k.name);
    CHECK(std::find(seen.begin(), seen.end(), k.name) == seen.end());
    seen.push_back(k.name);
    CHECK(!k.doc.empty());
    // A misspelled key is refused as unknown; the key itself never is.
    CHECK(refusal(with(k.name + "_x", "1")).find("unknown key") != std::string::npos);
    CHECK(refusal(with(k.name, "null")).find("unknown key") == std::string::npos);
  }
}

TEST_CASE("each key's documented default is what leaving the key out gives", "[config]") {
  http_log_options base;
  REQUIRE(refusal("{" + k_endpoint + "}", &base).empty());
  for (const auto& k : config_keys()) {
    if (k.default_json.empty()) continue;  // required, or unset = off
    INFO(k.name << " = " << k.default_json);
    http_log_options o;
    REQUIRE(refusal(with(k.name, k.default_json), &o).empty());
    for (const auto& other : config_keys()) {
      INFO("then " << other.name);
      CHECK(config_value(o, other.name) == config_value(base, other.name));
    }
  }
}

TEST_CASE("each key takes its documented range and refuses (or clamps) what is outside it", "[config]") {
  for (const auto& k : config_keys()) {
    INFO(k.name);
    switch (k.kind) {
      case config_kind::integer:
      case config_kind::seconds:
      case config_kind::millis: {
        CHECK(refusal(with(k.name, "\"1\"")).find(k.name + ": must be") == 0);
        http_log_options o;
        if (!k.unbounded_lo) {
          CHECK(refusal(with(k.name, num(k.lo))) == "");
          const std::string below = refusal(with(k.name, beyond(k, k.lo, -1)));
          CHECK(below.find(k.name + ": must be") == 0);
        } else {
          CHECK(refusal(with(k.name, "-1000")) == "");
        }
        CHECK(refusal(with(k.name, num(k.hi)), &o) == "");
        const std::string at_hi = config_value(o, k.name);
        if (k.clamp) {
          http_log_options over;
          CHECK(refusal(with(k.name, beyond(k, k.hi, +1)), &over) == "");
          CHECK(config_value(over, k.name) == at_hi);
        } else {
          CHECK(refusal(with(k.name, beyond(k, k.hi, +1))).find(k.name + ": must be") == 0);
        }
        break;
      }
      case config_kind::choice: {
        REQUIRE(k.choices.size() >= 2);
        for (const auto& c : k.choices) {
          http_log_options o;
          CHECK(refusal(with(k.name, "\"" + c + "\""), &o) == "");
          CHECK(config_value(o, k.name) == "\"" + c + "\"");
        }
        const std::string e = refusal(with(k.name, "\"none_of_them\""));
        std::string listed;
        for (const auto& c : k.choices) listed += (listed.empty() ? "" : ", ") + c;
        CHECK(e == k.name + ": must be one of " + listed + ", got \"none_of_them\"");
        break;
      }
      case config_kind::boolean: {
        http_log_options t, f;
        CHECK(refusal(with(k.name, "true"), &t) == "");
        CHECK(refusal(with(k.name, "false"), &f) == "");
        CHECK(config_value(t, k.name) == "true");
        CHECK(config_value(f, k.name) == "false");
        CHECK(refusal(with(k.name, "1")).find(k.name + ": must be true or false") == 0);
        break;
      }
      case config_kind::string: CHECK(refusal(with(k.name, "1")).find(k.name + ": must be a string") == 0); break;
      case config_kind::object: CHECK(refusal(with(k.name, "1")).find(k.name + ": must be an object") == 0); break;
    }
  }
}

TEST_CASE("the reference has one row per key, with its default", "[config]") {
  const std::string md = batchq::detail::config_reference_markdown();
  for (const auto& k : config_keys()) {
    INFO(k.name);
    const auto at = md.find("| `" + k.name + "` |");
    REQUIRE(at != std::string::npos);
    const std::string row = md.substr(at, md.find('\n', at) - at);
    if (k.required)
      CHECK(row.find("| required |") != std::string::npos);
    else if (!k.default_json.empty())
      CHECK(row.find("| `" + k.default_json + "` |") != std::string::npos);
  }
}
