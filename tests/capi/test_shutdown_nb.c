/*
 * The non-blocking shutdown of the C ABI (batchq_shutdown_begin / _poll),
 * compiled as C11 -pedantic, against real loopback servers:
 *   - a "silent" server that accepts connections (the kernel completes the
 *     handshake into its backlog) and never answers;
 *   - the batchq_receiver tool (argv[1]) as a healthy endpoint.
 * Proves: begin returns at once and closes intake, poll says EINPROGRESS
 * while entries are still pending and 0 after the deadline, every entry is
 * accounted for (delivered + dropped with reason shutdown, pulled with
 * batchq_poll_dropped, or spooled in write-ahead/ and delivered by the next
 * owner), free after a finished poll does not wait, and three queues begun
 * together drain in parallel.
 */
#define _POSIX_C_SOURCE 200809L

#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batchq.h"

#include "check.h"
#include "receiver.h"

static const char *receiver_exe;
static char tmpdir[256];

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* Listens on 127.0.0.1 and never accepts: connects succeed, nothing answers. */
static int silent_server(int *port) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 128) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0) {
    close(s);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return s;
}


static batchq_queue *make(const char *fmt, ...) {
  char json[1024], err[512];
  batchq_queue *q = NULL;
  int rc;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(json, sizeof json, fmt, ap);
  va_end(ap);
  rc = batchq_new(json, strlen(json), &q, err, sizeof err);
  if (rc != 0) fprintf(stderr, "batchq_new(%s): %s\n", json, err);
  CHECK_RC(rc, BATCHQ_OK);
  return q;
}

static int enqueue_n(batchq_queue *q, int n) {
  char e[64];
  int i, ok = 0;
  for (i = 0; i < n; ++i) {
    snprintf(e, sizeof e, "{\"i\":%d}", i);
    if (batchq_enqueue(q, e, strlen(e)) == 0) ++ok;
  }
  return ok;
}

/* Polls until the shutdown reports done or `limit_ms` passes. */
static int poll_until_done(batchq_queue *q, int64_t limit_ms) {
  int64_t end = now_ms() + limit_ms;
  int rc;
  while ((rc = batchq_shutdown_poll(q)) == BATCHQ_EINPROGRESS && now_ms() < end) sleep_ms(20);
  return rc;
}

static batchq_stats_t stats_of(batchq_queue *q) {
  batchq_stats_t s;
  memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  CHECK_RC(batchq_stats(q, &s), BATCHQ_OK);
  return s;
}

/* Pulls every dropped entry; counts those with reason shutdown and spooled. */
static long pull_dropped(batchq_queue *q, long *shutdown_reason, long *spooled) {
  batchq_dropped recs[64];
  size_t got = 0, i;
  long total = 0;
  *shutdown_reason = 0;
  *spooled = 0;
  do {
    recs[0].struct_size = sizeof recs[0];
    CHECK_RC(batchq_poll_dropped(q, recs, 64, &got), BATCHQ_OK);
    for (i = 0; i < got; ++i) {
      ++total;
      if (recs[i].reason == BATCHQ_DROP_SHUTDOWN) ++*shutdown_reason;
      if (recs[i].spooled) ++*spooled;
    }
  } while (got > 0);
  return total;
}

static void test_arguments(void) {
  int port, srv = silent_server(&port);
  batchq_queue *q;
  CHECK_RC(batchq_shutdown_begin(NULL, 0), BATCHQ_EINVAL);
  CHECK_RC(batchq_shutdown_poll(NULL), BATCHQ_EINVAL);
  CHECK(strstr(batchq_strerror(BATCHQ_EINPROGRESS), "BATCHQ_EINPROGRESS") != NULL);
  CHECK(BATCHQ_EINPROGRESS == -12);
  q = make("{\"http_endpoint\":\"http://127.0.0.1:%d/\"}", port);
  if (!q) return;
  CHECK_RC(batchq_shutdown_poll(q), BATCHQ_EINVAL); /* nothing begun */
  CHECK_RC(batchq_shutdown_begin(q, -1), BATCHQ_EINVAL);
  CHECK_RC(batchq_shutdown_begin(q, 0), BATCHQ_OK);
  CHECK_RC(batchq_shutdown_begin(q, 0), BATCHQ_OK); /* again: harmless */
  CHECK_RC(poll_until_done(q, 10000), BATCHQ_OK);
  batchq_free(q);
  close(srv);
}

