// The spool across processes: the lock between two processes, kill -9 while
// appending, and a write error (file size limit: EFBIG, the ENOSPC path).
// Children report through pipes and exit codes; Catch2 runs in the parent only.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "spool/spool_test_util.hpp"
#include "support/catch.hpp"

using namespace batchq;
using namespace batchq::test;

namespace {

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

int wait_exit_code(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool read_exact(int fd, void* buf, std::size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool write_exact(int fd, const void* buf, std::size_t n) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t r = ::write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

}  // namespace

TEST_CASE("two processes: the second fails on the lock, then takes over when the first exits", "[spool]") {
  temp_dir d;
  const spool_options o = small_options(d.path());

  SECTION("the parent owns it; a child cannot open it") {
    auto s = must_open(o);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      spool_error e;
      auto c = spool::open(o, &e);
      int code = 0;
      if (c) code = 1;
      else if (e.code != spool_errc::locked) code = 2;
      else if (!contains(e.message, "locked") || !contains(e.message, "pid " + std::to_string(parent))) code = 3;
      ::_exit(code);
    }
    CHECK(wait_exit_code(pid) == 0);
  }

  SECTION("a child owns it; the parent takes over after it dies") {
    int ready[2], go[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(go) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(ready[0]);
      ::close(go[1]);
      spool_error e;
      auto c = spool::open(o, &e);
      if (!c) ::_exit(1);
      for (int i = 1; i <= 5; ++i)
        if (c->append(payload_for(static_cast<std::uint64_t>(i))) == 0) ::_exit(2);
      const char one = 1;
      write_exact(ready[1], &one, 1);
      char ignored;
      read_exact(go[0], &ignored, 1);  // returns at EOF: the parent closed its end
      ::_exit(0);                      // no close(): the kernel drops the flock
    }
    ::close(ready[1]);
    ::close(go[0]);
    char byte = 0;
    REQUIRE(read_exact(ready[0], &byte, 1));
    spool_error e;
    CHECK(spool::open(o, &e) == nullptr);
    CHECK(e.code == spool_errc::locked);
    CHECK(contains(e.message, "pid " + std::to_string(pid)));
    ::close(go[1]);
    CHECK(wait_exit_code(pid) == 0);
    ::close(ready[0]);
    auto s = must_open(o);
    const auto got = s->read_all();
    CHECK(seqs_of(got) == range(1, 5));
    for (const auto& r : got) CHECK(r.payload == payload_for(r.seq));
  }
}

TEST_CASE("kill -9 while appending loses nothing that append() returned", "[spool]") {
  temp_dir d;
  spool_options o = small_options(d.path());
  o.mode = spool_mode::write_ahead;
  o.fsync = fsync_policy::never;  // the page cache alone must be enough
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto s = spool::open(o, nullptr);
    if (!s) ::_exit(1);
    for (std::uint64_t i = 1;; ++i) {
      const std::uint64_t seq = s->append(payload_for(i, 100));
      if (seq != i) ::_exit(2);
      if (!write_exact(fds[1], &seq, sizeof seq)) ::_exit(3);
    }
  }
  ::close(fds[1]);
  std::uint64_t reported = 0, seq = 0;
  while (reported < 3000 && read_exact(fds[0], &seq, sizeof seq)) reported = seq;
  REQUIRE(reported >= 3000);
  ::kill(pid, SIGKILL);
  CHECK(wait_exit_code(pid) == 128 + SIGKILL);
  while (read_exact(fds[0], &seq, sizeof seq)) reported = seq;  // what it told us before dying
  ::close(fds[0]);

  auto s = must_open(o);
  const auto got = s->read_all();
  REQUIRE(got.size() >= reported);
  CHECK(seqs_of(got) == range(1, got.size()));
  for (const auto& r : got) REQUIRE(r.payload == payload_for(r.seq, 100));
  const spool_stats st = s->stats();
  CHECK(st.corrupt_records == 0);
  CHECK(st.torn_records <= 1);  // killed inside a pwritev at most once
  CHECK(s->append("after") == got.size() + 1);
}

TEST_CASE("a write error (EFBIG, as ENOSPC) is reported and counted; later appends work", "[spool]") {
  temp_dir d;
  spool_options o = small_options(d.path());
  o.segment_bytes = 1 << 20;
  struct summary {
    std::uint64_t ok_before = 0, failed = 0, first_errno = 0, write_errors = 0, last_errno = 0, ok_after = 0;
  };
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  // In a child: RLIMIT_FSIZE applies to the whole process, including any file
  // the test runner's output might be redirected to.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of being killed
    auto s = spool::open(o, nullptr);
    if (!s) ::_exit(1);
    summary sum;
    std::uint64_t i = 1;
    for (; i <= 20; ++i)
      if (s->append(payload_for(i, 100)) == i) ++sum.ok_before;
    rlimit lim{};
    ::getrlimit(RLIMIT_FSIZE, &lim);
    const rlimit old = lim;
    lim.rlim_cur = 4000;  // the active segment already holds ~2.8 KB
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(2);
    for (int k = 0; k < 30; ++k) {
      int err = 0;
      if (s->append(payload_for(i, 100), {}, &err) == i) {
        ++i;
        continue;
      }
      if (sum.failed++ == 0) sum.first_errno = static_cast<std::uint64_t>(err);
    }
    sum.ok_before = i - 1;
    ::setrlimit(RLIMIT_FSIZE, &old);
    for (int k = 0; k < 10; ++k, ++i)
      if (s->append(payload_for(i, 100)) == i) ++sum.ok_after;
    const spool_stats st = s->stats();
    sum.write_errors = st.write_errors;
    sum.last_errno = static_cast<std::uint64_t>(st.last_write_errno);
    write_exact(fds[1], &sum, sizeof sum);
    ::_exit(0);
  }
  ::close(fds[1]);
  summary sum;
  REQUIRE(read_exact(fds[0], &sum, sizeof sum));
  ::close(fds[0]);
  REQUIRE(wait_exit_code(pid) == 0);
  CHECK(sum.failed > 0);
  CHECK(sum.first_errno == EFBIG);
  CHECK(sum.write_errors == sum.failed);
  CHECK(sum.last_errno == EFBIG);
  CHECK(sum.ok_after == 10);
  // No partial record was left behind: everything that succeeded reads back.
  auto s = must_open(o);
  const auto got = s->read_all();
  CHECK(seqs_of(got) == range(1, sum.ok_before + 10));
  for (const auto& r : got) CHECK(r.payload == payload_for(r.seq, 100));
  CHECK(s->stats().corrupt_records == 0);
  CHECK(s->stats().torn_records == 0);
}
