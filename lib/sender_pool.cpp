#include "sender_pool.hpp"

#include <curl/curl.h>
#include <poll.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "http_transfer.hpp"

namespace batchq::detail {

namespace {

// Wakes one sleeping thread, outside any lock: a binary semaphore on a
// futex word. A condition variable notified under mu (needed when the waiter
// owns the memory) made the woken thread block again at once on mu, still
// held by the waker: four futex calls per hand-off instead of two. Parkers
// belong to the pool (not to a job's stack frame), so an unpark() that comes
// late finds live memory; a late token only makes the next park() of
// whoever holds the parker return early, and every park() is in a loop that
// re-checks its condition under mu.
class parker {
 public:
  void park() noexcept {
    while (word_.exchange(0, std::memory_order_acquire) == 0)
      syscall(SYS_futex, &word_, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
  }
  void unpark() noexcept {
    if (word_.exchange(1, std::memory_order_release) == 0)
      syscall(SYS_futex, &word_, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }

 private:
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "a futex word is 32 bits");
  std::atomic<std::uint32_t> word_{0};
};

// One send() call, living on its caller's stack until `done`.
struct job {
  const std::vector<std::string_view>* pieces = nullptr;
  const attempt_context* ctx = nullptr;
  send_result result;             // written by the driver under mu, then `done`
  bool done = false;              // under mu
  bool waiting = false;           // under mu: its thread sleeps on `pk` (a follower)
  parker* pk = nullptr;           // its thread's while it waits: done, or the driver role offered
  http_transfer* transfer = nullptr;  // the driver's
};

// Leader/followers: whichever sending thread finds nobody driving the multi
// handle drives it - every transfer in flight, not only its own - until its
// own is done, then hands the role to a waiting thread. So one thread at a
// time runs all requests on one multi handle (one connection cache, HTTP/2
// streams on one connection), without a thread of its own: at concurrency 1
// the worker drives its own request with no hand-off between threads, and
// at N a request finishing on the driver needs no wake-up of another thread
// to start the next one (its worker submits it and the driver picks it up).
struct engine {
  std::shared_ptr<const http_target> target;
  std::size_t max_parallel;
  CURLM* multi = nullptr;

  // Every wake-up names its thread: a finished job wakes its own sender
  // (its parker), a free driver role wakes one follower whose job is not
  // done. One shared condition variable with notify_all woke every follower
  // on every completion (at queue_size 1, four threads per request, each then
  // queueing on mu): most of the sender's CPU was futex and scheduler time.
  std::mutex mu;
  std::vector<job*> incoming;  // under mu
  std::vector<job*> waiters;   // under mu: followers asleep on their job's parker
  std::vector<std::unique_ptr<parker>> parkers;  // under mu: the spare ones
  bool driving = false;        // under mu: a thread holds the driver role
  bool polling = false;        // under mu: the driver sleeps in poll()
  bool woken = false;          // under mu: a wake-up (wake_fd) is on its way

  // The driver's own (handed from driver to driver under mu).
  std::vector<std::unique_ptr<http_transfer>> idle;
  std::vector<job*> active;
  // libcurl's event interface (curl_multi_socket_action): the sockets it
  // wants watched are kept by on_socket and polled here; when its timers
  // are due is asked with curl_multi_timeout after every call (a timer
  // callback is skipped by libcurl when the next expiry is unchanged).
  // curl_multi_perform instead re-polls every transfer's socket with a zero
  // timeout on every call (libcurl 7.x Curl_readwrite): about five poll()
  // calls per request at queue_size 1. socket_action is told what is ready.
  std::vector<pollfd> socks;  // events wanted per socket (revents unused)
  // drive()'s scratch, kept so that a request allocates nothing here.
  std::vector<job*> fresh;
  std::vector<pollfd> fds;
  int wake_fd = -1;  // eventfd: a sender's new job, for the driver's poll
  // A lane: used by one sending thread at a time (sender_pool::impl hands it
  // out under its mutex), so no other thread ever submits a job while it
  // polls: the poll watches libcurl's sockets only, without the eventfd (and
  // without marking itself as polling, which only another sender reads).
  const bool alone;

