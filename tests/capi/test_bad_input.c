/*
 * The bad-input matrix of the C ABI (tests/BAD_INPUT.md): one check per row,
 * for what test_capi.c does not already cover, and the rows it does, again,
 * so that the matrix maps onto one test. C11, -pedantic; no receiver needed
 * (every endpoint is a closed port on 127.0.0.1).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batchq.h"

#include "check.h"

static int port;           /* closed port on 127.0.0.1 */
static int keep_fd = -1;   /* bound, never listening: keeps the port ours */
static char tmpdir[256];

static int closed_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  keep_fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (keep_fd < 0 || bind(keep_fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
  getsockname(keep_fd, (struct sockaddr *)&a, &len);
  return ntohs(a.sin_port);
}

/* batchq_new with a printf-formatted config; *rc and errbuf receive the result. */
static batchq_queue *make(int *rc, char *err, size_t errlen, const char *fmt, ...) {
  char json[4096];
  batchq_queue *q = (batchq_queue *)&keep_fd; /* garbage: must be reset to NULL on failure */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(json, sizeof json, fmt, ap);
  va_end(ap);
  *rc = batchq_new(json, strlen(json), &q, err, errlen);
  if (*rc != BATCHQ_OK && q != NULL) {
    ++failed;
    fprintf(stderr, "batchq_new failed (%d) but left *out non-NULL for %s\n", *rc, json);
    q = NULL;
  }
  return q;
}

/* A queue that must be created; its shutdown_timeout is 0 so that free is quick. */
static batchq_queue *live(const char *extra) {
  char err[512];
  int rc;
  memset(err, 'x', sizeof err);
  batchq_queue *q = make(&rc, err, sizeof err,
                         "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"shutdown_timeout\":0,"
                         "\"process_delay\":3600,\"queue_size\":1000,\"flush_timeout\":3600%s}",
                         port, extra);
  if (!q) {
    ++failed;
    fprintf(stderr, "cannot create a queue (%s): %s\n", extra, err);
  } else if (err[0] != '\0') {
    ++failed;
    fprintf(stderr, "batchq_new succeeded but left errbuf unterminated/non-empty\n");
  } else {
    ++passed;
  }
  return q;
}

/* Expects BATCHQ_ECONFIG (or `want`) and both needles in the message. */
static void expect_new(int want, const char *needle1, const char *needle2, const char *fmt, ...) {
  char json[4096], err[512];
  batchq_queue *q = (batchq_queue *)&keep_fd;
  int rc;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(json, sizeof json, fmt, ap);
  va_end(ap);
  err[0] = '\0';
  rc = batchq_new(json, strlen(json), &q, err, sizeof err);
  if (rc != want || q != NULL || (needle1 && !strstr(err, needle1)) || (needle2 && !strstr(err, needle2))) {
    ++failed;
    fprintf(stderr, "config %s: rc %d (%s), wanted %d; q %p; message \"%s\" should contain \"%s\" and \"%s\"\n",
            json, rc, batchq_strerror(rc), want, (void *)q, err, needle1 ? needle1 : "", needle2 ? needle2 : "");
    if (rc == BATCHQ_OK && q) batchq_free(q);
  } else {
    ++passed;
  }
}

/* ---- NULL pointers and zero lengths, every call -------------------------- */

static void test_null_and_zero(void) {
  char err[64], buf[64];
  const char *ok = "{\"http_endpoint\":\"http://127.0.0.1:9/\"}";
  batchq_queue *q = NULL;
  batchq_stats_t st;
  batchq_dropped d[2];
  batchq_callbacks cb;
  size_t n, len;
  int level;

  /* batchq_new / batchq_new_with_callbacks */
  CHECK_RC(batchq_new(ok, strlen(ok), NULL, err, sizeof err), BATCHQ_EINVAL);
  CHECK_RC(batchq_new(NULL, 0, &q, err, sizeof err), BATCHQ_EINVAL);
  CHECK(q == NULL);
  CHECK_RC(batchq_new(NULL, 5, &q, NULL, 0), BATCHQ_EINVAL);
  CHECK_RC(batchq_new(ok, 0, &q, err, sizeof err), BATCHQ_EINVAL);
  memset(err, 'x', sizeof err);
  CHECK_RC(batchq_new(ok, 0, &q, err, 0), BATCHQ_EINVAL); /* errbuf_len 0: errbuf untouched */
  CHECK(err[0] == 'x');
  CHECK_RC(batchq_new_with_callbacks(ok, strlen(ok), NULL, NULL, NULL, 0), BATCHQ_EINVAL);
  CHECK_RC(batchq_new_with_callbacks(NULL, 0, NULL, &q, NULL, 0), BATCHQ_EINVAL);
  memset(&cb, 0, sizeof cb);
  cb.struct_size = 0;
  CHECK_RC(batchq_new_with_callbacks(ok, strlen(ok), &cb, &q, err, sizeof err), BATCHQ_EINVAL);
  CHECK(strstr(err, "struct_size") != NULL);

  /* every call with a NULL queue */
  CHECK_RC(batchq_enqueue(NULL, "{}", 2), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue(NULL, NULL, 0), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue_ex(NULL, "{}", 2, err, sizeof err), BATCHQ_EINVAL);
  CHECK(strstr(err, "queue") != NULL);
  CHECK_RC(batchq_enqueue_ex(NULL, "{}", 2, NULL, 0), BATCHQ_EINVAL);
  CHECK_RC(batchq_flush(NULL, 0), BATCHQ_EINVAL);
  CHECK_RC(batchq_shutdown(NULL, 0), BATCHQ_EINVAL);
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(NULL, &st), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats(NULL, NULL), BATCHQ_EINVAL);
  n = 3;
  CHECK_RC(batchq_poll_dropped(NULL, NULL, 0, &n), BATCHQ_EINVAL);
  CHECK(n == 0);
  CHECK_RC(batchq_poll_dropped(NULL, NULL, 0, NULL), BATCHQ_EINVAL);
  len = 3;
  CHECK_RC(batchq_poll_log(NULL, &level, buf, sizeof buf, &len), BATCHQ_EINVAL);
  CHECK(len == 0);
  CHECK_RC(batchq_poll_log(NULL, NULL, NULL, 0, NULL), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats_json(NULL, NULL, 0, &len), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats_prometheus(NULL, NULL, 0, NULL), BATCHQ_EINVAL);
  batchq_free(NULL);
  ++passed;

  /* a live queue, NULL / zero arguments */
  q = live("");
  if (!q) return;
  CHECK_RC(batchq_enqueue(q, NULL, 0), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue(q, NULL, 3), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue(q, "{}", 0), BATCHQ_EINVAL);
  memset(err, 'x', sizeof err);
  CHECK_RC(batchq_enqueue_ex(q, "{}", 0, err, 1), BATCHQ_EINVAL); /* errbuf of 1: just the NUL */
  CHECK(err[0] == '\0' && err[1] == 'x');
  CHECK_RC(batchq_flush(q, -1), BATCHQ_EINVAL);
  CHECK_RC(batchq_shutdown(q, -5), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats(q, NULL), BATCHQ_EINVAL);
  st.struct_size = 0;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_EINVAL);
  st.struct_size = sizeof(size_t); /* just the size field: OK, nothing else written */
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK_RC(batchq_poll_dropped(q, NULL, 0, &n), BATCHQ_OK); /* max 0: out may be NULL */
  CHECK(n == 0);
  CHECK_RC(batchq_poll_dropped(q, NULL, 2, &n), BATCHQ_EINVAL);
  d[0].struct_size = sizeof d[0];
  CHECK_RC(batchq_poll_dropped(q, d, 2, NULL), BATCHQ_EINVAL);
  d[0].struct_size = 3;
  CHECK_RC(batchq_poll_dropped(q, d, 2, &n), BATCHQ_EINVAL);
  level = -1;
  CHECK_RC(batchq_poll_log(q, &level, NULL, 0, &len), BATCHQ_OK); /* no buffer, no line waiting */
  CHECK(len == 0);
  CHECK_RC(batchq_poll_log(q, &level, buf, sizeof buf, NULL), BATCHQ_EINVAL);
  CHECK_RC(batchq_poll_log(q, NULL, buf, sizeof buf, &len), BATCHQ_EINVAL);
  CHECK_RC(batchq_poll_log(q, &level, NULL, 8, &len), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats_json(q, buf, sizeof buf, NULL), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats_json(q, NULL, 8, &len), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats_json(q, NULL, 0, &len), BATCHQ_ESMALLBUF);
  CHECK(len > 0);
  CHECK_RC(batchq_stats_prometheus(q, buf, sizeof buf, NULL), BATCHQ_EINVAL);
  CHECK_RC(batchq_stats_prometheus(q, NULL, 0, &len), BATCHQ_ESMALLBUF);
  CHECK(len > 0);
  buf[0] = 'x';
  CHECK_RC(batchq_stats_json(q, buf, 1, &len), BATCHQ_ESMALLBUF); /* too small: empty string */
  CHECK(buf[0] == '\0');
  batchq_free(q);
}

