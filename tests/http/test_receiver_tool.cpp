// The batchq_receiver executable, as the nginx tests and the demo use it:
// started with --port 0, it prints its port, answers as told, writes one line
// per accepted entry and exits cleanly on SIGTERM (label: http).
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "batchq/http_sender.hpp"
#include "batchq/payload.hpp"
#include "support/test_util.hpp"
#include "support/catch.hpp"

extern char** environ;

using namespace std::chrono_literals;

namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

}  // namespace

TEST_CASE("batchq_receiver: port, failures, entries out, count file, SIGTERM", "[http][tool]") {
  batchq::test::temp_dir dir;
  const std::string out = dir.file("entries.jsonl");
  const std::string count = dir.file("count");

  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, pipe_fds[0]);
  std::vector<std::string> args = {BATCHQ_RECEIVER_EXE, "--port",       "0",       "--out",   out,
                                   "--count-file",       count,          "--fail-status", "503", "--fail-first",
                                   "1",                  "--quiet"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(&a[0]);
  argv.push_back(nullptr);
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, BATCHQ_RECEIVER_EXE, &fa, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipe_fds[1]);

  FILE* child_out = ::fdopen(pipe_fds[0], "r");
  char line[256] = {};
  REQUIRE(std::fgets(line, sizeof line, child_out) != nullptr);
  int port = 0;
  REQUIRE(std::sscanf(line, "listening on 127.0.0.1:%d", &port) == 1);
  REQUIRE(port > 0);

  batchq::http_sender_options o;
  o.http_endpoint = "http://127.0.0.1:" + std::to_string(port) + "/";
  o.timeout = 5000ms;
  batchq::http_sender s(o);
  const auto e = batchq::test::entries(6);

  const std::vector<std::string> first{e[0], e[1]};
  auto r = s.send(batchq::build_payload(first, batchq::payload_format::kong));
  CHECK_FALSE(r.ok);  // --fail-first 1
  CHECK(r.status == 503);
  CHECK(s.send(batchq::build_payload(first, batchq::payload_format::kong)).ok);  // array -> 2 lines
  CHECK(s.send(R"({ "i" : 2, "msg" : "entry 2" })").ok);                          // bare object, re-serialized
  const std::vector<std::string> nd{e[3], e[4]};
  o.content_type = "application/x-ndjson";
  CHECK(batchq::http_sender(o).send(batchq::build_payload(nd, batchq::payload_format::ndjson)).ok);
  o.gzip = true;
  o.content_type = "application/json";
  CHECK(batchq::http_sender(o).send(e[5]).ok);  // gzip decoded

  REQUIRE(::kill(pid, SIGTERM) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::fclose(child_out);

  CHECK(read_lines(out) == e);
  CHECK(read_lines(count) == std::vector<std::string>{"6"});
}

TEST_CASE("batchq_receiver: bad arguments exit with status 2", "[http][tool]") {
  const std::string cmd = std::string(BATCHQ_RECEIVER_EXE) + " --bogus 2>/dev/null";
  const int rc = std::system(cmd.c_str());
  CHECK(WIFEXITED(rc));
  CHECK(WEXITSTATUS(rc) == 2);
}
