/* batchq version: the one place the version is written.
 * Pure C so that both the C++ headers and capi/batchq.h can include it;
 * CMakeLists.txt parses the three numbers below. */
#ifndef BATCHQ_VERSION_H
#define BATCHQ_VERSION_H

#define BATCHQ_VERSION_MAJOR 0
#define BATCHQ_VERSION_MINOR 1
#define BATCHQ_VERSION_PATCH 0

/* MAJOR*10000 + MINOR*100 + PATCH, for #if comparisons. */
#define BATCHQ_VERSION_NUMBER \
  (BATCHQ_VERSION_MAJOR * 10000 + BATCHQ_VERSION_MINOR * 100 + BATCHQ_VERSION_PATCH)

#define BATCHQ_STRINGIFY_(x) #x
#define BATCHQ_STRINGIFY(x) BATCHQ_STRINGIFY_(x)
/* "0.1.0" */
#define BATCHQ_VERSION_STRING                                    \
  BATCHQ_STRINGIFY(BATCHQ_VERSION_MAJOR) "." BATCHQ_STRINGIFY(   \
      BATCHQ_VERSION_MINOR) "." BATCHQ_STRINGIFY(BATCHQ_VERSION_PATCH)

#endif /* BATCHQ_VERSION_H */
