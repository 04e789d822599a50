/*
 * The C ABI, compiled as C11 with -Wall -Wextra -Werror -pedantic, against a
 * real loopback receiver (argv[1]: the batchq_receiver executable). Covers
 * every function and every error code, NULL arguments included.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batchq.h"

#include "check.h"
#include "receiver.h"

static const char *receiver_exe;
static char tmpdir[256];

/* ---- a real receiver in a child process ---------------------------------- */

static int start_receiver(receiver *r, const char *extra1, const char *extra2) {
  static int counter = 0;
  snprintf(r->out, sizeof r->out, "%s/received-%d.txt", tmpdir, counter++);
  return spawn_receiver(r, receiver_exe, extra1, extra2);
}

static long count_lines_with(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  char buf[4096];
  long n = 0;
  if (!f) return 0;
  while (fgets(buf, sizeof buf, f))
    if (!needle || strstr(buf, needle)) ++n;
  fclose(f);
  return n;
}

/* A port with nothing listening: bind, read the port, close. */
static int dead_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int port, s = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, (struct sockaddr *)&a, sizeof a);
  getsockname(s, (struct sockaddr *)&a, &len);
  port = ntohs(a.sin_port);
  close(s);
  return port;
}

static batchq_queue *make(char *errbuf, size_t errlen, int *rc, const char *fmt, ...) {
  char json[2048];
  batchq_queue *q = NULL;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(json, sizeof json, fmt, ap);
  va_end(ap);
  *rc = batchq_new(json, strlen(json), &q, errbuf, errlen);
  return q;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_version_and_names(void) {
  int code;
  CHECK(strcmp(batchq_version(), BATCHQ_VERSION_STRING) == 0);
  CHECK(batchq_version_number() == BATCHQ_VERSION_NUMBER);
  for (code = BATCHQ_EINPROGRESS; code <= BATCHQ_OK; ++code) {
    const char *s = batchq_strerror(code);
    CHECK(s != NULL && strncmp(s, "BATCHQ_", 7) == 0);
  }
  CHECK(strstr(batchq_strerror(BATCHQ_EFULL), "full") != NULL);
  CHECK(strcmp(batchq_strerror(-999), "unknown error") == 0);
  CHECK(strcmp(batchq_drop_reason_name(BATCHQ_DROP_RETRIES_EXHAUSTED), "retries_exhausted") == 0);
  CHECK(strcmp(batchq_drop_reason_name(BATCHQ_DROP_RETRY_TIME_EXCEEDED), "retry_time_exceeded") == 0);
  CHECK(strcmp(batchq_drop_reason_name(BATCHQ_DROP_QUEUE_FULL), "queue_full") == 0);
  CHECK(strcmp(batchq_drop_reason_name(BATCHQ_DROP_TOO_LARGE), "too_large") == 0);
  CHECK(strcmp(batchq_drop_reason_name(BATCHQ_DROP_SHUTDOWN), "shutdown") == 0);
  CHECK(strcmp(batchq_drop_reason_name(BATCHQ_DROP_REJECTED), "rejected") == 0);
  CHECK(strcmp(batchq_drop_reason_name(-1), "unknown") == 0);
  CHECK(strcmp(batchq_drop_reason_name(99), "unknown") == 0);
}

static void expect_config_error(const char *json, const char *needle1, const char *needle2) {
  char err[512];
  batchq_queue *q = (batchq_queue *)1;
  int rc = batchq_new(json, strlen(json), &q, err, sizeof err);
  CHECK_RC(rc, BATCHQ_ECONFIG);
  CHECK(q == NULL);
  if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2))) {
    ++failed;
    fprintf(stderr, "config %s: message \"%s\" lacks \"%s\"/\"%s\"\n", json, err, needle1, needle2 ? needle2 : "");
  } else {
    ++passed;
  }
}

