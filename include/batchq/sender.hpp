// batchq/sender.hpp - the interface between a batch and the wire.
//
// A `sender` takes one finished request body (a whole batch, already built by
// build_payload()) and reports what happened as a `send_result`. The queue's
// process function calls it and converts the result with
// send_result::to_process_result(). http_sender (batchq/http_sender.hpp) is
// the libcurl implementation; tests and hosts inject their own fakes by
// deriving from `sender`.
//
// Standard library only: neither libcurl nor RapidJSON appears here.
#ifndef BATCHQ_SENDER_HPP
#define BATCHQ_SENDER_HPP

#include <chrono>
#include <string>
#include <string_view>

#include "batchq/export.hpp"
#include "batchq/types.hpp"

namespace batchq {

/// The outcome of one send() call (one attempt at one batch).
struct BATCHQ_CXX_API send_result {
  /// true: the receiver accepted the body (HTTP 2xx).
  bool ok = false;
  /// The HTTP status of the final response, or 0 when no response arrived
  /// (connection refused, TLS failure, timeout, reset, cancellation).
  int status = 0;
  /// "" on success. Otherwise Kong's wording, e.g.
  ///   "request to host:8080 returned status code 500 and body oops"
  ///   "failed request to host:8080: Couldn't connect to server"
  /// Never contains credentials from the endpoint URL or the headers.
  std::string error;
  /// With status 429 or 503: the wait the server asked for in Retry-After
  /// (delta-seconds or HTTP-date), else 0.
  std::chrono::milliseconds retry_after{0};
  /// true: retrying cannot help (e.g. HTTP 400 with drop_permanent_4xx on);
  /// the queue drops the batch at once with `permanent_reason`.
  bool permanent = false;
  /// Why a permanent failure drops the batch (too_large for HTTP 413).
  drop_reason permanent_reason = drop_reason::rejected;

  /// What the queue's process function returns for this result:
  /// success(), reject(error, permanent_reason) when `permanent`, otherwise
  /// failure(error, retry_after). Copies `error`.
  process_result to_process_result() const;
};

/// Sends one request body somewhere. Implementations decide the transport.
///
/// Thread-safety: an implementation may assume that send() is never called
/// concurrently on the same object (one sender per sending thread, as the
/// queue's workers do); different objects may be used from different threads.
class BATCHQ_CXX_API sender {
 public:
  virtual ~sender();

  /// Delivers `body` (not retained after the call returns) and blocks until
  /// the outcome is known. `ctx` (may be null; not retained) is the queue's
  /// attempt context: when ctx->cancelled() becomes true the implementation
  /// should give up promptly and return a failure. Must not throw for
  /// delivery problems: those are failures in the result.
  virtual send_result send(std::string_view body, const attempt_context* ctx = nullptr) = 0;

 protected:
  sender() = default;
  sender(const sender&) = default;
  sender(sender&&) = default;
  sender& operator=(const sender&) = default;
  sender& operator=(sender&&) = default;
};

}  // namespace batchq

#endif  // BATCHQ_SENDER_HPP
