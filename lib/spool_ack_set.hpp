// lib/spool_ack_set.hpp - the set of acknowledged seqs of a spool, private to
// the compiled library. In memory only: the spool persists just its mark
// (the ACK file, docs/spool-format.md).
#ifndef BATCHQ_LIB_SPOOL_ACK_SET_HPP
#define BATCHQ_LIB_SPOOL_ACK_SET_HPP

#include <cstdint>
#include <map>

namespace batchq {
namespace detail {

/// Acknowledged seqs: everything <= mark, plus disjoint, non-adjacent ranges
/// above mark + 1 (acks that arrived out of order, seqs lost to damage).
/// Not thread-safe: the spool guards it with its ack mutex.
struct ack_set {
  std::uint64_t mark = 0;
  std::map<std::uint64_t, std::uint64_t> ranges;  // first -> last

  bool contains(std::uint64_t seq) const noexcept {
    if (seq <= mark) return true;
    auto it = ranges.upper_bound(seq);
    if (it == ranges.begin()) return false;
    --it;
    return seq <= it->second;
  }

  /// Adds [first, last] (ignored when first > last); the mark advances over
  /// the contiguous prefix.
  void add(std::uint64_t first, std::uint64_t last);

  /// Everything <= m is acknowledged (a mark read from disk, segments gone).
  void raise_mark(std::uint64_t m);
};

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_LIB_SPOOL_ACK_SET_HPP
