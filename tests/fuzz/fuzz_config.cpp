// tests/fuzz/fuzz_config.cpp - libFuzzer target: the JSON configuration parser
// (batchq::parse_http_log_config, what batchq_new() and the Kong plugin feed).
//
// Property: for any bytes, the parser either returns options that validate()
// accepts, or throws batchq::options_error with a message that starts with
// the field it names. Anything else (another exception, a crash, UB, a leak)
// is a finding. Nothing is opened: parsing touches neither disk nor network.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "batchq/http_log.hpp"

namespace {

[[noreturn]] void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_config: %s: %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  try {
    const batchq::http_log_options o = batchq::parse_http_log_config(json);
    std::string field;
    const std::string err = batchq::validate(o, &field);
    if (!err.empty()) finding("parsed options do not validate", err);
    if (o.http.http_endpoint.empty()) finding("parsed options without http_endpoint", "");
  } catch (const batchq::options_error& e) {
    const std::string msg = e.what();
    if (msg.empty()) finding("options_error with an empty message", "");
    // "<field>: ..." when a field is named.
    if (!e.field().empty() && msg.compare(0, e.field().size() + 1, e.field() + ":") != 0)
      finding("options_error message does not start with its field", e.field() + " / " + msg);
  } catch (const std::exception& e) {
    finding("unexpected exception type", e.what());
  } catch (...) {
    finding("unexpected non-std exception", "");
  }
  return 0;
}
