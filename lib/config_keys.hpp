// The configuration keys of parse_http_log_config (lib/config.cpp), as data:
// for the README's generated configuration reference and for the tests that
// check the reference, the parser and the Kong plugin's schema against it.
// Private to lib/ and the tests; the table itself lives in lib/config.cpp.
#ifndef BATCHQ_LIB_CONFIG_KEYS_HPP
#define BATCHQ_LIB_CONFIG_KEYS_HPP

#include <string>
#include <string_view>
#include <vector>

#include "batchq/http_log.hpp"

namespace batchq::detail {

enum class config_kind {
  string,   ///< a JSON string
  choice,   ///< a JSON string, one of `choices`
  boolean,  ///< true or false
  integer,  ///< a JSON integer in [lo, hi] (or clamped to hi, see clamp)
  seconds,  ///< a JSON number of seconds in [lo, hi] (fractions allowed)
  millis,   ///< a JSON number of milliseconds in [lo, hi] (fractions allowed)
  object,   ///< a JSON object (headers)
};

/// One key, as the parser takes it.
struct config_key_info {
  std::string name;
  std::string section;  ///< "Kong http-log", "queue", "HTTP", "spool", "pull buffers"
  config_kind kind = config_kind::string;
  /// Accepted numbers. lo_open: lo itself is refused (e.g. "> 0").
  /// unbounded_lo: any value below hi is taken (and mapped, see doc).
  double lo = 0, hi = 0;
  bool unbounded_lo = false;
  /// Values above hi are taken and clamped to hi instead of refused.
  bool clamp = false;
  std::vector<std::string> choices;  ///< config_kind::choice
  /// The default as a JSON value ("" when the key has none: required, or
  /// unset means off), read from a default http_log_options.
  std::string default_json;
  bool required = false;
  std::string doc;  ///< the README's "meaning" cell (Markdown)
};

/// Every key, in the order of the reference.
std::vector<config_key_info> config_keys();

/// The value `key` has in `o`, as the JSON the parser takes for it ("" for
/// an unknown key): parse_http_log_config({key: config_value(o, key)})
/// gives o's value back.
std::string config_value(const http_log_options& o, std::string_view key);

/// The README's configuration reference: a Markdown table, one row per key.
std::string config_reference_markdown();

}  // namespace batchq::detail

#endif  // BATCHQ_LIB_CONFIG_KEYS_HPP
