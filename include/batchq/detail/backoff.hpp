// batchq/detail/backoff.hpp - the backoff wait as a pure function of the
// number of consecutive failed attempts and the options (no clock, no state,
// no randomness: jitter and Retry-After are applied by the queue on top).
#ifndef BATCHQ_DETAIL_BACKOFF_HPP
#define BATCHQ_DETAIL_BACKOFF_HPP

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "batchq/types.hpp"

namespace batchq {
namespace detail {

/// The wait before the next attempt after `failures` consecutive failed
/// attempts of the queue (1 = the first failure since the last success; the
/// count is queue-wide, as Kong 2.x's retry_delay is). Always
/// min(max_retry_delay, what the policy computes):
///  - kong_quadratic (Kong 2.x batch_queue): retry_delay starts at 1 and grows
///    by one per failure; the wait is retry_delay^2 seconds: 4, 9, 16, ... s.
///  - exponential (Kong 3.x queue): initial_retry_delay x 2^(failures - 1):
///    Kong sleeps 2^retry_count x initial_retry_delay with retry_count 0 on
///    the first retry.
/// Saturating: any `failures` (even UINT64_MAX) gives a wait in [0, cap],
/// never an overflowed tick count. failures == 0 gives 0 (no failure, no wait).
inline clock::duration backoff_delay(std::uint64_t failures, const batch_queue_options& o) noexcept {
  using duration = clock::duration;
  const duration cap = std::max<duration>(duration::zero(), o.max_retry_delay);
  if (failures == 0) return duration::zero();
  if (o.backoff == backoff_policy::kong_quadratic) {
    // (failures + 1)^2 seconds; past 2^16 seconds squared it is beyond any
    // cap a clock of nanoseconds can hold, so the count saturates there.
    const std::uint64_t n = std::min<std::uint64_t>(failures, 65535) + 1;
    const duration w = std::chrono::seconds(static_cast<std::int64_t>(n * n));
    return std::min(w, cap);
  }
  // initial x 2^(failures - 1), saturating at the cap: the product is never
  // formed when it would pass the cap (it would overflow the clock's tick
  // count after ~40 doublings: signed overflow, a negative wait).
  const std::uint64_t doublings = failures - 1;
  const duration first = std::max<duration>(duration::zero(), o.initial_retry_delay);
  if (doublings < 62 && first.count() <= (cap.count() >> doublings)) return first * (std::int64_t{1} << doublings);
  return cap;
}

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_DETAIL_BACKOFF_HPP
