/* The batchq_receiver tool in a child process, for the C tests of the C ABI:
 * a real loopback HTTP endpoint. Header-only (static functions): each test
 * is its own program. */
#ifndef BATCHQ_TEST_RECEIVER_H
#define BATCHQ_TEST_RECEIVER_H

#include <signal.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct receiver {
  pid_t pid;
  int port;
  char out[512]; /* file of received entries (--out), "" for none */
} receiver;

/* Starts `exe` on an ephemeral 127.0.0.1 port with r->out (when set) and up
 * to two extra arguments (NULL for none); fills r->pid and r->port. 0 on
 * success, -1 when it could not be started or did not say its port. */
static int spawn_receiver(receiver *r, const char *exe, const char *extra1, const char *extra2) {
  int fds[2];
  char line[128];
  size_t n = 0;
  if (pipe(fds) != 0) return -1;
  r->pid = fork();
  if (r->pid < 0) return -1;
  if (r->pid == 0) {
    const char *argv[10];
    int a = 0;
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    argv[a++] = exe;
    argv[a++] = "--port";
    argv[a++] = "0";
    argv[a++] = "--quiet";
    if (r->out[0]) {
      argv[a++] = "--out";
      argv[a++] = r->out;
    }
    if (extra1) argv[a++] = extra1;
    if (extra2) argv[a++] = extra2;
    argv[a] = NULL;
    execv(exe, (char *const *)argv);
    _exit(127);
  }
  close(fds[1]);
  while (n + 1 < sizeof line) {
    char c;
    ssize_t got = read(fds[0], &c, 1);
    if (got <= 0 || c == '\n') break;
    line[n++] = c;
  }
  line[n] = '\0';
  close(fds[0]);
  if (sscanf(line, "listening on 127.0.0.1:%d", &r->port) != 1) return -1;
  return 0;
}

static void stop_receiver(receiver *r) {
  int status;
  if (r->pid <= 0) return;
  kill(r->pid, SIGTERM);
  waitpid(r->pid, &status, 0);
  r->pid = 0;
}

#endif
