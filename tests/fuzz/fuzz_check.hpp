// tests/fuzz/fuzz_check.hpp - FUZZ_CHECK(cond): a property of a fuzz target.
// A failed one prints where and what, and aborts, which libFuzzer reports as
// a crash and keeps the input for.
#ifndef BATCHQ_TESTS_FUZZ_CHECK_HPP
#define BATCHQ_TESTS_FUZZ_CHECK_HPP

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

#endif  // BATCHQ_TESTS_FUZZ_CHECK_HPP
