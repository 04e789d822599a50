// sender_pool: the sending side of an http_log: up to `max_parallel`
// requests at once on libcurl's multi interface, driven by the queue's own
// worker threads (no thread of its own).
//
// Over https, one multi handle runs every request (its shared cache of
// keep-alive connections; HTTP/2 streams multiplexed on one connection where
// the endpoint offers h2): one of the waiting workers at a time drives it for
// all of them (leader/followers, see sender_pool.cpp). Over plain http
// (always HTTP/1.1 here: one request per connection at a time) each worker
// drives its own request on a lane of its own (a multi handle with one
// kept-alive connection): no hand-off between threads at all. Either way at
// most `max_parallel` connections.
//
// The queue's worker threads hand it batches: send() returns the outcome,
// so batch_queue's model (a worker calls process() and gets a result) is
// unchanged. Internal to lib/.
#ifndef BATCHQ_LIB_SENDER_POOL_HPP
#define BATCHQ_LIB_SENDER_POOL_HPP

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "batchq/http_sender.hpp"

namespace batchq::detail {

class sender_pool {
 public:
  // Validates the options (options_error). Starts no thread.
  sender_pool(http_sender_options options, std::size_t max_parallel);
  // Only once no send() is in progress.
  ~sender_pool();
  sender_pool(const sender_pool&) = delete;
  sender_pool& operator=(const sender_pool&) = delete;

  // Sends one request whose body is `pieces` concatenated (see
  // payload_pieces; nothing is copied: the bytes must stay valid until this
  // returns) and waits for its outcome. Any thread; several at once. A
  // cancelled `ctx` aborts the transfer within ~100 ms.
  send_result send(const std::vector<std::string_view>& pieces, const attempt_context* ctx);

  std::size_t max_parallel() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace batchq::detail

#endif  // BATCHQ_LIB_SENDER_POOL_HPP
