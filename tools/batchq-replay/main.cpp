// batchq-replay - look into a batchq spool and send what it holds.
//
// Usage:
//   batchq-replay list DIR
//   batchq-replay print DIR [--from SEQ] [--limit N]
//   batchq-replay quarantine DIR [--from SEQ] [--limit N]
//   batchq-replay send DIR --url URL [--batch N] [--format kong|json_array|ndjson]
//                          [--header 'K: V']... [--timeout MS] [--ca-file F]
//                          [--insecure] [--dry-run]
//   batchq-replay --help
//
// DIR is one spool directory: for an http_log with spool_dir S that is
// S/dead-letter (dropped entries) or S/write-ahead (accepted, unacknowledged
// entries). list also takes any directory above spools (a spool_dir, or the
// Kong plugin's <spool_dir>/<queue-id>/worker-<n> tree) and lists every spool
// found under it, at any depth.
//
//   list   one line per segment file (seqs, records, unacknowledged, bytes,
//          damage), a total line with the acknowledgement mark, and a line
//          per file kept in DIR/quarantine. Read-only:
//          takes no lock, so it works while the owner (nginx) has the spool.
//          Given a tree: "spool <path>" before each spool's lines, and a
//          last line "spools=<n> under DIR". print, quarantine and send
//          given a tree name the spools found and exit 2.
//   print  the unacknowledged records, oldest first, as JSON lines:
//          {"seq":..,"kind":..,"reason":..,"reason_name":..,"attempts":..,
//           "time_ms":..,"error":..,"payload":<the entry>} - a payload that is
//          not JSON is printed as a string, one that is not UTF-8 as
//          "payload_base64". Read-only as list.
//   quarantine  the records that still read back from the damaged files the
//          spool kept in DIR/quarantine, as JSON lines like print; per file,
//          one line on stderr with its records and where the damage is.
//          Read-only.
//   send   takes the spool's lock (fails with exit 3 while an owner holds it),
//          reads the unacknowledged records in seq order, N at a time, and
//          sends each batch as one request built like http_log builds it
//          (same payload formats, same libcurl sender). After each delivered
//          batch the records up to its last seq are removed for good
//          (acknowledged and synced to disk). Stops at the first batch that
//          fails, leaving it and everything after it in the spool. Payloads
//          are sent byte for byte, as the queue would have sent them.
//          SIGINT or SIGTERM lets the batch in progress finish (and be
//          removed) and then stops, as a failure would. --dry-run opens the
//          spool read-only and only shows the batches.
//
// Options of send:
//   --url URL        the endpoint (http:// or https://; user:password@ in it
//                    becomes Basic authorization). Required.
//   --batch N        records per request, 1..1000000 (default 100).
//   --format F       kong (default: 1 entry -> the entry, N -> [e1,...]),
//                    json_array, or ndjson (Content-Type application/x-ndjson).
//   --header 'K: V'  an extra request header; repeatable.
//   --timeout MS     bound on each whole request (default 10000).
//   --ca-file F      PEM CA certificates to verify the server with.
//   --insecure       do not verify the server's certificate.
//   --dry-run        send nothing, remove nothing.
//
// Exit status: 0 success (for send: the spool is empty at the end), 1 failure
// (a request failed, the spool cannot be read or written), 2 bad arguments,
// 3 the spool is locked by its owner (the message names the pid).
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "batchq/http_sender.hpp"
#include "batchq/payload.hpp"
#include "batchq/spool.hpp"
#include "batchq/types.hpp"
#include "replay.hpp"

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr int exit_locked = 3;

constexpr const char* usage_text =
    "usage: batchq-replay list DIR\n"
    "       batchq-replay print DIR [--from SEQ] [--limit N]\n"
    "       batchq-replay quarantine DIR [--from SEQ] [--limit N]\n"
    "       batchq-replay send DIR --url URL [--batch N] [--format kong|json_array|ndjson]\n"
    "                              [--header 'K: V']... [--timeout MS] [--ca-file F]\n"
    "                              [--insecure] [--dry-run]\n"
    "       batchq-replay --help\n";