  engine(std::shared_ptr<const http_target> t, std::size_t n, bool lane)
      : target(std::move(t)), max_parallel(std::max<std::size_t>(1, n)), alone(lane) {
    idle.push_back(std::make_unique<http_transfer>(target));
    multi = curl_multi_init();
    if (!multi) throw std::runtime_error("batchq: cannot create a libcurl handle");
    const long limit = static_cast<long>(max_parallel);
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, limit);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, limit);
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &engine::on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) {
      curl_multi_cleanup(multi);
      throw std::runtime_error(std::string("batchq: cannot create an eventfd: ") + std::strerror(errno));
    }
  }

  // Called by libcurl on the driver's thread, inside curl_multi_* calls; no
  // lock of ours is held.
  static int on_socket(CURL*, curl_socket_t fd, int what, void* self, void*) {
    auto& socks = static_cast<engine*>(self)->socks;
    const auto it = std::find_if(socks.begin(), socks.end(), [fd](const pollfd& p) { return p.fd == fd; });
    if (what == CURL_POLL_REMOVE) {
      if (it != socks.end()) socks.erase(it);
      return 0;
    }
    short events = 0;
    if (what & CURL_POLL_IN) events |= POLLIN;
    if (what & CURL_POLL_OUT) events |= POLLOUT;
    if (it != socks.end()) {
      it->events = events;
    } else {
      socks.push_back(pollfd{fd, events, 0});
    }
    return 0;
  }

  // Runs when no send() is in progress (the owner has stopped its workers).
  ~engine() {
    while (!active.empty()) complete(active.back(), CURLE_ABORTED_BY_CALLBACK, "the sender is shutting down");
    idle.clear();  // easy handles before their multi handle's cache goes
    curl_multi_cleanup(multi);
    close(wake_fd);
  }

  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  void publish(job* j, send_result r) {
    if (alone) {  // a lane's job belongs to the thread driving it: nobody else looks
      j->result = std::move(r);
      j->done = true;
      return;
    }
    parker* wake = nullptr;
    {
      std::lock_guard<std::mutex> g(mu);
      j->result = std::move(r);
      j->done = true;
      if (j->waiting) wake = j->pk;  // j may go as soon as mu is free; the parker stays
    }
    if (wake) wake->unpark();
  }

  void start(job* j) {
    send_result early;
    try {
      std::unique_ptr<http_transfer> t;
      if (!idle.empty()) {
        t = std::move(idle.back());
        idle.pop_back();
      } else {
        t = std::make_unique<http_transfer>(target);
      }
      if (!t->begin(*j->pieces, j->ctx, &early)) {
        idle.push_back(std::move(t));
        publish(j, std::move(early));
        return;
      }
      const CURLMcode mc = curl_multi_add_handle(multi, t->easy());
      if (mc != CURLM_OK) {
        send_result r = t->finish(CURLE_FAILED_INIT, curl_multi_strerror(mc));
        idle.push_back(std::move(t));
        publish(j, std::move(r));
        return;
      }
      j->transfer = t.release();
      active.push_back(j);
    } catch (const std::exception& e) {
      early.ok = false;
      early.error = std::string("failed request to ") + target->ep.host_port + ": " + e.what();
      publish(j, std::move(early));
    }
  }

  // Ends an active job's transfer (finished, aborted or timed out).
  void complete(job* j, CURLcode rc, const std::string& multi_error) {
    std::unique_ptr<http_transfer> t(j->transfer);
    j->transfer = nullptr;
    // Removing an unfinished transfer closes its connection; a finished one
    // goes back to the shared cache for the next request.
    curl_multi_remove_handle(multi, t->easy());
    send_result r = t->finish(rc, multi_error);
    idle.push_back(std::move(t));
    active.erase(std::find(active.begin(), active.end(), j));
    publish(j, std::move(r));
  }

  // ms until libcurl's next timer (-1: none), 0 when one is due now.
  long timer_ms() {
    long ms = -1;
    if (curl_multi_timeout(multi, &ms) != CURLM_OK) ms = 0;
    return ms;
  }

  // libcurl's timers, when due (one is due at once when a transfer is added).
  // *next_ms: when the next one is due after this (-1: none), for the poll;
  // read once per call (curl_multi_timeout reads the clock).
  CURLMcode run_timer_if_due(long* next_ms) {
    *next_ms = timer_ms();
    if (*next_ms != 0) return CURLM_OK;
    int running = 0;
    const CURLMcode mc = curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    *next_ms = timer_ms();
    return mc;
  }