static void test_new_errors(void) {
  char err[512];
  char tiny[8];
  batchq_queue *q = NULL;
  const char *ok = "{\"http_endpoint\":\"http://127.0.0.1:9/\"}";

  CHECK_RC(batchq_new(ok, strlen(ok), NULL, err, sizeof err), BATCHQ_EINVAL);
  CHECK(strstr(err, "out") != NULL);
  CHECK_RC(batchq_new(NULL, 10, &q, err, sizeof err), BATCHQ_EINVAL);
  CHECK(q == NULL);
  CHECK_RC(batchq_new(ok, 0, &q, err, sizeof err), BATCHQ_EINVAL);
  CHECK_RC(batchq_new(ok, 0, &q, NULL, 0), BATCHQ_EINVAL); /* no errbuf is fine */

  expect_config_error("{\"http_endpoint\":", "not valid JSON", "offset");
  expect_config_error("[1,2]", "must be a JSON object", NULL);
  expect_config_error("{\"queue_sise\":5,\"http_endpoint\":\"http://127.0.0.1:9/\"}", "queue_sise",
                      "did you mean queue_size");
  expect_config_error("{\"zzzzzzzzzz\":1,\"http_endpoint\":\"http://127.0.0.1:9/\"}", "zzzzzzzzzz", "unknown key");
  expect_config_error("{\"retry_count\":\"ten\",\"http_endpoint\":\"http://127.0.0.1:9/\"}", "retry_count",
                      "got a string");
  expect_config_error("{\"queue_size\":\"5\",\"http_endpoint\":\"http://127.0.0.1:9/\"}", "queue_size", "integer");
  expect_config_error("{\"queue_size\":2.5,\"http_endpoint\":\"http://127.0.0.1:9/\"}", "queue_size", "integer");
  expect_config_error("{\"flush_timeout\":-1,\"http_endpoint\":\"http://127.0.0.1:9/\"}", "flush_timeout", "seconds");
  expect_config_error("{\"gzip\":1,\"http_endpoint\":\"http://127.0.0.1:9/\"}", "gzip", "true or false");
  expect_config_error("{\"backoff\":\"linear\",\"http_endpoint\":\"http://127.0.0.1:9/\"}", "backoff",
                      "kong_quadratic, exponential");
  expect_config_error("{\"http_endpoint\":\"ftp://127.0.0.1/\"}", "http_endpoint", NULL);
  expect_config_error("{\"queue_size\":5}", "http_endpoint", "required");
  expect_config_error("{\"http_endpoint\":\"http://127.0.0.1:9/\",\"headers\":{\"Host\":\"x\"}}", "headers", "Host");
  expect_config_error("{\"http_endpoint\":\"http://127.0.0.1:9/\",\"method\":\"GET\"}", "method", "POST");
  expect_config_error("{\"http_endpoint\":\"http://127.0.0.1:9/\",\"max_entries\":-3,\"queue_size\":10}",
                      "max_entries", "from 0");

  /* A small errbuf gets a truncated, NUL-terminated message. */
  memset(tiny, 'x', sizeof tiny);
  CHECK_RC(batchq_new("{}", 2, &q, tiny, sizeof tiny), BATCHQ_ECONFIG);
  CHECK(tiny[sizeof tiny - 1] == '\0' && strlen(tiny) == sizeof tiny - 1);

  /* Spool directory that cannot exist (a missing one is created, so the
   * path goes through a file: not even root can make it): the queue is made
   * and works in memory, the stats say the spool is unavailable. */
  {
    int rc;
    batchq_stats_t st;
    q = make(err, sizeof err, &rc,
             "{\"http_endpoint\":\"http://127.0.0.1:9/\",\"spool_dir\":\"/dev/null/batchq-spool\"}");
    CHECK_RC(rc, BATCHQ_OK);
    CHECK(q != NULL);
    st.struct_size = sizeof st;
    CHECK(q != NULL && batchq_stats(q, &st) == BATCHQ_OK && st.spool_unavailable == 1);
    batchq_free(q);
  }
}

static void test_null_arguments(void) {
  batchq_stats_t st;
  batchq_dropped d[2];
  size_t n = 5, len = 7;
  int level = 0;
  char buf[16];
  CHECK_RC(batchq_enqueue(NULL, "{}", 2), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue_ex(NULL, "{}", 2, buf, sizeof buf), BATCHQ_EINVAL);
  CHECK_RC(batchq_flush(NULL, 10), BATCHQ_EINVAL);
  CHECK_RC(batchq_shutdown(NULL, 10), BATCHQ_EINVAL);
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(NULL, &st), BATCHQ_EINVAL);
  d[0].struct_size = sizeof d[0];
  CHECK_RC(batchq_poll_dropped(NULL, d, 2, &n), BATCHQ_EINVAL);
  CHECK(n == 0);
  CHECK_RC(batchq_poll_log(NULL, &level, buf, sizeof buf, &len), BATCHQ_EINVAL);
  CHECK(len == 0);
  CHECK_RC(batchq_stats_json(NULL, buf, sizeof buf, &len), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats_prometheus(NULL, buf, sizeof buf, &len), BATCHQ_EINVAL);
  batchq_free(NULL); /* no-op */
  ++passed;
}

