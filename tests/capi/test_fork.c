/* A queue used in a child process after fork() (issue 12, item 8): every
 * call in the child returns BATCHQ_EFORK at once, batchq_free() does not wait
 * for shutdown_timeout, the child exits 0; the parent's queue keeps working.
 * Label capi. */
#define _POSIX_C_SOURCE 200809L

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batchq.h"

#include "check.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A port on 127.0.0.1 with nothing listening. */
static int unused_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int port = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(0x7f000001);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

/* In the child: each call fails with BATCHQ_EFORK; returns the exit code. */
static int child(batchq_queue *q) {
  char err[256];
  batchq_stats_t st;
  batchq_dropped d[4];
  size_t n = 0, len = 0;
  int level = 0;
  char buf[64];
  double t0;
  CHECK_RC(batchq_enqueue(q, "{\"c\":1}", 7), BATCHQ_EFORK);
  CHECK_RC(batchq_enqueue_ex(q, "{\"c\":1}", 7, err, sizeof err), BATCHQ_EFORK);
  CHECK(strstr(err, "after fork()") != NULL);
  CHECK_RC(batchq_flush(q, 60000), BATCHQ_EFORK); /* at once, not after 60 s */
  st.struct_size = sizeof st;
  CHECK_RC(batchq_stats(q, &st), BATCHQ_EFORK);
  CHECK_RC(batchq_stats_json(q, buf, sizeof buf, &len), BATCHQ_EFORK);
  CHECK_RC(batchq_stats_prometheus(q, buf, sizeof buf, &len), BATCHQ_EFORK);
  d[0].struct_size = sizeof d[0];
  CHECK_RC(batchq_poll_dropped(q, d, 4, &n), BATCHQ_EFORK);
  CHECK_RC(batchq_poll_log(q, &level, buf, sizeof buf, &len), BATCHQ_EFORK);
  CHECK_RC(batchq_shutdown(q, 60000), BATCHQ_EFORK);
  CHECK(strstr(batchq_strerror(BATCHQ_EFORK), "BATCHQ_EFORK") != NULL);
  t0 = now_s();
  batchq_free(q); /* shutdown_timeout is 60 s: it must not wait for it */
  CHECK(now_s() - t0 < 5.0);
  fprintf(stderr, "child: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

int main(void) {
  char cfg[512], err[256];
  batchq_queue *q = NULL;
  batchq_stats_t st;
  pid_t pid;
  int status = 0, i, rc;
  double t0;
  snprintf(cfg, sizeof cfg,
           "{\"http_endpoint\":\"http://127.0.0.1:%d/\",\"queue_size\":100,\"retry_count\":1000,"
           "\"shutdown_timeout\":60}",
           unused_port());
  rc = batchq_new(cfg, strlen(cfg), &q, err, sizeof err);
  CHECK_RC(rc, BATCHQ_OK);
  if (rc != BATCHQ_OK) {
    fprintf(stderr, "batchq_new: %s\n", err);
    return 1;
  }
  for (i = 0; i < 1000; ++i) CHECK_RC(batchq_enqueue(q, "{\"p\":1}", 7), BATCHQ_OK);

  t0 = now_s();
  pid = fork();
  if (pid == 0) _exit(child(q));
  CHECK(pid > 0);
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(now_s() - t0 < 30.0); /* the child did not wait for shutdown_timeout (60 s) */

  /* The parent's queue is untouched: it takes entries and its worker sends
   * (attempts grow against the closed port). */
  CHECK_RC(batchq_enqueue(q, "{\"p\":2}", 7), BATCHQ_OK);
  st.struct_size = sizeof st;
  for (i = 0; i < 500; ++i) {
    CHECK_RC(batchq_stats(q, &st), BATCHQ_OK);
    if (st.attempts > 0) break;
    {
      struct timespec ten_ms = {0, 10000000L};
      nanosleep(&ten_ms, NULL);
    }
  }
  CHECK(st.enqueued == 1001);
  CHECK(st.attempts > 0);
  CHECK_RC(batchq_shutdown(q, 0), BATCHQ_ETIMEDOUT);
  batchq_free(q);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
