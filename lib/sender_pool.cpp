#include "sender_pool.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>

#include "http_transfer.hpp"

namespace batchq::detail {

namespace {

// One send() call, living on its caller's stack until `done`.
struct job {
  const std::vector<std::string_view>* pieces = nullptr;
  const attempt_context* ctx = nullptr;
  send_result result;             // written by the driver under mu, then `done`
  bool done = false;              // under mu
  http_transfer* transfer = nullptr;  // the driver's
};

}  // namespace

// Leader/followers: whichever sending thread finds nobody driving the multi
// handle drives it - every transfer in flight, not only its own - until its
// own is done, then hands the role to a waiting thread. So one thread at a
// time runs all requests on one multi handle (one connection cache, HTTP/2
// streams on one connection), without a thread of its own: at concurrency 1
// the worker drives its own request with no hand-off between threads, and
// at N a request finishing on the driver needs no wake-up of another thread
// to start the next one (its worker submits it and the driver picks it up).
struct sender_pool::impl {
  std::shared_ptr<const http_target> target;
  std::size_t max_parallel;
  CURLM* multi = nullptr;

  std::mutex mu;
  std::condition_variable cv;  // a job done, or the driver role free
  std::vector<job*> incoming;  // under mu
  bool driving = false;        // under mu: a thread holds the driver role

  // The driver's own (handed from driver to driver under mu).
  std::vector<std::unique_ptr<http_transfer>> idle;
  std::vector<job*> active;

  impl(http_sender_options o, std::size_t n) : target(make_http_target(std::move(o))), max_parallel(std::max<std::size_t>(1, n)) {
    // One transfer now: a libcurl that refuses an option fails here, with its
    // message, rather than on the first send.
    idle.push_back(std::make_unique<http_transfer>(target));
    multi = curl_multi_init();
    if (!multi) throw std::runtime_error("batchq: cannot create a libcurl handle");
    const long limit = static_cast<long>(max_parallel);
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, limit);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, limit);
  }

  // Runs when no send() is in progress (the owner has stopped its workers).
  ~impl() {
    while (!active.empty()) complete(active.back(), CURLE_ABORTED_BY_CALLBACK, "the sender is shutting down");
    idle.clear();  // easy handles before their multi handle's cache goes
    curl_multi_cleanup(multi);
  }

  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  void publish(job* j, send_result r) {
    std::lock_guard<std::mutex> g(mu);
    j->result = std::move(r);
    j->done = true;
    cv.notify_all();  // under the lock: the waiter's stack frame (and j) may go once it sees done
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

  // The driver's loop: every transfer in flight, until `mine` is done.
  void drive(const job& mine) {
    static constexpr int kCancelPollMs = 100;
    std::vector<job*> fresh;
    for (;;) {
      {
        std::lock_guard<std::mutex> g(mu);
        if (mine.done) return;
        fresh.swap(incoming);
      }
      for (job* j : fresh) start(j);
      fresh.clear();

      int running = 0;
      const CURLMcode mc = curl_multi_perform(multi, &running);
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
      // Cancellation and timeout_scope::operation are ours to watch: poll
      // often enough to notice them while the server is silent.
      int wait_ms = kCancelPollMs;
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
          wait_ms = static_cast<int>(std::min<long long>(wait_ms, idle_left));
        }
        ++i;
      }
      {
        std::lock_guard<std::mutex> g(mu);
        if (mine.done) return;
        if (!incoming.empty()) continue;  // start them before waiting
      }
      curl_multi_poll(multi, nullptr, 0, wait_ms, nullptr);  // curl_multi_wakeup() ends it early
    }
  }

  send_result send(const std::vector<std::string_view>& pieces, const attempt_context* ctx) {
    job j;
    j.pieces = &pieces;
    j.ctx = ctx;
    std::unique_lock<std::mutex> lk(mu);
    incoming.push_back(&j);
    for (;;) {
      if (j.done) break;
      if (!driving) {
        driving = true;
        lk.unlock();
        drive(j);
        lk.lock();
        driving = false;
        cv.notify_all();  // a waiting thread whose job is not done takes the role
        continue;
      }
      lk.unlock();
      curl_multi_wakeup(multi);  // the driver starts it now rather than after its poll
      lk.lock();
      cv.wait(lk, [&j, this] { return j.done || !driving; });
    }
    return std::move(j.result);
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