constexpr const char* help_text =
    "batchq-replay: look into a batchq spool directory and send what it holds.\n"
    "\n"
    "DIR is one spool: <spool_dir>/dead-letter or <spool_dir>/write-ahead.\n"
    "\n"
    "  list   segments, record counts, bytes, acknowledgement mark, damage.\n"
    "         Read-only: works while the owner (e.g. nginx) holds the spool.\n"
    "         DIR may also be a directory above spools: every spool found\n"
    "         under it (any depth) is listed with its path.\n"
    "  print  unacknowledged records as JSON lines, oldest first. Read-only.\n"
    "         --from SEQ   start at this seq      --limit N   at most N records\n"
    "  quarantine  damaged segments kept in DIR/quarantine: the records that\n"
    "         still read back, as JSON lines; per file, where the damage is\n"
    "         (stderr). Read-only. --from and --limit as for print.\n"
    "  send   deliver the unacknowledged records in seq order, N per request,\n"
    "         removing each batch from the spool once it was delivered; stops\n"
    "         at the first failed request. Needs the spool's lock.\n"
    "         --url URL          endpoint, http:// or https:// (required)\n"
    "         --batch N          records per request (default 100)\n"
    "         --format F         kong (default), json_array or ndjson\n"
    "         --header 'K: V'    extra request header (repeatable)\n"
    "         --timeout MS       bound on one request (default 10000)\n"
    "         --ca-file F        PEM CA file to verify the server with\n"
    "         --insecure         do not verify the server's certificate\n"
    "         --dry-run          show the batches; send and remove nothing\n"
    "\n"
    "Exit status: 0 ok (send: the spool is empty), 1 failed, 2 bad arguments,\n"
    "3 the spool is locked by its owner.\n";

struct usage_error {
  std::string message;
};

struct arguments {
  std::string command;
  std::string dir;
  // print
  std::uint64_t from_seq = 0;
  std::size_t limit = 0;
  // send
  std::string url;
  std::size_t batch = 100;
  batchq::payload_format format = batchq::payload_format::kong;
  std::vector<std::pair<std::string, std::string>> headers;
  long long timeout_ms = 10000;
  std::string ca_file;
  bool insecure = false;
  bool dry_run = false;
};

std::uint64_t parse_number(std::string_view flag, const std::string& text, std::uint64_t min, std::uint64_t max) {
  const auto bad = [&] {
    return usage_error{std::string(flag) + ": \"" + text + "\" is not a number in " + std::to_string(min) + ".." +
                       std::to_string(max)};
  };
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) throw bad();
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE || v < min || v > max) throw bad();
  return v;
}

batchq::payload_format parse_format(const std::string& text) {
  if (text == "kong") return batchq::payload_format::kong;
  if (text == "json_array") return batchq::payload_format::json_array;
  if (text == "ndjson") return batchq::payload_format::ndjson;
  throw usage_error{"--format: \"" + text + "\" is not one of kong, json_array, ndjson"};
}

std::pair<std::string, std::string> parse_header(const std::string& text) {
  const std::size_t colon = text.find(':');
  if (colon == std::string::npos || colon == 0)
    throw usage_error{"--header: \"" + text + "\" is not of the form 'Name: value'"};
  std::string name = text.substr(0, colon);
  std::string value = text.substr(colon + 1);
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
  const std::size_t first = value.find_first_not_of(" \t");
  value = first == std::string::npos ? std::string() : value.substr(first);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
  if (name.empty()) throw usage_error{"--header: \"" + text + "\" has an empty name"};
  return {std::move(name), std::move(value)};
}

