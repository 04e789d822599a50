// probe_multiplex - what several requests in flight on one thread save per
// request (bench/results.md case 4c, fourth round): one thread, one libcurl
// multi handle driven as sender_pool's engine drives it (curl_multi_socket_action,
// our own poll() over the sockets libcurl asks for), k easy handles each on a
// kept-alive connection of its own, every request a small JSON body; when
// one finishes, the next request starts on that handle. Against a running
// bench_receiver:
//
//   probe_multiplex --port N [--receiver-pid P] [--requests 40000] [--k 1,2,4] [--burst 1]
//
// --burst 1: the k requests go out together, and the next k only once all k
// are answered (as an event loop that sends what a pass over its ready
// requests produced), instead of each handle starting its next request as
// soon as its answer is in.
//
// Prints, per k: requests/s, the sending thread's CPU µs and context switches
// per request (CLOCK_THREAD_CPUTIME_ID, getrusage(RUSAGE_THREAD)), and with
// --receiver-pid the receiver process's CPU µs per request (/proc/P/stat).
// k = 1 is what a sending thread does today (one request in flight);
// k = 4 is what a multiplexing sender would do with concurrency 4.
// Not part of bench/run.sh's tables: a probe for the next round's design.
#include <curl/curl.h>
#include <poll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::vector<pollfd> g_socks;

int on_socket(CURL*, curl_socket_t fd, int what, void*, void*) {
  const auto it = std::find_if(g_socks.begin(), g_socks.end(), [fd](const pollfd& p) { return p.fd == fd; });
  if (what == CURL_POLL_REMOVE) {
    if (it != g_socks.end()) g_socks.erase(it);
    return 0;
  }
  short ev = 0;
  if (what & CURL_POLL_IN) ev |= POLLIN;
  if (what & CURL_POLL_OUT) ev |= POLLOUT;
  if (it != g_socks.end()) {
    it->events = ev;
  } else {
    g_socks.push_back(pollfd{fd, ev, 0});
  }
  return 0;
}

std::size_t discard(char*, std::size_t s, std::size_t n, void*) {
  return s * n;
}

double thread_cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

long thread_switches() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nvcsw + ru.ru_nivcsw;
}

double process_cpu_us(int pid) {
  if (pid <= 0) return 0;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto p = s.rfind(')');
  if (p == std::string::npos) return 0;
  std::istringstream in(s.substr(p + 2));
  std::string x;
  double ut = 0, st = 0;
  for (int i = 3; i <= 15; ++i) {
    in >> x;
    if (i == 14) ut = std::atof(x.c_str());
    if (i == 15) st = std::atof(x.c_str());
  }
  return (ut + st) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void run(const std::string& url, int k, long total, int rx_pid, bool burst) {
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(k));
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(k));
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &on_socket);
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  std::string body = "{\"source\":\"kong_standin\",\"msg\":\"";
  body.append(400, 'x');
  body += "\"}";
  std::vector<CURL*> easies;
  for (int i = 0; i < k; ++i) {
    CURL* e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &discard);
    easies.push_back(e);
  }
  const long warm = k;  // every connection opened before the clock starts
  long started = 0, done = 0, failed = 0;
  std::vector<CURL*> idle;  // burst: answered, waiting for the rest of the round
  auto start_one = [&](CURL* e) {
    curl_multi_add_handle(multi, e);
    ++started;
  };
  auto run_timer = [&] {
    long ms = -1;
    curl_multi_timeout(multi, &ms);
    if (ms == 0) {
      int running = 0;
      curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
  };
  auto collect = [&] {
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      if (m->data.result != CURLE_OK) ++failed;
      ++done;
      curl_multi_remove_handle(multi, m->easy_handle);
      if (!burst) {
        if (started < total + warm) start_one(m->easy_handle);
        continue;
      }
      idle.push_back(m->easy_handle);
      if (idle.size() == static_cast<std::size_t>(k)) {
        for (CURL* e : idle)
          if (started < total + warm) start_one(e);
        idle.clear();
      }
    }
  };
  for (CURL* e : easies) start_one(e);
  std::vector<pollfd> fds;
  double t0 = 0, c0 = 0, r0 = 0;
  long s0 = 0;
  bool timing = false;
  while (done < total + warm) {
    if (!timing && done >= warm) {
      timing = true;
      t0 = now_s();
      c0 = thread_cpu_us();
      s0 = thread_switches();
      r0 = process_cpu_us(rx_pid);
    }
    run_timer();
    collect();  // may start requests: read the timer after it
    if (done >= total + warm) break;
    long ms = -1;
    curl_multi_timeout(multi, &ms);
    if (ms == 0) continue;
    fds = g_socks;
    const int n = poll(fds.data(), fds.size(), ms < 0 ? 100 : static_cast<int>(std::min(ms, 100L)));
    if (n > 0) {
      for (const pollfd& p : fds) {
        if (!p.revents) continue;
        int mask = 0;
        if (p.revents & (POLLIN | POLLHUP)) mask |= CURL_CSELECT_IN;
        if (p.revents & POLLOUT) mask |= CURL_CSELECT_OUT;
        if (p.revents & (POLLERR | POLLNVAL)) mask |= CURL_CSELECT_ERR;
        int running = 0;
        curl_multi_socket_action(multi, p.fd, mask, &running);
      }
    }
    run_timer();
    collect();
  }
  const double secs = now_s() - t0;
  const double cpu = thread_cpu_us() - c0;
  const long sw = thread_switches() - s0;
  const double rx = process_cpu_us(rx_pid) - r0;
  const double n = static_cast<double>(done - warm);
  std::printf("%sk=%d: %.0f requests/s, sender %.1f µs CPU and %.2f context switches per request",
              burst ? "burst " : "", k, n / secs, cpu / n, static_cast<double>(sw) / n);
  if (rx_pid > 0) std::printf(", receiver %.1f µs CPU per request", rx / n);
  std::printf(" (%ld requests, %ld failed)\n", static_cast<long>(n), failed);
  for (CURL* e : easies) {
    curl_multi_remove_handle(multi, e);
    curl_easy_cleanup(e);
  }
  curl_slist_free_all(headers);
  curl_multi_cleanup(multi);
  g_socks.clear();
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, rx_pid = 0;
  long total = 40000;
  bool burst = false;
  std::string ks = "1,2,4";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port"))
      port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--receiver-pid"))
      rx_pid = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--requests"))
      total = std::atol(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--burst"))
      burst = std::atoi(argv[i + 1]) != 0;
    else if (!std::strcmp(argv[i], "--k"))
      ks = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (port <= 0) {
    std::fprintf(stderr, "usage: probe_multiplex --port N [--receiver-pid P] [--requests N] [--k 1,2,4] [--burst 1]\n");
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/logs";
  std::istringstream in(ks);
  std::string item;
  while (std::getline(in, item, ',')) run(url, std::atoi(item.c_str()), total, rx_pid, burst);
  curl_global_cleanup();
  return 0;
}
