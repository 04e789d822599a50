// batchq/detail/fork.hpp - fork() detection and what a child must keep.
#ifndef BATCHQ_DETAIL_FORK_HPP
#define BATCHQ_DETAIL_FORK_HPP

#include <atomic>
#include <memory>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>  // pthread_atfork: fork() detection
#endif

namespace batchq {
namespace detail {

// fork() detection: a counter the child side of every fork() increments
// (pthread_atfork, registered once per copy of this header's code). A queue
// remembers the value at creation; a different value means "we are a child
// of the process that created it": its threads did not come along.
inline std::atomic<unsigned>& fork_generation() noexcept {
  static std::atomic<unsigned> generation{0};  // constant-initialised: no guard on the hot path
  return generation;
}
inline unsigned fork_generation_now() noexcept {
#if defined(__unix__) || defined(__APPLE__)
  static const bool registered =
      ::pthread_atfork(nullptr, nullptr, [] { fork_generation().fetch_add(1, std::memory_order_relaxed); }) == 0;
  (void)registered;
#endif
  return fork_generation().load(std::memory_order_relaxed);
}

// What a child after fork() must neither destroy nor free (locks and
// condition variables of the parent's threads, their std::thread objects):
// kept reachable from a static list, so leak checkers do not report it.
inline void keep_forever(std::shared_ptr<void> p) noexcept {
  struct node {
    std::shared_ptr<void> p;
    node* next;
  };
  static std::atomic<node*> head{nullptr};
  try {
    node* n = new node{std::move(p), head.load()};
    while (!head.compare_exchange_weak(n->next, n)) {
    }
  } catch (...) {
    new std::shared_ptr<void>(std::move(p));  // out of memory: leak it plainly
  }
}

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_DETAIL_FORK_HPP