/* ---- configuration -------------------------------------------------------- */

static void test_config(void) {
  const char *ep = "\"http_endpoint\":\"http://127.0.0.1:9/\"";
  /* invalid JSON / not an object */
  expect_new(BATCHQ_ECONFIG, "not valid JSON", "offset", "{%s,}", ep);
  expect_new(BATCHQ_ECONFIG, "not valid JSON", NULL, "{%s} trailing", ep);
  expect_new(BATCHQ_ECONFIG, "must be a JSON object", NULL, "\"just a string\"");
  expect_new(BATCHQ_ECONFIG, "must be a JSON object", NULL, "null");
  /* unknown and misspelled keys */
  expect_new(BATCHQ_ECONFIG, "unknown key", "did you mean retry_count", "{%s,\"retry_cout\":3}", ep);
  expect_new(BATCHQ_ECONFIG, "unknown key", "did you mean http_endpoint", "{\"http_endpont\":\"http://127.0.0.1:9/\"}");
  expect_new(BATCHQ_ECONFIG, "Queue_Size", "unknown key", "{%s,\"Queue_Size\":3}", ep); /* keys are case-sensitive */
  expect_new(BATCHQ_ECONFIG, "unknown key", NULL, "{%s,\"\":1}", ep);
  /* wrongly typed values */
  expect_new(BATCHQ_ECONFIG, "timeout", "got a string", "{%s,\"timeout\":\"1000\"}", ep);
  expect_new(BATCHQ_ECONFIG, "timeout", "got null", "{%s,\"timeout\":null}", ep);
  expect_new(BATCHQ_ECONFIG, "queue_size", "got a boolean", "{%s,\"queue_size\":true}", ep);
  expect_new(BATCHQ_ECONFIG, "queue_size", "got an array", "{%s,\"queue_size\":[1]}", ep);
  expect_new(BATCHQ_ECONFIG, "retry_count", "integer", "{%s,\"retry_count\":1.5}", ep);
  expect_new(BATCHQ_ECONFIG, "validate_json", "true or false", "{%s,\"validate_json\":\"true\"}", ep);
  expect_new(BATCHQ_ECONFIG, "headers", "object", "{%s,\"headers\":\"X-A: 1\"}", ep);
  expect_new(BATCHQ_ECONFIG, "headers", "must be a string", "{%s,\"headers\":{\"X-A\":1}}", ep);
  expect_new(BATCHQ_ECONFIG, "spool_dir", "string", "{%s,\"spool_dir\":5}", ep);
  expect_new(BATCHQ_ECONFIG, "http_endpoint", "string", "{\"http_endpoint\":{\"url\":\"x\"}}");
  /* values out of range, including numbers no integer type holds */
  expect_new(BATCHQ_ECONFIG, "queue_size", "integer", "{%s,\"queue_size\":-0.5}", ep);
  expect_new(BATCHQ_ECONFIG, "max_entries", NULL, "{%s,\"max_entries\":-1}", ep);
  expect_new(BATCHQ_ECONFIG, "max_bytes", NULL, "{%s,\"max_bytes\":-1}", ep);
  expect_new(BATCHQ_ECONFIG, "max_bytes", NULL, "{%s,\"max_bytes\":-1e19}", ep);
  expect_new(BATCHQ_ECONFIG, "timeout", NULL, "{%s,\"timeout\":-1e300}", ep);
  expect_new(BATCHQ_ECONFIG, "flush_timeout", "seconds", "{%s,\"flush_timeout\":-1e300}", ep);
  /* (Kong's schema leaves queue_size, max_bytes, timeout and flush_timeout
   * unbounded above: huge values are clamped, and queue_size < 1 acts as 1
   * as in Kong 2.x; see test_kong_compat.cpp.) */
  expect_new(BATCHQ_ECONFIG, "concurrency", NULL, "{%s,\"concurrency\":65}", ep);
  expect_new(BATCHQ_ECONFIG, "overflow", "drop_oldest, refuse_new", "{%s,\"overflow\":\"block\"}", ep);
  /* http_endpoint that is not an http(s) URL */
  expect_new(BATCHQ_ECONFIG, "http_endpoint", "required", "{\"queue_size\":1}");
  expect_new(BATCHQ_ECONFIG, "http_endpoint", NULL, "{\"http_endpoint\":\"\"}");
  expect_new(BATCHQ_ECONFIG, "http_endpoint", NULL, "{\"http_endpoint\":\"ftp://127.0.0.1/\"}");
  expect_new(BATCHQ_ECONFIG, "http_endpoint", NULL, "{\"http_endpoint\":\"file:///etc/passwd\"}");
  expect_new(BATCHQ_ECONFIG, "http_endpoint", NULL, "{\"http_endpoint\":\"127.0.0.1:9/logs\"}");
  expect_new(BATCHQ_ECONFIG, "http_endpoint", NULL, "{\"http_endpoint\":\"http://\"}");
  expect_new(BATCHQ_ECONFIG, "http_endpoint", NULL, "{\"http_endpoint\":\"http:///path\"}");
  expect_new(BATCHQ_ECONFIG, "http_endpoint", NULL, "{\"http_endpoint\":\"http://127.0.0.1:9/a b\"}");
  /* a config that is fine except for a NUL byte inside the length */
  {
    char json[] = "{\"http_endpoint\":\"http://127.0.0.1:9/\"}\0{";
    batchq_queue *q = NULL;
    char err[256];
    CHECK_RC(batchq_new(json, sizeof json - 1, &q, err, sizeof err), BATCHQ_ECONFIG);
    CHECK(q == NULL);
  }
  /* deeply nested JSON: an error, not a stack overflow */
  {
    const size_t depth = 1000000;
    char *json = (char *)malloc(depth + 64);
    char err[256];
    batchq_queue *q = NULL;
    size_t i;
    if (json) {
      for (i = 0; i < depth; ++i) json[i] = '[';
      CHECK_RC(batchq_new(json, depth, &q, err, sizeof err), BATCHQ_ECONFIG);
      CHECK(q == NULL);
      free(json);
    }
  }
}