  void collect_done(CURLMcode mc) {
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      const auto it = std::find_if(active.begin(), active.end(),
                                   [m](const job* j) { return j->transfer->easy() == m->easy_handle; });
      if (it != active.end()) complete(*it, m->data.result, std::string());
    }
    if (mc != CURLM_OK) {
      const std::string why = curl_multi_strerror(mc);
      while (!active.empty()) complete(active.back(), CURLE_FAILED_INIT, why);
    }
  }

  // The driver's loop: every transfer in flight, until `mine` is done.
  void drive(const job& mine) {
    static constexpr int kCancelPollMs = 100;
    long next_timer_ms = -1;
    for (;;) {
      if (alone) {  // nothing comes in: its one job was started by send_alone()
        if (mine.done) return;
      } else {
        std::lock_guard<std::mutex> g(mu);
        if (mine.done) return;
        fresh.swap(incoming);
      }
      for (job* j : fresh) start(j);
      fresh.clear();
      collect_done(run_timer_if_due(&next_timer_ms));

      // Cancellation and timeout_scope::operation are ours to watch: poll
      // often enough to notice them while the server is silent.
      long long wait_ms = kCancelPollMs;
      for (std::size_t i = 0; i < active.size();) {
        job* j = active[i];
        if (j->transfer->cancelled()) {
          complete(j, CURLE_ABORTED_BY_CALLBACK, std::string());
          continue;
        }
        if (target->opts.scope == timeout_scope::operation) {
          const long long idle_left = j->transfer->idle_ms_left();
          if (idle_left <= 0) {
            complete(j, CURLE_OPERATION_TIMEDOUT, std::string());
            continue;
          }
          wait_ms = std::min(wait_ms, idle_left);
        }
        ++i;
      }
      // Transfers completed since next_timer_ms was read only take timers
      // away: at worst the poll ends early and the loop looks again.
      if (next_timer_ms >= 0) wait_ms = std::min<long long>(wait_ms, next_timer_ms);
      // A lane's own job is done under mu only by this thread (complete(),
      // above): nothing to re-check, and nobody to wake the poll.
      if (!alone) {
        std::lock_guard<std::mutex> g(mu);
        if (mine.done) return;
        if (!incoming.empty()) continue;  // start them before waiting
        polling = true;  // a sender from now on wakes the poll
      } else if (active.empty()) {
        continue;  // finished or failed to start: the loop's check returns
      }
      const std::size_t first = alone ? 0 : 1;  // fds[0]: the eventfd
      fds.clear();
      if (!alone) fds.push_back(pollfd{wake_fd, POLLIN, 0});
      fds.insert(fds.end(), socks.begin(), socks.end());
      const int n = poll(fds.data(), fds.size(), static_cast<int>(wait_ms));
      if (!alone) {
        std::lock_guard<std::mutex> g(mu);
        polling = false;
        woken = false;
      }
      CURLMcode mc = CURLM_OK;
      if (n > 0) {
        if (!alone && fds[0].revents) {
          std::uint64_t v = 0;
          while (read(wake_fd, &v, sizeof v) > 0) {
          }
        }
        for (std::size_t i = first; i < fds.size() && mc == CURLM_OK; ++i) {
          const short re = fds[i].revents;
          if (!re) continue;
          int mask = 0;
          if (re & (POLLIN | POLLHUP)) mask |= CURL_CSELECT_IN;
          if (re & POLLOUT) mask |= CURL_CSELECT_OUT;
          if (re & (POLLERR | POLLNVAL)) mask |= CURL_CSELECT_ERR;
          int running = 0;
          mc = curl_multi_socket_action(multi, fds[i].fd, mask, &running);
        }
      }
      if (mc == CURLM_OK) mc = run_timer_if_due(&next_timer_ms);
      collect_done(mc);
    }
  }

  // A lane's send(): its one job, started and driven on the calling thread,
  // with none of the hand-off machinery (incoming list, parkers, mu): no
  // other thread uses a lane while it is out of the pool.
  send_result send_alone(const std::vector<std::string_view>& pieces, const attempt_context* ctx) {
    job j;
    j.pieces = &pieces;
    j.ctx = ctx;
    start(&j);
    drive(j);  // returns at once if start() already published an outcome
    return std::move(j.result);
  }

  void wake_driver() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t w = write(wake_fd, &one, sizeof one);  // EAGAIN: a wake-up is pending anyway
  }

  // Under mu, the driver role just freed: offers it to one follower whose
  // job is still to finish (it drives every transfer in flight from then on).
  parker* role_taker_locked() const {
    for (job* w : waiters)
      if (!w->done) return w->pk;
    return nullptr;
  }

  send_result send(const std::vector<std::string_view>& pieces, const attempt_context* ctx) {
    job j;
    j.pieces = &pieces;
    j.ctx = ctx;
    std::unique_lock<std::mutex> lk(mu);
    incoming.push_back(&j);
    bool wake = false;
    for (;;) {
      if (j.done) break;
      if (!driving) {
        driving = true;
        lk.unlock();
        drive(j);
        lk.lock();
        driving = false;
        if (parker* p = role_taker_locked()) {
          lk.unlock();
          p->unpark();
          lk.lock();
        }
        continue;
      }
      if (polling && !woken) {
        // The driver starts it now rather than after its poll; once per poll.
        woken = true;
        wake = true;
      }
      if (wake) {
        wake = false;
        lk.unlock();
        wake_driver();
        lk.lock();
        continue;
      }
      if (!j.pk) {
        if (parkers.empty()) parkers.push_back(std::make_unique<parker>());
        j.pk = parkers.back().release();
        parkers.pop_back();
      }
      j.waiting = true;
      waiters.push_back(&j);
      lk.unlock();
      j.pk->park();
      lk.lock();
      waiters.erase(std::find(waiters.begin(), waiters.end(), &j));
      j.waiting = false;
    }
    if (j.pk) parkers.emplace_back(j.pk);
    return std::move(j.result);
  }
};

}  // namespace

