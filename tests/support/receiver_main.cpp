// batchq_receiver - a loopback HTTP(S) log receiver for tests and demos.
//
// Usage:
//   batchq_receiver [--port N] [--out FILE] [--count-file FILE]
//                   [--status N] [--fail-status N --fail-first K]
//                   [--delay-ms N] [--tls-cert PEM --tls-key PEM] [--quiet]
//
//   --port N          listen on 127.0.0.1:N; 0 (default) picks a free port.
//                     Once listening, prints exactly one line to stdout and
//                     flushes it:   listening on 127.0.0.1:<port>
//   --out FILE        append every accepted entry to FILE as one line of
//                     compact JSON: a JSON array body gives one line per
//                     element (in order), any other JSON value one line, and
//                     a body that is not one JSON value is read as NDJSON
//                     (one line per non-empty line; lines that are not JSON
//                     are written as received). Flushed after each request.
//                     Only requests answered 2xx are written.
//   --count-file FILE after each accepted request and at exit, FILE is
//                     replaced (write + rename) by one line: the number of
//                     entries accepted so far.
//   --status N        status for requests that are not failed (default 200).
//   --fail-status N   status for the first K requests (default 500) ...
//   --fail-first K    ... K requests in all (default 0); their entries are
//                     not written.
//   --delay-ms N      wait N ms before answering each request. Entries are
//                     written when the request has been read, before the
//                     delay: a client that gives up meanwhile will resend them.
//   --tls-cert/--tls-key  serve https with this PEM certificate and key.
//   --quiet           no per-request log on stderr.
//
// Stops cleanly on SIGTERM or SIGINT: stops listening, writes the count file,
// prints "received <requests> requests, <entries> entries" to stderr and exits 0.
// Exit status 2 for bad arguments, 1 if it cannot listen.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "support/receiver.hpp"

namespace {

struct config {
  int port = 0;
  std::string out_file;
  std::string count_file;
  int status = 200;
  int fail_status = 500;
  long fail_first = 0;
  long delay_ms = 0;
  std::string tls_cert;
  std::string tls_key;
  bool quiet = false;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "batchq_receiver: %s\nusage: batchq_receiver [--port N] [--out FILE] [--count-file FILE] "
               "[--status N] [--fail-status N --fail-first K] [--delay-ms N] [--tls-cert PEM --tls-key PEM] "
               "[--quiet]\n",
               why);
  std::exit(2);
}

long to_number(const char* s, const char* flag) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (!*s || *end || v < 0) usage((std::string("bad number for ") + flag).c_str());
  return v;
}

config parse_args(int argc, char** argv) {
  config c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--port") c.port = static_cast<int>(to_number(value(), "--port"));
    else if (a == "--out") c.out_file = value();
    else if (a == "--count-file") c.count_file = value();
    else if (a == "--status") c.status = static_cast<int>(to_number(value(), "--status"));
    else if (a == "--fail-status") c.fail_status = static_cast<int>(to_number(value(), "--fail-status"));
    else if (a == "--fail-first") c.fail_first = to_number(value(), "--fail-first");
    else if (a == "--delay-ms") c.delay_ms = to_number(value(), "--delay-ms");
    else if (a == "--tls-cert") c.tls_cert = value();
    else if (a == "--tls-key") c.tls_key = value();
    else if (a == "--quiet") c.quiet = true;
    else usage(("unknown argument " + a).c_str());
  }
  if (c.tls_cert.empty() != c.tls_key.empty()) usage("--tls-cert and --tls-key go together");
  return c;
}

std::string compact(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

// The entries of one body, one compact JSON text each (see --out above).
std::vector<std::string> split_entries(const std::string& body) {
  std::vector<std::string> out;
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (!d.HasParseError()) {
    if (d.IsArray()) {
      for (const auto& e : d.GetArray()) out.push_back(compact(e));
    } else {
      out.push_back(compact(d));
    }
    return out;
  }
  std::size_t start = 0;
  while (start < body.size()) {
    std::size_t nl = body.find('\n', start);
    if (nl == std::string::npos) nl = body.size();
    std::string line = body.substr(start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    rapidjson::Document ld;
    ld.Parse(line.data(), line.size());
    out.push_back(ld.HasParseError() ? line : compact(ld));
  }
  return out;
}

void write_count(const std::string& path, unsigned long long entries) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fprintf(f, "%llu\n", entries);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const config cfg = parse_args(argc, argv);

  // Block the stop signals in every thread (the server threads inherit the
  // mask); the main thread collects them with sigwait().
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  FILE* out = nullptr;
  if (!cfg.out_file.empty()) {
    out = std::fopen(cfg.out_file.c_str(), "a");
    if (!out) {
      std::perror(cfg.out_file.c_str());
      return 2;
    }
  }

  std::mutex mu;  // guards out, the counters and the count file
  unsigned long long requests = 0;
  unsigned long long entries = 0;

  batchq::test::receiver_options o;
  o.port = cfg.port;
  o.record = false;
  o.tls_cert_file = cfg.tls_cert;
  o.tls_key_file = cfg.tls_key;
  o.on_request = [&](const batchq::test::recorded_request& r, const batchq::test::reply& rep) {
    const bool accepted = rep.status >= 200 && rep.status < 300;
    std::vector<std::string> lines;
    if (accepted) lines = split_entries(r.body);
    std::lock_guard<std::mutex> lk(mu);
    ++requests;
    if (!cfg.quiet)
      std::fprintf(stderr, "batchq_receiver: %s %s %zu bytes -> %d (%zu entries)\n", r.method.c_str(),
                   r.target.c_str(), r.body.size(), rep.status, lines.size());
    if (!accepted) return;
    entries += lines.size();
    if (out) {
      for (const auto& l : lines) {
        std::fwrite(l.data(), 1, l.size(), out);
        std::fputc('\n', out);
      }
      std::fflush(out);
    }
    write_count(cfg.count_file, entries);
  };

  std::unique_ptr<batchq::test::receiver> rx;
  try {
    rx = std::make_unique<batchq::test::receiver>(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "batchq_receiver: %s\n", e.what());
    return 1;
  }
  batchq::test::reply ok = batchq::test::reply::with_status(cfg.status);
  ok.delay = std::chrono::milliseconds(cfg.delay_ms);
  rx->set_default(ok);
  for (long i = 0; i < cfg.fail_first; ++i) {
    batchq::test::reply fail = batchq::test::reply::with_status(cfg.fail_status, "failing as asked (--fail-first)");
    fail.delay = ok.delay;
    rx->push(fail);
  }
  write_count(cfg.count_file, 0);

  std::printf("listening on 127.0.0.1:%d\n", rx->port());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  rx->stop();
  {
    std::lock_guard<std::mutex> lk(mu);
    write_count(cfg.count_file, entries);
    if (out) std::fclose(out);
    std::fprintf(stderr, "batchq_receiver: received %llu requests, %llu entries\n", requests, entries);
  }
  return 0;
}