/* ---- entries ---------------------------------------------------------------- */

/* Entries as LuaJIT string.buffer encodings (batchq_enqueue_lua,
 * batchq_lua_to_json). {a=1} encodes as 09 01 21 'a' 07 <double 1.0 LE>. */
static const char lua_a1[] = "\x09\x01\x21" "a" "\x07\x00\x00\x00\x00\x00\x00\xf0\x3f";
static void test_lua_entries(void) {
  char err[256];
  char out[64];
  size_t n = 99;
  const char nan_enc[] = "\x09\x01\x21" "a" "\x07\x00\x00\x00\x00\x00\x00\xf8\x7f"; /* {a=0/0} */
  batchq_queue *q;
  batchq_stats_t st;

  CHECK_RC(batchq_lua_to_json(lua_a1, sizeof lua_a1 - 1, out, sizeof out, &n, err, sizeof err), BATCHQ_OK);
  CHECK(n == 7 && strcmp(out, "{\"a\":1}") == 0 && err[0] == '\0');
  CHECK_RC(batchq_lua_to_json(lua_a1, sizeof lua_a1 - 1, out, 7, &n, NULL, 0), BATCHQ_ESMALLBUF);
  CHECK(n == 7); /* the size needed, without the NUL */
  CHECK_RC(batchq_lua_to_json(lua_a1, sizeof lua_a1 - 1, NULL, 0, &n, NULL, 0), BATCHQ_ESMALLBUF);
  CHECK_RC(batchq_lua_to_json(lua_a1, sizeof lua_a1 - 1, out, sizeof out, NULL, err, sizeof err), BATCHQ_EINVAL);
  CHECK_RC(batchq_lua_to_json(NULL, 3, out, sizeof out, &n, err, sizeof err), BATCHQ_EINVAL);
  CHECK_RC(batchq_lua_to_json(lua_a1, 0, out, sizeof out, &n, err, sizeof err), BATCHQ_EINVAL);
  CHECK_RC(batchq_lua_to_json(lua_a1, 5, out, sizeof out, &n, err, sizeof err), BATCHQ_EJSON); /* truncated */
  CHECK(strstr(err, "not a LuaJIT string.buffer encoding") != NULL && strstr(err, "offset") != NULL);
  CHECK_RC(batchq_lua_to_json(nan_enc, sizeof nan_enc - 1, out, sizeof out, &n, err, sizeof err), BATCHQ_EJSON);
  CHECK(strstr(err, "cannot become JSON") != NULL && strstr(err, "NaN") != NULL);

  q = live("");
  if (!q) return;
  CHECK_RC(batchq_enqueue_lua(NULL, lua_a1, sizeof lua_a1 - 1, err, sizeof err), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue_lua(q, NULL, 3, err, sizeof err), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue_lua(q, lua_a1, 0, err, sizeof err), BATCHQ_EINVAL);
  CHECK_RC(batchq_enqueue_lua(q, lua_a1, 5, err, sizeof err), BATCHQ_EJSON);
  CHECK(strstr(err, "truncated") != NULL);
  CHECK_RC(batchq_enqueue_lua(q, nan_enc, sizeof nan_enc - 1, NULL, 0), BATCHQ_EJSON);
  memset(err, 'x', sizeof err);
  CHECK_RC(batchq_enqueue_lua(q, lua_a1, sizeof lua_a1 - 1, err, sizeof err), BATCHQ_OK);
  CHECK(err[0] == '\0');
  CHECK_RC(batchq_shutdown(q, 0), BATCHQ_ETIMEDOUT); /* the entry is dropped (shutdown) ... */
  CHECK_RC(batchq_enqueue_lua(q, lua_a1, sizeof lua_a1 - 1, err, sizeof err), BATCHQ_ESHUTDOWN);
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.refused_invalid_json == 2 && st.enqueued == 1 && st.refused_shutdown == 1);
  {
    batchq_dropped d[2];
    size_t k = 0;
    d[0].struct_size = sizeof d[0];
    CHECK_RC(batchq_poll_dropped(q, d, 2, &k), BATCHQ_OK); /* ... and handed back as JSON */
    CHECK(k == 1 && d[0].len == 7 && memcmp(d[0].data, "{\"a\":1}", 7) == 0);
  }
  batchq_free(q);
}