/* A receiver that never answers: what is left at the deadline is dropped
 * with reason shutdown into the drop buffer, and pulled. */
static void test_silent_endpoint_drop_buffer(void) {
  const int n = 20;
  int port, srv = silent_server(&port);
  long by_shutdown, spooled, pulled;
  int64_t t0;
  batchq_queue *q;
  batchq_stats_t s;
  CHECK(srv >= 0);
  /* shutdown_timeout 30 s: a free() that shut down again would wait for it */
  q = make("{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"timeout\":60000,\"shutdown_timeout\":30}", port);
  if (!q) return;
  CHECK(enqueue_n(q, n) == n);

  CHECK_RC(batchq_shutdown_begin(q, 1500), BATCHQ_OK);
  /* Deterministic: nothing can be delivered, so it cannot be done yet. */
  CHECK_RC(batchq_shutdown_poll(q), BATCHQ_EINPROGRESS);
  CHECK_RC(batchq_enqueue(q, "{}", 2), BATCHQ_ESHUTDOWN);

  CHECK_RC(poll_until_done(q, 20000), BATCHQ_OK);
  s = stats_of(q);
  CHECK(s.enqueued == (uint64_t)n);
  CHECK(s.delivered == 0);
  CHECK(s.dropped_by_reason[BATCHQ_DROP_SHUTDOWN] == (uint64_t)n);
  CHECK(s.pending == 0 && s.in_flight == 0);
  CHECK(s.refused_shutdown == 1);
  pulled = pull_dropped(q, &by_shutdown, &spooled);
  CHECK(pulled == n);
  CHECK(by_shutdown == n);
  CHECK(spooled == 0); /* no spool configured */

  t0 = now_ms();
  batchq_free(q);
  CHECK(now_ms() - t0 < 10000); /* would be >= 30 s if it shut down again */
  close(srv);
}

/* The same with a spool: what is left goes to write-ahead/, and the next
 * owner of the spool delivers it to a healthy receiver. */
static void test_silent_endpoint_spooled(const receiver *rx) {
  const int n = 12;
  int port, srv = silent_server(&port);
  long by_shutdown, spooled;
  char dir[300];
  batchq_queue *q, *next;
  batchq_stats_t s;
  int64_t end;
  snprintf(dir, sizeof dir, "%s/spool", tmpdir);
  if (mkdir(dir, 0700) != 0) {
    CHECK(!"mkdir spool");
    return;
  }
  q = make("{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"timeout\":60000,\"spool_dir\":\"%s\"}", port, dir);
  if (!q) return;
  CHECK(enqueue_n(q, n) == n);
  CHECK_RC(batchq_shutdown_begin(q, 1000), BATCHQ_OK);
  CHECK_RC(batchq_shutdown_poll(q), BATCHQ_EINPROGRESS);
  CHECK_RC(poll_until_done(q, 20000), BATCHQ_OK);
  s = stats_of(q);
  CHECK(s.dropped_by_reason[BATCHQ_DROP_SHUTDOWN] == (uint64_t)n);
  CHECK(s.spool_records >= (uint64_t)n);
  CHECK(pull_dropped(q, &by_shutdown, &spooled) == n);
  CHECK(by_shutdown == n && spooled == n);
  batchq_free(q);
  close(srv);

  /* The next owner (an nginx worker after a reload) re-queues and delivers. */
  next = make("{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"spool_dir\":\"%s\"}", rx->port, dir);
  if (!next) return;
  end = now_ms() + 20000;
  do {
    s = stats_of(next);
    if (s.delivered >= (uint64_t)n) break;
    sleep_ms(20);
  } while (now_ms() < end);
  CHECK(s.spool_replayed == (uint64_t)n);
  CHECK(s.delivered == (uint64_t)n);
  CHECK_RC(batchq_shutdown_begin(next, 5000), BATCHQ_OK);
  CHECK_RC(poll_until_done(next, 20000), BATCHQ_OK);
  batchq_free(next);
}

