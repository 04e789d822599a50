// batchq_counters_dump: prints the counter table (batchq/detail/counters.hpp)
// as "<group> <c_field>" lines, for tests/lua/test_cdef.lua.
#include <cstdio>

#include "batchq/detail/counters.hpp"

int main() {
#define BQ_PRINT(g, m, c, p, t, h) std::printf("%s %s\n", #g, #c);
  BATCHQ_COUNTERS(BQ_PRINT)
  return 0;
}