static void test_entries(void) {
  char err[256];
  char big[300];
  batchq_queue *q;
  batchq_stats_t st;

  /* larger than max_bytes: refused, caller keeps it; with and without an errbuf */
  q = live(",\"max_bytes\":256");
  if (!q) return;
  memset(big, 'a', sizeof big);
  big[0] = '"';
  big[sizeof big - 1] = '"';
  CHECK_RC(batchq_enqueue(q, big, sizeof big), BATCHQ_ETOOLARGE);
  CHECK_RC(batchq_enqueue_ex(q, big, sizeof big, err, sizeof err), BATCHQ_ETOOLARGE);
  CHECK(strstr(err, "max_bytes") != NULL);
  CHECK_RC(batchq_enqueue_ex(q, big, sizeof big, NULL, 0), BATCHQ_ETOOLARGE);
  big[255] = '"'; /* one JSON string of exactly max_bytes: fits */
  CHECK_RC(batchq_enqueue(q, big, 256), BATCHQ_OK);
  memset(err, 'x', sizeof err);
  CHECK_RC(batchq_enqueue_ex(q, "{}", 2, err, sizeof err), BATCHQ_OK);
  CHECK(err[0] == '\0'); /* errbuf is NUL-terminated on success too: empty */
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.refused_too_large == 3 && st.enqueued == 2);
  batchq_free(q);

  /* invalid JSON with validate_json on: refused with the offset */
  q = live(",\"validate_json\":true");
  if (!q) return;
  CHECK_RC(batchq_enqueue_ex(q, "{\"a\":", 5, err, sizeof err), BATCHQ_EJSON);
  CHECK(strstr(err, "offset") != NULL);
  CHECK_RC(batchq_enqueue(q, "not json", 8), BATCHQ_EJSON);
  CHECK_RC(batchq_enqueue(q, "{} {}", 5), BATCHQ_EJSON);          /* two values */
  CHECK_RC(batchq_enqueue(q, "{\"a\":\"\xff\"}", 9), BATCHQ_EJSON); /* invalid UTF-8 */
  CHECK_RC(batchq_enqueue(q, "{}\0{}", 5), BATCHQ_EJSON);         /* NUL inside */
  CHECK_RC(batchq_enqueue(q, " {\"ok\":[1,2.5e3,null]} ", 23), BATCHQ_OK);
  CHECK_RC(batchq_enqueue(q, "\"a string\"", 10), BATCHQ_OK); /* any JSON value, not only objects */
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.refused_invalid_json == 5 && st.enqueued == 2);
  batchq_free(q);

  /* ... with validation off, bytes are taken as they are unless they would
     change the batch's framing (the poison-entry rule: one value per entry) */
  q = live("");
  if (!q) return;
  CHECK_RC(batchq_enqueue(q, "notjson", 7), BATCHQ_OK);
  CHECK_RC(batchq_enqueue(q, "{\"a\":tru}", 9), BATCHQ_OK);
  CHECK_RC(batchq_enqueue(q, "not json", 8), BATCHQ_EJSON);
  CHECK_RC(batchq_enqueue_ex(q, "{}\0{}", 5, err, sizeof err), BATCHQ_EJSON);
  CHECK(strstr(err, "framing") != NULL);
  CHECK_RC(batchq_enqueue(q, "{\"a\":1},{\"b\":2}", 15), BATCHQ_EJSON);
  batchq_free(q);

  /* after shutdown: refused, counted; flush/stats/poll still work; shutdown idempotent */
  q = live("");
  if (!q) return;
  CHECK_RC(batchq_enqueue(q, "{\"before\":1}", 12), BATCHQ_OK);
  CHECK_RC(batchq_shutdown(q, 0), BATCHQ_ETIMEDOUT); /* one entry could not be sent: dropped (shutdown) */
  CHECK_RC(batchq_enqueue(q, "{}", 2), BATCHQ_ESHUTDOWN);
  CHECK_RC(batchq_enqueue_ex(q, "{}", 2, err, sizeof err), BATCHQ_ESHUTDOWN);
  CHECK(strstr(err, "shut down") != NULL);
  CHECK_RC(batchq_flush(q, 0), BATCHQ_OK);             /* nothing left to wait for */
  CHECK_RC(batchq_shutdown(q, 0), BATCHQ_ETIMEDOUT);    /* idempotent: the same answer again */
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
  CHECK(st.refused_shutdown == 2 && st.dropped_by_reason[BATCHQ_DROP_SHUTDOWN] == 1 && st.pending == 0);
  {
    batchq_dropped d[2];
    size_t n = 0;
    d[0].struct_size = sizeof d[0];
    CHECK_RC(batchq_poll_dropped(q, d, 2, &n), BATCHQ_OK); /* dropped entries can still be polled */
    CHECK(n == 1 && d[0].reason == BATCHQ_DROP_SHUTDOWN && d[0].len == 12);
  }
  batchq_free(q);
}

