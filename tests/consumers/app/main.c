/* A C consumer of the installed libbatchq.so (find_package(batchq) -> batchq::capi). */
#include <batchq.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  char err[256];
  batchq_queue *q = NULL;
  const char *bad = "{\"queue_sise\":1}";
  int rc;
  if (strcmp(batchq_version(), BATCHQ_VERSION_STRING) != 0) return 1;
  rc = batchq_new(bad, strlen(bad), &q, err, sizeof err);
  if (rc != BATCHQ_ECONFIG || q != NULL || strstr(err, "queue_size") == NULL) return 2;
  printf("C consumer: libbatchq %s refused a bad key: %s\n", batchq_version(), err);
  return 0;
}