static void test_delivery(void) {
  receiver r;
  char err[512], entry[64], buf[8192];
  batchq_stats_t st;
  batchq_queue *q;
  size_t len = 0;
  int rc, i;
  if (start_receiver(&r, NULL, NULL) != 0) {
    ++failed;
    fprintf(stderr, "cannot start receiver %s\n", receiver_exe);
    return;
  }
  q = make(err, sizeof err, &rc,
           "{\"http_endpoint\":\"http://127.0.0.1:%d/logs\",\"queue_size\":10,\"flush_timeout\":0.05,"
           "\"name\":\"capi\"}",
           r.port);
  CHECK_RC(rc, BATCHQ_OK);
  if (!q) {
    fprintf(stderr, "%s\n", err);
    stop_receiver(&r);
    return;
  }
  /* errors on a live queue */
  CHECK_RC(batchq_enqueue(q, NULL, 5), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue(q, "x", 0), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue_ex(q, NULL, 0, err, sizeof err), BATCHQ_EINVAL);
  CHECK(strstr(err, "entry") != NULL);
  CHECK_RC(batchq_flush(q, -1), BATCHQ_EINVAL);

  for (i = 0; i < 100; ++i) {
    snprintf(entry, sizeof entry, "{\"capi_entry\":%d}", i);
    CHECK_RC(batchq_enqueue(q, entry, strlen(entry)), BATCHQ_OK);
  }
  CHECK_RC(batchq_flush(q, 20000), BATCHQ_OK);
  memset(&st, 0xAB, sizeof st);
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.struct_size == sizeof st);
  CHECK(st.enqueued == 100);
  CHECK(st.delivered == 100);
  CHECK(st.dropped == 0);
  CHECK(st.pending == 0 && st.in_flight == 0);
  CHECK(st.batches_delivered == 10);
  CHECK(st.enqueued == st.delivered + st.dropped + st.pending + st.in_flight);

  /* An older, smaller struct gets only its prefix. */
  {
    batchq_stats_t small;
    memset(&small, 0xCD, sizeof small);
    small.struct_size = offsetof(batchq_stats_t, pending);
    CHECK_RC(batchq_stats(q, &small), BATCHQ_OK);
    CHECK(small.enqueued == 100 && small.delivered == 100);
    CHECK(small.pending == 0xCDCDCDCDCDCDCDCDull); /* untouched */
    small.struct_size = 0;
    CHECK_RC(batchq_stats(q, &small), BATCHQ_EINVAL);
  }

  /* JSON and Prometheus renderings, with the size protocol. */
  CHECK_RC(batchq_stats_json(q, NULL, 0, &len), BATCHQ_ESMALLBUF);
  CHECK(len > 10);
  CHECK_RC(batchq_stats_json(q, buf, len, &len), BATCHQ_ESMALLBUF); /* no room for the NUL */
  CHECK_RC(batchq_stats_json(q, buf, sizeof buf, &len), BATCHQ_OK);
  CHECK(strlen(buf) == len);
  CHECK(strstr(buf, "\"enqueued\":100") != NULL);
  CHECK(strstr(buf, "\"delivered\":100") != NULL);
  CHECK(strstr(buf, "\"name\":\"capi\"") != NULL);
  CHECK_RC(batchq_stats_json(q, NULL, 5, &len), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats_prometheus(q, buf, sizeof buf, &len), BATCHQ_OK);
  CHECK(strstr(buf, "batchq_enqueued_total{queue=\"capi\"} 100") != NULL);
  CHECK(strstr(buf, "batchq_dropped_total{queue=\"capi\",reason=\"retries_exhausted\"} 0") != NULL);

  CHECK_RC(batchq_shutdown(q, 5000), BATCHQ_OK);
  CHECK_RC(batchq_shutdown(q, 5000), BATCHQ_OK); /* idempotent */
  CHECK_RC(batchq_enqueue_ex(q, "{}", 2, err, sizeof err), BATCHQ_ESHUTDOWN);
  CHECK(strstr(err, "shut down") != NULL);
  batchq_free(q);
  stop_receiver(&r);
  CHECK(count_lines_with(r.out, "capi_entry") == 100);
  {
    char needle[64];
    int missing = 0;
    for (i = 0; i < 100; ++i) {
      snprintf(needle, sizeof needle, "{\"capi_entry\":%d}", i);
      if (count_lines_with(r.out, needle) != 1) ++missing;
    }
    CHECK(missing == 0);
  }
}