arguments parse_arguments(int argc, char** argv) {
  arguments a;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) throw usage_error{"no command given"};
  a.command = args[0];
  if (a.command != "list" && a.command != "print" && a.command != "send" && a.command != "quarantine")
    throw usage_error{"unknown command \"" + a.command + "\" (expected list, print, quarantine or send)"};

  const bool is_print = a.command == "print" || a.command == "quarantine";
  const bool is_send = a.command == "send";
  bool have_dir = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    std::string arg = args[i];
    std::string value;
    bool inline_value = false;
    if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
      const std::size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg.resize(eq);
        inline_value = true;
      }
    }
    const auto take_value = [&]() -> std::string {
      if (inline_value) return value;
      if (i + 1 >= args.size()) throw usage_error{arg + " needs a value"};
      return args[++i];
    };
    const auto only_for = [&](bool allowed) {
      if (!allowed) throw usage_error{arg + " is not an option of " + a.command};
    };
    const auto no_value = [&] {
      if (inline_value) throw usage_error{arg + " takes no value"};
    };

    if (arg == "--from") {
      only_for(is_print);
      a.from_seq = parse_number(arg, take_value(), 0, UINT64_MAX);
    } else if (arg == "--limit") {
      only_for(is_print);
      a.limit = static_cast<std::size_t>(parse_number(arg, take_value(), 0, SIZE_MAX));
    } else if (arg == "--url") {
      only_for(is_send);
      a.url = take_value();
    } else if (arg == "--batch") {
      only_for(is_send);
      a.batch = static_cast<std::size_t>(parse_number(arg, take_value(), 1, 1000000));
    } else if (arg == "--format") {
      only_for(is_send);
      a.format = parse_format(take_value());
    } else if (arg == "--header") {
      only_for(is_send);
      a.headers.push_back(parse_header(take_value()));
    } else if (arg == "--timeout") {
      only_for(is_send);
      a.timeout_ms = static_cast<long long>(parse_number(arg, take_value(), 1, 86400000));
    } else if (arg == "--ca-file") {
      only_for(is_send);
      a.ca_file = take_value();
    } else if (arg == "--insecure") {
      only_for(is_send);
      no_value();
      a.insecure = true;
    } else if (arg == "--dry-run") {
      only_for(is_send);
      no_value();
      a.dry_run = true;
    } else if (arg == "--") {
      for (++i; i < args.size(); ++i) {
        if (have_dir) throw usage_error{"more than one directory given (\"" + args[i] + "\")"};
        a.dir = args[i];
        have_dir = true;
      }
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw usage_error{"unknown option " + arg};
    } else {
      if (have_dir) throw usage_error{"more than one directory given (\"" + args[i] + "\")"};
      a.dir = args[i];
      have_dir = true;
    }
  }
  if (!have_dir || a.dir.empty()) throw usage_error{a.command + ": the spool directory is missing"};
  if (is_send && a.url.empty()) throw usage_error{"send: --url is required"};
  return a;
}

// Spools found under a directory (batchq-replay list TREE). A spool is a
// directory holding a LOCK, an ACK or a segment file; an http_log spool_dir
// holds two (dead-letter, write-ahead), and a Kong plugin lays out one
// spool_dir per queue and worker (<dir>/<queue-id>/worker-<n>/...), so a
// tree may hold any number, at any depth.
bool is_spool_dir(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == "LOCK" || name == "ACK" || (name.rfind("spool-", 0) == 0 && name.size() > 4 &&
                                            name.compare(name.size() - 4, 4, ".seg") == 0))
      return true;
  }
  return false;
}

// Every spool under `dir`, sorted by path; empty when `dir` is itself a
// spool or holds none (then it is handled as one spool, as before). Symbolic
// links are not followed; unreadable directories are skipped.
std::vector<std::string> spools_below(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || is_spool_dir(dir)) return found;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (!it->is_directory(ec2) || it->is_symlink(ec2)) continue;
    if (is_spool_dir(it->path())) {
      found.push_back(it->path().string());
      it.disable_recursion_pending();  // spools do not nest
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

// replay.cpp's functions write bare messages; prefix each line with the command.
void copy_prefixed(const std::string& text, const std::string& prefix, std::ostream& out) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out << prefix << line << '\n';
}