static void test_healthy_endpoint(const receiver *rx) {
  const int n = 50;
  batchq_queue *q = make("{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"queue_size\":7}", rx->port);
  long by_shutdown, spooled;
  batchq_stats_t s;
  if (!q) return;
  CHECK(enqueue_n(q, n) == n);
  CHECK_RC(batchq_shutdown_begin(q, 10000), BATCHQ_OK);
  CHECK_RC(poll_until_done(q, 20000), BATCHQ_OK);
  s = stats_of(q);
  CHECK(s.enqueued == (uint64_t)n);
  CHECK(s.delivered == (uint64_t)n);
  CHECK(s.dropped == 0);
  CHECK(pull_dropped(q, &by_shutdown, &spooled) == 0);
  batchq_free(q);
}

/* Three queues begun one after the other drain in parallel: all are still
 * running right after their begin, and all are done well before the three
 * deadlines one after the other (which blocking shutdowns would need). */
static void test_parallel(void) {
  const int64_t deadline = 2000;
  int port, srv = silent_server(&port), i, all_done = 0;
  batchq_queue *q[3];
  int64_t t0, took = 0;
  long by_shutdown, spooled;
  for (i = 0; i < 3; ++i) {
    q[i] = make("{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"timeout\":60000,\"name\":\"q%d\"}", port, i);
    if (!q[i]) return;
    CHECK(enqueue_n(q[i], 5) == 5);
  }
  t0 = now_ms();
  for (i = 0; i < 3; ++i) CHECK_RC(batchq_shutdown_begin(q[i], deadline), BATCHQ_OK);
  for (i = 0; i < 3; ++i) CHECK_RC(batchq_shutdown_poll(q[i]), BATCHQ_EINPROGRESS);
  while (!all_done && now_ms() - t0 < 8 * deadline) {
    all_done = 1;
    for (i = 0; i < 3; ++i)
      if (batchq_shutdown_poll(q[i]) != 0) all_done = 0;
    if (!all_done) sleep_ms(20);
  }
  took = now_ms() - t0;
  CHECK(all_done);
  printf("3 queues, deadline %lld ms each: all done after %lld ms\n", (long long)deadline, (long long)took);
  CHECK(took < 3 * deadline);
  for (i = 0; i < 3; ++i) {
    CHECK(pull_dropped(q[i], &by_shutdown, &spooled) == 5);
    CHECK(by_shutdown == 5);
    batchq_free(q[i]);
  }
  close(srv);
}

int main(int argc, char **argv) {
  receiver rx = {0};
  const char *base = getenv("TMPDIR");
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    fprintf(stderr, "usage: %s <batchq_receiver>\n", argv[0]);
    return 2;
  }
  receiver_exe = argv[1];
  snprintf(tmpdir, sizeof tmpdir, "%s/batchq-capi-nb-XXXXXX", base ? base : "/tmp");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 2;
  }
  if (spawn_receiver(&rx, receiver_exe, NULL, NULL) != 0) {
    fprintf(stderr, "cannot start %s\n", receiver_exe);
    return 2;
  }
  test_arguments();
  test_silent_endpoint_drop_buffer();
  test_healthy_endpoint(&rx);
  test_silent_endpoint_spooled(&rx);
  test_parallel();
  stop_receiver(&rx);
  {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
