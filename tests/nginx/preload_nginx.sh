#!/bin/sh
# nginx with a sanitizer runtime preloaded, for the sanitizer builds
# (.ci/sanitize asan|tsan): nginx is not instrumented, libbatchq.so is, and
# the runtime must be loaded before anything else. tests/nginx/CMakeLists.txt
# points BATCHQ_NGINX_BIN here and sets:
#   BATCHQ_PRELOAD              the runtime and libstdc++ (tests/CMakeLists.txt)
#   BATCHQ_NGINX_REAL           the nginx binary
#   BATCHQ_NGINX_SANITIZER_LOG  where reports go (<path>.<pid>); .ci/sanitize
#                               fails the run if any exists: a worker that
#                               aborts is respawned by the master, so a test
#                               could still pass
# Leak checking is off inside nginx: it exits without freeing its pools.
log=${BATCHQ_NGINX_SANITIZER_LOG:+:log_path=$BATCHQ_NGINX_SANITIZER_LOG}
LD_PRELOAD="$BATCHQ_PRELOAD" \
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0$log" \
TSAN_OPTIONS="${TSAN_OPTIONS:-}$log" \
  exec "$BATCHQ_NGINX_REAL" "$@"
