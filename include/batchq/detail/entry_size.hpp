// batchq/detail/entry_size.hpp - the default size of an entry in bytes.
#ifndef BATCHQ_DETAIL_ENTRY_SIZE_HPP
#define BATCHQ_DETAIL_ENTRY_SIZE_HPP

#include <cstddef>
#include <type_traits>
#include <utility>

namespace batchq {
namespace detail {

template <class T, class = void>
struct has_size : std::false_type {};
template <class T>
struct has_size<T, std::void_t<decltype(std::declval<const T&>().size())>> : std::true_type {};

// entry.size() if T has it, else sizeof(T).
template <class T>
std::size_t default_size(const T& v) noexcept {
  if constexpr (has_size<T>::value) {
    return static_cast<std::size_t>(v.size());
  } else {
    (void)v;
    return sizeof(T);
  }
}

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_DETAIL_ENTRY_SIZE_HPP
