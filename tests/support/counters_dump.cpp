// batchq_counters_dump: the counter table (batchq/detail/counters.hpp).
//   batchq_counters_dump                    "<group> <c_field>" lines (for
//                                           tests/lua/test_cdef.lua)
//   batchq_counters_dump --markdown         the README's counter reference
//   batchq_counters_dump --check README.md  exit 1 if README.md's generated
//                                           section differs (ctest counter_reference)
//   batchq_counters_dump --update README.md rewrite that section in place
#include <cstdio>
#include <string>

#include "batchq/detail/counters.hpp"
#include "support/readme_section.hpp"

namespace {

// One row: batchq_stats_t / Lua field, JSON key, Prometheus metric, meaning.
#define BQ_JSON_KEY_queue(m, c) #c
#define BQ_JSON_KEY_total(m, c) #c
#define BQ_JSON_KEY_buffer(m, c) #c
#define BQ_JSON_KEY_spool(m, c) "spool." #m
#define BQ_JSON_KEY_reason(m, c) #c ".<reason>"
#define BQ_JSON_KEY_result(m, c) #c ".<result>"
#define BQ_C_FIELD_reason(c) #c "[reason]"
#define BQ_C_FIELD_result(c) #c "_full`, `" #c "_too_large`, `" #c "_invalid_json`, `" #c "_shutdown"
#define BQ_C_FIELD_queue(c) #c
#define BQ_C_FIELD_total(c) #c
#define BQ_C_FIELD_buffer(c) #c
#define BQ_C_FIELD_spool(c) #c
#define BQ_LABEL_reason "{reason}"
#define BQ_LABEL_result "{result}"
#define BQ_LABEL_queue ""
#define BQ_LABEL_total ""
#define BQ_LABEL_buffer ""
#define BQ_LABEL_spool ""
#define BQ_MD(g, m, c, p, t, h)                                                                     \
  out += std::string("| `") + BQ_C_FIELD_##g(c) + "` | `" + BQ_JSON_KEY_##g(m, c) + "` | " +        \
         (p[0] ? std::string("`batchq_") + p + BQ_LABEL_##g + "` " #t : std::string("(sum of the family)")) + \
         " | " + h + " |\n";

std::string markdown() {
  std::string out = "| `batchq_stats_t`, Lua | JSON | Prometheus | meaning |\n|---|---|---|---|\n";
  BATCHQ_COUNTERS(BQ_MD)
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) {
#define BQ_PRINT(g, m, c, p, t, h) std::printf("%s %s\n", #g, #c);
    BATCHQ_COUNTERS(BQ_PRINT)
    return 0;
  }
  const std::string mode = argv[1];
  if (mode == "--markdown") {
    std::fputs(markdown().c_str(), stdout);
    return 0;
  }
  if ((mode != "--check" && mode != "--update") || argc != 3) {
    std::fprintf(stderr, "usage: %s [--markdown | --check README.md | --update README.md]\n", argv[0]);
    return 2;
  }
  return batchq_test::readme_section("batchq_counters_dump", mode, argv[2], "counter-reference", markdown());
}
