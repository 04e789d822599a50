#include "spool_ack_set.hpp"

#include <algorithm>
#include <iterator>

namespace batchq {
namespace detail {

void ack_set::add(std::uint64_t first, std::uint64_t last) {
  if (last <= mark || first > last) return;
  first = std::max(first, mark + 1);
  auto it = ranges.upper_bound(first);
  if (it != ranges.begin()) {
    auto p = std::prev(it);
    if (p->second + 1 >= first) {
      first = p->first;
      last = std::max(last, p->second);
      it = ranges.erase(p);
    }
  }
  while (it != ranges.end() && it->first <= last + 1) {
    last = std::max(last, it->second);
    it = ranges.erase(it);
  }
  if (first <= mark + 1) {
    mark = last;
  } else {
    ranges.emplace(first, last);
  }
}

void ack_set::raise_mark(std::uint64_t m) {
  if (m <= mark) return;
  mark = m;
  while (!ranges.empty() && ranges.begin()->first <= mark + 1) {
    mark = std::max(mark, ranges.begin()->second);
    ranges.erase(ranges.begin());
  }
}

}  // namespace detail
}  // namespace batchq