/* ---- spool directory -------------------------------------------------------- */

static void test_spool_dirs(void) {
  char path[512], file[512], err[512];
  batchq_queue *q;
  int rc, fd;

  /* does not exist: created with its parents (0700), like mkdir -p */
  snprintf(path, sizeof path, "%s/missing/spool", tmpdir);
  q = make(&rc, err, sizeof err, "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"spool_dir\":\"%s\"}", port, path);
  CHECK_RC(rc, BATCHQ_OK);
  {
    struct stat st;
    CHECK(q != NULL && stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
  }
  batchq_free(q);

  /* a regular file, not a directory */
  snprintf(file, sizeof file, "%s/a-file", tmpdir);
  fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd >= 0) close(fd);
  q = make(&rc, err, sizeof err, "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"spool_dir\":\"%s\"}", port, file);
  CHECK_RC(rc, BATCHQ_ESPOOL);
  CHECK(q == NULL && strstr(err, "is not a directory") != NULL);

  /* cannot be created: a regular file in the path. A runtime condition
   * (issue 12, item 11): the queue is made and works in memory. */
  snprintf(path, sizeof path, "%s/a-file/spool", tmpdir);
  q = make(&rc, err, sizeof err, "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"spool_dir\":\"%s\"}", port, path);
  CHECK_RC(rc, BATCHQ_OK);
  if (q != NULL) {
    batchq_stats_t st;
    st.struct_size = sizeof st;
    CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
    CHECK(st.spool_unavailable == 1);
    CHECK_RC(batchq_enqueue(q, "{}", 2), BATCHQ_OK);
  }
  batchq_free(q);

  /* the spool's own directory (spool_dir/dead-letter) writable by others:
   * not used, another user could plant or swap segments. spool_dir itself may
   * be shared: the subdirectories are created with mode 0700. A spool that
   * cannot be used is a runtime condition (issue 12, item 11): the queue is
   * made and works in memory, spool_unavailable says so, the log says why. */
  snprintf(path, sizeof path, "%s/shared", tmpdir);
  mkdir(path, 0700);
  chmod(path, 0777);
  snprintf(file, sizeof file, "%s/shared/dead-letter", tmpdir);
  mkdir(file, 0700);
  chmod(file, 0777);
  q = make(&rc, err, sizeof err,
           "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"spool_dir\":\"%s\",\"shutdown_timeout\":0}", port, path);
  CHECK_RC(rc, BATCHQ_OK);
  if (q) {
    batchq_stats_t st;
    int level = 0;
    size_t len = 0;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
    CHECK(st.spool_unavailable == 1);
    CHECK_RC(batchq_poll_log(q, &level, err, sizeof err, &len), BATCHQ_OK);
    CHECK(strstr(err, "writable by group or others") != NULL && strstr(err, "in memory") != NULL);
    batchq_free(q);
  }
  chmod(file, 0700);
  q = make(&rc, err, sizeof err,
           "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"spool_dir\":\"%s\",\"shutdown_timeout\":0}", port, path);
  CHECK_RC(rc, BATCHQ_OK);
  if (q) batchq_free(q);

  /* a directory nobody can create files in (procfs), for root too: the queue
   * works in memory, the spool is unavailable */
  q = make(&rc, err, sizeof err,
           "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"spool_dir\":\"/proc/self/fdinfo\",\"shutdown_timeout\":0}",
           port);
  CHECK_RC(rc, BATCHQ_OK);
  if (q) {
    batchq_stats_t st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
    CHECK(st.spool_unavailable == 1);
    batchq_free(q);
  }

  /* read-only for its owner (mode 0500): refused, except for root, whom
   * permission bits do not stop (documented in BAD_INPUT.md) */
  snprintf(path, sizeof path, "%s/read-only", tmpdir);
  mkdir(path, 0500);
  chmod(path, 0500);
  q = make(&rc, err, sizeof err,
           "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"spool_dir\":\"%s\",\"shutdown_timeout\":0}", port, path);
  CHECK_RC(rc, BATCHQ_OK); /* for a non-root user: in memory, spool_unavailable = 1 (as above) */
  if (q) batchq_free(q);
  chmod(path, 0700);

  /* a spool option out of range is a configuration error, not a spool error */
  snprintf(path, sizeof path, "%s", tmpdir);
  q = make(&rc, err, sizeof err,
           "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"spool_dir\":\"%s\",\"spool_segment_bytes\":10}", port, path);
  CHECK_RC(rc, BATCHQ_ECONFIG);
  CHECK(q == NULL && strstr(err, "spool_segment_bytes") != NULL);
}

/* ---- names of unknown codes ------------------------------------------------------ */

static void test_unknown_codes(void) {
  CHECK(strcmp(batchq_strerror(1), "unknown error") == 0);
  CHECK(strcmp(batchq_strerror(-1000), "unknown error") == 0);
  CHECK(strcmp(batchq_strerror(INT32_MIN), "unknown error") == 0);
  CHECK(strcmp(batchq_drop_reason_name(6), "unknown") == 0);
  CHECK(strcmp(batchq_drop_reason_name(INT32_MIN), "unknown") == 0);
}

int main(void) {
  char cmd[600];
  port = closed_port();
  if (port <= 0) {
    fprintf(stderr, "cannot bind a port on 127.0.0.1\n");
    return 2;
  }
  snprintf(tmpdir, sizeof tmpdir, "/tmp/batchq-bad-input-XXXXXX");
  if (!mkdtemp(tmpdir)) return 2;

  test_null_and_zero();
  test_config();
  test_entries();
  test_lua_entries();
  test_spool_dirs();
  test_unknown_codes();

  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  close(keep_fd);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
