/* Minimal assertions for the C tests of the C ABI (each test is its own
 * program: the counters live in the including file). The summary line
 * "N passed, N failed" is what CI reads. */
#ifndef BATCHQ_TEST_CHECK_H
#define BATCHQ_TEST_CHECK_H

#include <stdio.h>

#include "batchq.h"

static int passed = 0, failed = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (cond) {                                                              \
      ++passed;                                                              \
    } else {                                                                 \
      ++failed;                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                        \
  } while (0)

#define CHECK_RC(expr, want)                                                          \
  do {                                                                                \
    int rc_ = (expr);                                                                 \
    if (rc_ == (want)) {                                                              \
      ++passed;                                                                       \
    } else {                                                                          \
      ++failed;                                                                       \
      fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d\n", __FILE__, __LINE__, \
              #expr, rc_, batchq_strerror(rc_), (int)(want));                         \
    }                                                                                 \
  } while (0)

#endif /* BATCHQ_TEST_CHECK_H */
