// batchq/detail/heavy_fence.hpp - the heavy half of an asymmetric fence:
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) on Linux.
//
// When heavy_fence() returns, every other thread of this process has passed
// through a full memory barrier since the call began (a running thread by an
// IPI, a thread that was not running by its next context switch): whatever
// it stored before that point is visible to the caller, and whatever the
// caller stored before the call is visible to its loads after that point.
// A thread that pairs with it needs only a compiler barrier between its
// store and its load (std::atomic_signal_fence) instead of a full fence.
// docs/intake.md, "Light pushes", says where the intake uses it.
//
// Available when the kernel offers the command and lets this process
// register for it (once per process; the registration survives fork()).
// Elsewhere, or when BATCHQ_NO_HEAVY_FENCE is defined, heavy_fence_available()
// is false and the intake keeps a full fence on every push.
#ifndef BATCHQ_DETAIL_HEAVY_FENCE_HPP
#define BATCHQ_DETAIL_HEAVY_FENCE_HPP

#if defined(__linux__) && !defined(BATCHQ_NO_HEAVY_FENCE) && __has_include(<linux/membarrier.h>)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#define BATCHQ_HAVE_MEMBARRIER 1
#else
#define BATCHQ_HAVE_MEMBARRIER 0
#endif

namespace batchq {
namespace detail {

#if BATCHQ_HAVE_MEMBARRIER
inline long membarrier_call(int cmd) noexcept { return ::syscall(__NR_membarrier, cmd, 0, 0); }
#endif

// Whether heavy_fence() works in this process (registers on first call).
inline bool heavy_fence_available() noexcept {
#if BATCHQ_HAVE_MEMBARRIER
  static const bool ok = [] {
    const long cmds = membarrier_call(MEMBARRIER_CMD_QUERY);
    if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
    if (membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) return false;
    return membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

// True when the barrier happened. Only call when heavy_fence_available().
inline bool heavy_fence() noexcept {
#if BATCHQ_HAVE_MEMBARRIER
  return membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0;
#else
  return false;
#endif
}

}  // namespace detail
}  // namespace batchq

#endif  // BATCHQ_DETAIL_HEAVY_FENCE_HPP