static void test_refusals(void) {
  char err[512];
  batchq_queue *q;
  batchq_stats_t st;
  int rc;
  int port = dead_port();
  q = make(err, sizeof err, &rc,
           "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"validate_json\":true,\"max_bytes\":64,"
           "\"queue_size\":100,\"max_entries\":100,\"overflow\":\"refuse_new\",\"process_delay\":3600}",
           port);
  CHECK_RC(rc, BATCHQ_OK);
  if (!q) return;
  CHECK_RC(batchq_enqueue_ex(q, "{\"a\":1,}", 8, err, sizeof err), BATCHQ_EJSON);
  CHECK(strstr(err, "offset") != NULL);
  {
    char big[100];
    memset(big, ' ', sizeof big);
    big[0] = '{';
    big[sizeof big - 1] = '}';
    CHECK_RC(batchq_enqueue_ex(q, big, sizeof big, err, sizeof err), BATCHQ_ETOOLARGE);
    CHECK(strstr(err, "max_bytes (64 bytes)") != NULL);
  }
  CHECK_RC(batchq_enqueue(q, "{\"x\":\"0123456789012345678901234567890123456789\"}", 48), BATCHQ_OK);
  CHECK_RC(batchq_enqueue_ex(q, "{\"y\":\"0123456789012345678901234567890123456789\"}", 48, err, sizeof err),
           BATCHQ_EFULL);
  CHECK(strstr(err, "refuse_new") != NULL);
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.refused_invalid_json == 1);
  CHECK(st.refused_too_large == 1);
  CHECK(st.refused_full == 1);
  CHECK(st.enqueued == 1);
  CHECK_RC(batchq_flush(q, 0), BATCHQ_ETIMEDOUT); /* endpoint down: not finished, nothing lost */
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.dropped == 0);
  CHECK_RC(batchq_shutdown(q, 0), BATCHQ_ETIMEDOUT);
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.dropped_by_reason[BATCHQ_DROP_SHUTDOWN] == 1);
  CHECK(st.refused_shutdown == 0);
  batchq_free(q);
}

static void test_dead_endpoint_poll(void) {
  char err[512], line[512];
  batchq_queue *q;
  batchq_dropped d[64];
  batchq_stats_t st;
  size_t n = 0, got = 0, len = 0, k;
  int rc, i, level = -1, warnings = 0, bad = 0;
  int port = dead_port();
  q = make(err, sizeof err, &rc,
           "{\"http_endpoint\":\"http://user:s3cret@127.0.0.1:%d/\",\"queue_size\":5,\"retry_count\":2,"
           "\"backoff\":\"exponential\",\"initial_retry_delay\":0.01,\"max_retry_delay\":0.02,"
           "\"flush_timeout\":0.05,\"drop_buffer_entries\":20}",
           port);
  CHECK_RC(rc, BATCHQ_OK);
  if (!q) {
    fprintf(stderr, "%s\n", err);
    return;
  }
  for (i = 0; i < 25; ++i) CHECK_RC(batchq_enqueue(q, "{\"dead\":true}", 13), BATCHQ_OK);
  CHECK_RC(batchq_flush(q, 20000), BATCHQ_OK);
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.dropped == 25);
  CHECK(st.dropped_by_reason[BATCHQ_DROP_RETRIES_EXHAUSTED] == 25);
  CHECK(st.attempts == 10 && st.failed_attempts == 10);
  CHECK(st.drop_buffer_pending == 20);
  CHECK(st.drop_buffer_overflow == 5);
  CHECK(st.enqueued == st.delivered + st.dropped + st.pending + st.in_flight);

  d[0].struct_size = sizeof d[0];
  CHECK_RC(batchq_poll_dropped(q, d, 0, &n), BATCHQ_OK);
  CHECK(n == 0);
  CHECK_RC(batchq_poll_dropped(q, NULL, 3, &n), BATCHQ_EINVAL);
  CHECK_RC(batchq_poll_dropped(q, d, 3, NULL), BATCHQ_EINVAL);
  d[0].struct_size = 0;
  CHECK_RC(batchq_poll_dropped(q, d, 3, &n), BATCHQ_EINVAL);
  do {
    for (k = 0; k < 64; ++k) d[k].struct_size = sizeof d[k];
    CHECK_RC(batchq_poll_dropped(q, d, 7, &n), BATCHQ_OK);
    for (k = 0; k < n; ++k) {
      if (d[k].reason != BATCHQ_DROP_RETRIES_EXHAUSTED || d[k].attempts != 2 || d[k].len != 13 ||
          memcmp(d[k].data, "{\"dead\":true}", 13) != 0 || d[k].time_ms < 1600000000000LL ||
          !strstr(d[k].last_error, "failed request to 127.0.0.1:") || strstr(d[k].last_error, "s3cret"))
        ++bad;
    }
    got += n;
  } while (n > 0);
  CHECK(got == 20);
  CHECK(bad == 0);
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.drop_buffer_pending == 0);

  /* Log lines in Kong's wording, pulled. */
  for (;;) {
    CHECK_RC(batchq_poll_log(q, &level, line, sizeof line, &len), BATCHQ_OK);
    if (len == 0) break;
    CHECK(strlen(line) == len || len >= sizeof line);
    if (strstr(line, "failed to process entries:")) ++warnings;
    if (strstr(line, "s3cret")) ++bad;
  }
  CHECK(warnings == 5);
  CHECK(bad == 0);
  CHECK_RC(batchq_poll_log(q, NULL, line, sizeof line, &len), BATCHQ_EINVAL);
  CHECK_RC(batchq_poll_log(q, &level, NULL, 5, &len), BATCHQ_EINVAL);
  batchq_free(q);
}