// Over TLS, one engine for every sending thread (leader/followers above):
// its connection can carry HTTP/2 streams for all of them. Over plain http
// (HTTP/1.1: one request per connection at a time, CURL_HTTP_VERSION_2TLS
// never tries h2c) nothing is shared on the wire, so each sending thread
// takes a lane - an engine of its own with one connection, kept alive - for
// the length of its send(): it drives its own request on its own thread, and
// a request costs no hand-off between threads at all. With one engine per
// pool, every request of a follower cost two wake-ups (the driver woken to
// start it, the follower woken when it finished); at queue_size 1 that was
// most of the sending threads' CPU (bench/results.md, case 4c).
struct sender_pool::impl {
  std::shared_ptr<const http_target> target;
  std::size_t max_parallel;
  std::unique_ptr<engine> shared;  // TLS endpoints (or max_parallel 1)

  std::mutex mu;
  std::vector<std::unique_ptr<engine>> lanes;  // under mu: the free ones (plain http)

  impl(http_sender_options o, std::size_t n) : target(make_http_target(std::move(o))), max_parallel(std::max<std::size_t>(1, n)) {
    // One engine now: a libcurl that refuses an option fails here, with its
    // message, rather than on the first send.
    const bool per_thread = use_lanes();
    auto first = std::make_unique<engine>(target, per_thread ? 1 : max_parallel, per_thread);
    if (per_thread) {
      lanes.reserve(max_parallel);  // pushing a lane back never allocates
      lanes.push_back(std::move(first));
    } else {
      shared = std::move(first);
    }
  }

  bool use_lanes() const { return max_parallel > 1 && !target->ep.tls; }

  send_result send(const std::vector<std::string_view>& pieces, const attempt_context* ctx) {
    if (shared) return shared->send(pieces, ctx);
    std::unique_ptr<engine> lane;
    {
      std::lock_guard<std::mutex> g(mu);
      if (!lanes.empty()) {
        lane = std::move(lanes.back());  // the most recently used: its connection is the freshest
        lanes.pop_back();
      }
    }
    if (!lane) {
      try {
        lane = std::make_unique<engine>(target, 1, true);
      } catch (const std::exception& e) {
        send_result r;
        r.error = std::string("failed request to ") + target->ep.host_port + ": " + e.what();
        return r;
      }
    }
    send_result r = lane->send_alone(pieces, ctx);
    std::lock_guard<std::mutex> g(mu);
    lanes.push_back(std::move(lane));
    return r;
  }
};

sender_pool::sender_pool(http_sender_options options, std::size_t max_parallel)
    : impl_(std::make_unique<impl>(std::move(options), max_parallel)) {}

sender_pool::~sender_pool() = default;

send_result sender_pool::send(const std::vector<std::string_view>& pieces, const attempt_context* ctx) {
  return impl_->send(pieces, ctx);
}

std::size_t sender_pool::max_parallel() const noexcept { return impl_->max_parallel; }

}  // namespace batchq::detail
