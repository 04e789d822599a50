#include "batchq/sender.hpp"

namespace batchq {

// Out of line so the vtable and type_info have one home: the library.
sender::~sender() = default;

process_result send_result::to_process_result() const {
  if (ok) return process_result::success();
  if (permanent) return process_result::reject(error, permanent_reason);
  return process_result::failure(error, retry_after);
}

}  // namespace batchq