/* C callbacks instead of the poll buffer. */
static int cb_drops = 0;
static int cb_logs = 0;
static void on_drop(void *user, const batchq_dropped *e, size_t count) {
  size_t i;
  for (i = 0; i < count; ++i)
    if (e[i].reason == BATCHQ_DROP_RETRIES_EXHAUSTED && e[i].len > 0) ++cb_drops;
  (void)user;
}
static void on_log(void *user, int level, const char *msg, size_t len) {
  ++*(int *)user;
  (void)level;
  (void)msg;
  (void)len;
}

static void test_callbacks(void) {
  char err[512], json[512];
  batchq_queue *q = NULL;
  batchq_callbacks cb;
  batchq_dropped d[4];
  batchq_stats_t st;
  size_t n = 9;
  int i;
  snprintf(json, sizeof json,
           "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"queue_size\":1,\"retry_count\":1,"
           "\"backoff\":\"exponential\",\"initial_retry_delay\":0.01,\"max_retry_delay\":0.02}", dead_port());
  memset(&cb, 0, sizeof cb);
  cb.struct_size = sizeof cb;
  cb.on_drop = on_drop;
  cb.on_log = on_log;
  cb.user = &cb_logs;
  CHECK_RC(batchq_new_with_callbacks(json, strlen(json), &cb, &q, err, sizeof err), BATCHQ_OK);
  if (!q) return;
  for (i = 0; i < 5; ++i) CHECK_RC(batchq_enqueue(q, "{\"cb\":1}", 8), BATCHQ_OK);
  CHECK_RC(batchq_flush(q, 20000), BATCHQ_OK);
  CHECK(cb_drops == 5);
  CHECK(cb_logs == 5); /* "entry batch was already tried 1 times, dropping it" x5 */
  d[0].struct_size = sizeof d[0];
  CHECK_RC(batchq_poll_dropped(q, d, 4, &n), BATCHQ_OK);
  CHECK(n == 0);
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.dropped == 5 && st.drop_buffer_pending == 0);
  batchq_free(q);

  cb.struct_size = 1;
  CHECK_RC(batchq_new_with_callbacks(json, strlen(json), &cb, &q, err, sizeof err), BATCHQ_EINVAL);
  CHECK_RC(batchq_new_with_callbacks(json, strlen(json), NULL, &q, err, sizeof err), BATCHQ_OK);
  batchq_free(q);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <batchq_receiver>\n", argv[0]);
    return 2;
  }
  receiver_exe = argv[1];
  snprintf(tmpdir, sizeof tmpdir, "/tmp/batchq-capi-XXXXXX");
  if (!mkdtemp(tmpdir)) return 2;
  signal(SIGPIPE, SIG_IGN);

  test_version_and_names();
  test_new_errors();
  test_null_arguments();
  test_delivery();
  test_refusals();
  test_dead_endpoint_poll();
  test_callbacks();

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