// list over a tree: "spool <path>" then that spool's listing, for each; a
// last line counts them. Exit status: the worst of the spools'.
int run_list_tree(const std::string& dir, const std::vector<std::string>& spools, const std::string& prefix) {
  int rc = exit_ok;
  for (const auto& path : spools) {
    std::cout << "spool " << path << '\n';
    std::ostringstream err;
    const int one = batchq::replay_list(path, std::cout, err);
    std::cout.flush();
    copy_prefixed(err.str(), prefix + path + ": ", std::cerr);
    if (one != exit_ok) rc = exit_failed;
  }
  std::cout << "spools=" << spools.size() << " under " << dir << '\n';
  std::cout.flush();
  return std::cout.good() ? rc : exit_failed;
}

const char* reason_name(std::uint8_t reason) {
  return reason < batchq::drop_reason_count ? batchq::to_string(static_cast<batchq::drop_reason>(reason)) : nullptr;
}

batchq::http_sender_options sender_options(const arguments& a) {
  batchq::http_sender_options o;
  o.http_endpoint = a.url;
  o.headers = a.headers;
  o.timeout = std::chrono::milliseconds(a.timeout_ms);
  o.ca_file = a.ca_file;
  o.ssl_verify = !a.insecure;
  if (a.format == batchq::payload_format::ndjson) o.content_type = "application/x-ndjson";
  return o;
}

// "1 record", "2 records".
std::string count_of(std::uint64_t n, const char* noun, const char* plural_suffix = "s") {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : plural_suffix);
}

volatile std::sig_atomic_t stop_signal = 0;

extern "C" void on_stop_signal(int sig) { stop_signal = sig; }

