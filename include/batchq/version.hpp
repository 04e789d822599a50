// batchq/version.hpp - compile-time and run-time version of the C++ library.
#ifndef BATCHQ_VERSION_HPP
#define BATCHQ_VERSION_HPP

#include "batchq/export.hpp"
#include "batchq/version.h"

namespace batchq {

/// The version of the compiled library (batchq::batchq) as "MAJOR.MINOR.PATCH";
/// compare with BATCHQ_VERSION_STRING to detect a header/library mismatch.
BATCHQ_CXX_API const char* version() noexcept;

}  // namespace batchq

#endif  // BATCHQ_VERSION_HPP
