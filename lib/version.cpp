#include "batchq/version.hpp"

namespace batchq {

const char* version() noexcept { return BATCHQ_VERSION_STRING; }

}  // namespace batchq
