// bench_receiver - mini_receiver as a process, for the nginx benchmark.
//
//   bench_receiver [--port N] [--marker STR] [--count-file FILE]
//
// Prints "listening on 127.0.0.1:<port>" once listening. On SIGTERM/SIGINT it
// stops and writes "<requests> <entries> <bytes>" (entries = marker count) to
// FILE (if given) and stdout. Every second FILE is rewritten too.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "support/mini_receiver.hpp"

namespace {
volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

void write_counts(const std::string& file, const bench::mini_receiver& rx) {
  if (file.empty()) return;
  const std::string tmp = file + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << rx.requests() << ' ' << rx.markers() << ' ' << rx.body_bytes() << '\n';
  }
  std::rename(tmp.c_str(), file.c_str());
}
}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  std::string marker = "\"bq_bench\"";
  std::string count_file;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port")) port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--marker")) marker = argv[i + 1];
    else if (!std::strcmp(argv[i], "--count-file")) count_file = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  bench::mini_receiver rx(marker, port);
  std::printf("listening on 127.0.0.1:%d\n", rx.port());
  std::fflush(stdout);
  int ticks = 0;
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (++ticks % 10 == 0) write_counts(count_file, rx);
  }
  rx.stop();
  write_counts(count_file, rx);
  std::printf("%llu %llu %llu\n", static_cast<unsigned long long>(rx.requests()),
              static_cast<unsigned long long>(rx.markers()), static_cast<unsigned long long>(rx.body_bytes()));
  return 0;
}