// SIGINT/SIGTERM during send: finish (and remove) the batch in progress, then
// stop with the summary. A second signal acts as usual (SA_RESETHAND).
void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int run_send(const arguments& a) {
  // Every argument is checked before the spool is touched.
  std::unique_ptr<batchq::http_sender> sender;
  try {
    sender = std::make_unique<batchq::http_sender>(sender_options(a));
  } catch (const batchq::options_error& e) {
    std::cerr << "batchq-replay send: " << e.what() << '\n' << usage_text;
    return exit_usage;
  }
  const std::string endpoint = sender->endpoint_for_logs();

  batchq::spool_options so;
  so.dir = a.dir;
  so.max_bytes = 0;                         // never evict anything while replaying
  so.fsync = batchq::fsync_policy::never;   // remove_upto() syncs by itself
  so.read_only = a.dry_run;
  batchq::spool_error why;
  const std::unique_ptr<batchq::spool> sp = batchq::spool::open(so, &why);
  if (!sp) {
    std::cerr << "batchq-replay send: " << why.message << '\n';
    return why.code == batchq::spool_errc::locked ? exit_locked : exit_failed;
  }

  if (!a.dry_run) catch_stop_signals();
  std::vector<batchq::spool_entry> batch;
  batch.reserve(a.batch);
  std::vector<std::string_view> views;
  std::string body;
  std::uint64_t sent = 0;
  std::uint64_t batches = 0;
  std::string failure;

  // One pass over the spool; each full batch is sent from inside the
  // callback (the spool holds no lock there), so every segment is read once.
  const auto send_batch = [&]() -> bool {
    if (stop_signal != 0) {
      failure = "stopped by signal " + std::to_string(static_cast<int>(stop_signal)) + " before batch " +
                std::to_string(batches + 1);
      return false;
    }
    views.clear();
    for (const auto& e : batch) views.emplace_back(e.payload);
    batchq::build_payload(views, a.format, body);
    const std::uint64_t first = batch.front().seq;
    const std::uint64_t last = batch.back().seq;
    const std::string what = "batch " + std::to_string(batches + 1) + " (seqs " + std::to_string(first) + ".." +
                             std::to_string(last) + ", " + count_of(batch.size(), "record") + ", " +
                             count_of(body.size(), "byte") + ")";
    if (a.dry_run) {
      std::cout << "would send " << what << " to " << endpoint << '\n';
    } else {
      const batchq::send_result r = sender->send(body);
      if (!r.ok) {
        failure = what + " failed: " + (r.error.empty() ? "unknown error" : r.error) +
                  (r.status != 0 ? " (HTTP status " + std::to_string(r.status) + ")" : " (no response)");
        if (r.retry_after.count() > 0)
          failure += "; the server asked to retry after " + std::to_string(r.retry_after.count()) + " ms";
        return false;
      }
      if (!sp->remove_upto(last)) {
        const batchq::spool_stats st = sp->stats();
        failure = what + " was delivered, but removing it from the spool failed (io_errors=" +
                  std::to_string(st.io_errors) + " sync_errors=" + std::to_string(st.sync_errors) +
                  "); its records may be sent again by the next run";
        return false;
      }
    }
    sent += batch.size();
    ++batches;
    batch.clear();
    return true;
  };

  sp->for_each([&](const batchq::spool_record& r) {
    batch.emplace_back(r);
    return batch.size() < a.batch || send_batch();
  });
  if (failure.empty() && !batch.empty()) send_batch();

  // What is left, as a fresh read finds it.
  std::uint64_t remaining = 0;
  if (!a.dry_run)
    sp->for_each([&](const batchq::spool_record&) {
      ++remaining;
      return true;
    });

  const batchq::spool_stats st = sp->stats();
  if (st.corrupt_records + st.torn_records > 0)
    std::cerr << "batchq-replay send: warning: damaged records skipped: corrupt=" << st.corrupt_records
              << " torn=" << st.torn_records << " skipped_bytes=" << st.skipped_bytes
              << " tail_bytes=" << st.truncated_bytes << '\n';
  if (!failure.empty()) std::cerr << "batchq-replay send: " << failure << '\n';

  if (a.dry_run)
    std::cout << "dry run: would send " << count_of(sent, "record") << " in " << count_of(batches, "batch", "es")
              << " to " << endpoint << "; nothing sent or removed\n";
  else
    std::cout << "sent " << count_of(sent, "record") << " in " << count_of(batches, "batch", "es") << " to "
              << endpoint << "; remaining " << count_of(remaining, "record") << '\n';
  std::cout.flush();
  if (!failure.empty()) return exit_failed;
  if (!a.dry_run && remaining != 0) {
    std::cerr << "batchq-replay send: " << count_of(remaining, "record") << " still in the spool\n";
    return exit_failed;
  }
  return std::cout.good() ? exit_ok : exit_failed;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h" || (i == 1 && arg == "help")) {
      std::cout << help_text << '\n' << usage_text;
      return exit_ok;
    }
    if (arg == "--") break;
  }
  arguments a;
  try {
    a = parse_arguments(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "batchq-replay: " << e.message << '\n' << usage_text;
    return exit_usage;
  }

  const std::string prefix = "batchq-replay " + a.command + ": ";
  const std::vector<std::string> spools = spools_below(a.dir);
  if (!spools.empty()) {
    if (a.command == "list") return run_list_tree(a.dir, spools, prefix);
    // print, quarantine and send work on one spool.
    std::cerr << prefix << '"' << a.dir << "\" is not a spool but holds " << spools.size()
              << (spools.size() == 1 ? " spool" : " spools") << ": give one of";
    for (const auto& sp : spools) std::cerr << ' ' << sp;
    std::cerr << " (batchq-replay list " << a.dir << " shows them all)\n" << usage_text;
    return exit_usage;
  }
  try {
    std::ostringstream err;
    int rc = exit_ok;
    batchq::replay_print_options o;  // print and quarantine
    o.from_seq = a.from_seq;
    o.limit = a.limit;
    o.namer = reason_name;
    if (a.command == "list") {
      rc = batchq::replay_list(a.dir, std::cout, err);
    } else if (a.command == "print") {
      rc = batchq::replay_print(a.dir, o, std::cout, err);
    } else if (a.command == "quarantine") {
      rc = batchq::replay_quarantine(a.dir, o, std::cout, err);
    } else {
      return run_send(a);
    }
    std::cout.flush();
    copy_prefixed(err.str(), prefix, std::cerr);
    return rc;
  } catch (const std::exception& e) {
    std::cerr << prefix << e.what() << '\n';
    return exit_failed;
  }
}
