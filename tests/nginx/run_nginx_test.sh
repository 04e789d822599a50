#!/usr/bin/env bash
# tests/nginx/run_nginx_test.sh - the batchq-log Kong plugin example in a real
# nginx (2 workers, master process) with the OpenResty Lua module, the Kong
# PDK stand-in (kong_standin.lua), libbatchq.so and a real receiver.
#
#   run_nginx_test.sh deliver   N requests -> N entries, each once, right path/status
#   run_nginx_test.sh down      endpoint down / failing past the retry budget:
#                               every entry is received or reported dropped
#   run_nginx_test.sh reload    nginx -s reload and -s quit during a load: every
#                               answered request's entry is delivered or reported
#                               (exit_worker_by_lua calls the handler's exit_worker())
#   run_nginx_test.sh reload-kong  the same without that hook, as under Kong: the
#                               queues close when the worker starts exiting
#   run_nginx_test.sh badconf   http_endpoint "ftp://x": requests still served,
#                               the error is logged once per worker, counts add up
#   run_nginx_test.sh exit      worker exit never blocks: 3 queues (3 configurations)
#                               whose receiver accepts and never answers, a request
#                               sleeping 2 s in flight during nginx -s quit finishes
#                               within 0.5 s of its own time; every answered entry is
#                               delivered or reported.
#   run_nginx_test.sh exit-hook the same with exit_worker() called from
#                               exit_worker_by_lua (entries of late requests queued)
#   run_nginx_test.sh restart   endpoint down with a spool: nginx -s quit keeps the
#                               queued entries on disk; the endpoint comes back,
#                               nginx starts again and delivers every one of them
#   run_nginx_test.sh spool     endpoint down with a dead-letter spool, reload in
#                               the middle (the new workers find their spool still
#                               locked by the old ones): every entry is in the
#                               spool (read back with batchq-replay) or reported
#
# Environment (ctest sets these from CMake):
#   BATCHQ_SRC        source tree (capi/lua, examples/kong-plugin, tests/nginx)
#   BATCHQ_LIB_DIR    directory of libbatchq.so (becomes lua_package_cpath)
#   BATCHQ_RECEIVER   the batchq_receiver executable
#   BATCHQ_REPLAY     the batchq-replay tool (spool scenario only)
#   BATCHQ_NGINX_BIN  nginx binary (default: nginx). Not "NGINX": nginx reads
#                     that variable itself (inherited listening sockets).
#   LUAJIT            luajit binary (default: luajit), runs check.lua
#   BATCHQ_NGINX_MODULES  directory with ngx_http_lua_module.so and
#                     ndk_http_module.so (default /usr/lib/nginx/modules); when
#                     the Lua module is not there it is assumed built in
#                     (OpenResty).
#   BATCHQ_KEEP=1     keep the run directory even when the test passes.
#   KONG_SRC          Kong source trees (";"-separated); the first one's
#                     kong.tools.sandbox runs custom_fields_by_lua (default:
#                     <repo>/../shared/kong-src/<newest>). Without one, the
#                     plugin refuses to run that code and the deliver check
#                     expects the field to be missing.
# Every process started here is stopped on exit (trap), also on failure or
# timeout; the temp dir is removed on success and kept (and named) on failure.
set -euo pipefail

scenario=${1:?usage: run_nginx_test.sh deliver|down|reload|badconf}
: "${BATCHQ_SRC:?BATCHQ_SRC must name the source tree}"
: "${BATCHQ_LIB_DIR:?BATCHQ_LIB_DIR must name the directory of libbatchq.so}"
: "${BATCHQ_RECEIVER:?BATCHQ_RECEIVER must name the batchq_receiver executable}"
NGINX_BIN=${BATCHQ_NGINX_BIN:-nginx}
# on: the handler is told that exit_worker_by_lua calls exit_worker();
# off: it shuts its queues down when its timer sees the worker exit (Kong).
EXIT_HOOK=on
unset NGINX  # nginx would read it as inherited sockets
LUAJIT=${LUAJIT:-luajit}
MODULES=${BATCHQ_NGINX_MODULES:-/usr/lib/nginx/modules}
HERE="$BATCHQ_SRC/tests/nginx"

# A Kong tree for kong.tools.sandbox (custom_fields_by_lua).
KONG_TREE=
KONG_SRC=${KONG_SRC:-}
for t in ${KONG_SRC//;/ } $(ls -d "$BATCHQ_SRC"/../shared/kong-src/*/ "$BATCHQ_SRC"/../../shared/kong-src/*/ 2>/dev/null | sort -rV); do
  if [ -f "$t/kong/tools/sandbox.lua" ]; then KONG_TREE=${t%/}; break; fi
done
KONG_LUA_PATH=
SANDBOX=no
if [ -n "$KONG_TREE" ]; then KONG_LUA_PATH="$KONG_TREE/?.lua;"; SANDBOX=yes; fi

# Without the Lua module there is nothing to test: 77 is ctest's "skipped".
if [ ! -f "$MODULES/ngx_http_lua_module.so" ] && ! "$NGINX_BIN" -V 2>&1 | grep -q lua; then
  echo "SKIP: nginx has no Lua module ($MODULES/ngx_http_lua_module.so is missing)"
  exit 77
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/batchq-nginx-$scenario-XXXXXX")
MASTER_PID=
RX_PID=
WATCHDOG_PID=
LOAD_PIDS=()

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Waits until "$@" succeeds, at most $WAIT_S seconds (default 10).
wait_until() {
  local limit=$(( ${WAIT_S:-10} * 10 )) i=0
  until "$@"; do
    i=$((i + 1))
    if [ "$i" -ge "$limit" ]; then return 1; fi
    sleep 0.1
  done
}

stop_nginx_hard() {
  if alive "$MASTER_PID"; then
    local workers
    workers=$(pgrep -P "$MASTER_PID" || true)
    kill -TERM "$MASTER_PID" 2>/dev/null || true
    WAIT_S=5 wait_until bash -c "! kill -0 $MASTER_PID 2>/dev/null" || {
      kill -KILL "$MASTER_PID" 2>/dev/null || true
      for w in $workers; do kill -KILL "$w" 2>/dev/null || true; done
    }
  fi
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_nginx_hard
  if alive "$RX_PID"; then
    # Bounded: an ASan build's receiver has hung at exit inside
    # LeakSanitizer's stop-the-world (its tracer waiting for a stop that did
    # not come), which left this wait to ctest's timeout.
    kill -TERM "$RX_PID" 2>/dev/null || true
    WAIT_S=30 wait_until bash -c "! kill -0 $RX_PID 2>/dev/null" || {
      echo "receiver did not exit within 30 s of SIGTERM; killed (its stderr: $(tail -c 300 "$T/rx.stderr" 2>/dev/null))"
      pkill -KILL -P "$RX_PID" 2>/dev/null || true
      kill -KILL "$RX_PID" 2>/dev/null || true
    }
    wait "$RX_PID" 2>/dev/null || true
  fi
  if alive "$WATCHDOG_PID"; then kill "$WATCHDOG_PID" 2>/dev/null || true; fi
  if [ "$status" -eq 0 ] && [ -z "${BATCHQ_KEEP:-}" ]; then
    rm -rf "$T"
  elif [ "$status" -eq 0 ]; then
    echo "files kept in $T (BATCHQ_KEEP)"
  else
    echo "---- FAILED ($scenario), files kept in $T; last lines of error.log:"
    tail -n 40 "$T/error.log" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'echo "interrupted or timed out (watchdog: ${BATCHQ_NGINX_WATCHDOG:-180} s)"; exit 1' INT TERM

# A run takes well under a minute on a quiet machine; the watchdog (180 s, for
# loaded 2-core machines and sanitizer builds) turns a hang into a
# failure with cleanup (ctest's own timeout would kill without it). Its
# output goes nowhere and it takes its sleep down with it, so that no
# leftover process keeps ctest's output pipe open.
( trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "${BATCHQ_NGINX_WATCHDOG:-180}" & sp=$!
  wait "$sp" && kill -TERM $$ ) >/dev/null 2>&1 </dev/null &
WATCHDOG_PID=$!

mkdir -p "$T/tmp"

# ---- receiver ------------------------------------------------------------------
start_receiver() {
  # `timeout` is a safety net in case this script is killed with SIGKILL.
  timeout 240 "$BATCHQ_RECEIVER" --port 0 --out "$T/rx.out" --quiet "$@" \
    >"$T/rx.stdout" 2>"$T/rx.stderr" </dev/null &
  RX_PID=$!
  WAIT_S=10 wait_until grep -q "listening on" "$T/rx.stdout" || {
    echo "receiver did not start: $(cat "$T/rx.stderr")"; exit 1; }
  RX_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/rx.stdout")
  log "receiver on 127.0.0.1:$RX_PORT"
}

free_port() { "$LUAJIT" "$HERE/free_port.lua"; }

# ---- nginx ---------------------------------------------------------------------
write_nginx_conf() {
  local load_modules="" user_line="" temp_paths=""
  if [ -f "$MODULES/ngx_http_lua_module.so" ]; then
    [ -f "$MODULES/ndk_http_module.so" ] && load_modules="load_module $MODULES/ndk_http_module.so;"
    load_modules="$load_modules
load_module $MODULES/ngx_http_lua_module.so;"
  fi
  # As root, workers would switch to "nobody" and could not write $T.
  if [ "$(id -u)" = 0 ]; then user_line="user root;"; fi
  local v
  v=$("$NGINX_BIN" -V 2>&1)
  temp_paths="client_body_temp_path $T/tmp/body;"
  for m in proxy fastcgi uwsgi scgi; do
    case "$v" in *"--without-http_${m}_module"*) ;; *) temp_paths="$temp_paths
  ${m}_temp_path $T/tmp/$m;";; esac
  done

  cat >"$T/nginx.conf" <<EOF
$load_modules
$user_line
worker_processes ${WORKERS:-2};
master_process on;
daemon on;
pid $T/nginx.pid;
error_log $T/error.log notice;
events { worker_connections 1024; }
http {
  log_format plain '\$request_uri \$status';
  access_log $T/access.log plain;
  $temp_paths
  lua_package_path "$T/?.lua;$BATCHQ_SRC/capi/lua/?.lua;$BATCHQ_SRC/examples/kong-plugin/?.lua;$HERE/?.lua;$KONG_LUA_PATH;";
  lua_package_cpath "$BATCHQ_LIB_DIR/?.so;;";

  init_by_lua_block {
    -- As in Kong: the PDK global and the plugin's handler are loaded in the
    -- master; queues are made in the workers only.
    require "kong_standin"
    require "kong.plugins.batchq-log.handler"
  }
  init_worker_by_lua_block {
    local handler = require "kong.plugins.batchq-log.handler"
    -- exit_worker_by_lua below calls exit_worker(): queues stay open until
    -- the worker's last request is logged ($EXIT_HOOK)
    if "$EXIT_HOOK" == "on" then
      handler.use_exit_worker_hook()
    end
    handler:init_worker()
  }
  exit_worker_by_lua_block {
    require("kong.plugins.batchq-log.handler").exit_worker()
  }

  server {
    listen 127.0.0.1:$NGINX_PORT;
    # /r/<i> and /s/<i>: 404 when i is a multiple of 5, else 200; the log
    # phase runs the plugin with the configuration test_conf.r / test_conf.s.
    location = /ping { return 200 "pong\n"; }

    # /slow/<i>: answers after 2 s (exit scenario), logged with test_conf.r
    location ~ ^/slow/(\d+)\$ {
      set \$conf_name r;
      content_by_lua_block {
        ngx.sleep(2)
        ngx.say("ok")
      }
      log_by_lua_block {
        local conf = require("test_conf")[ngx.var.conf_name]
        require("kong.plugins.batchq-log.handler"):log(conf)
      }
    }

    location ~ ^/(r|s|t)/(\d+)\$ {
      set \$conf_name \$1;
      content_by_lua_block {
        local i = tonumber(ngx.var.uri:match("(%d+)\$"))
        if i % 5 == 0 then
          ngx.status = 404
          ngx.say("not found")
        else
          ngx.say("ok")
        end
      }
      log_by_lua_block {
        local conf = require("test_conf")[ngx.var.conf_name]
        require("kong.plugins.batchq-log.handler"):log(conf)
      }
    }
  }
}
EOF
}

# Output goes to a file: a daemonized master must not keep ctest's pipes open.
nginx_cmd() { "$NGINX_BIN" -p "$T" -c "$T/nginx.conf" -e "$T/error.log" "$@" >>"$T/nginx.out" 2>&1; }

start_nginx() {
  local attempt
  for attempt in 1 2 3; do
    NGINX_PORT=$(free_port)
    write_nginx_conf
    nginx_cmd -t -q || { echo "nginx -t failed:"; cat "$T/nginx.out"; exit 1; }
    if nginx_cmd; then
      WAIT_S=10 wait_until test -s "$T/nginx.pid" || true
      MASTER_PID=$(cat "$T/nginx.pid" 2>/dev/null || true)
      if WAIT_S=10 wait_until curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/ping"; then
        log "nginx master $MASTER_PID on 127.0.0.1:$NGINX_PORT"
        return 0
      fi
    fi
    log "nginx did not come up (attempt $attempt), retrying on another port"
    stop_nginx_hard
  done
  echo "nginx would not start"; exit 1
}

quit_nginx() {
  log "nginx -s quit"
  nginx_cmd -s quit
  WAIT_S=40 wait_until bash -c "! kill -0 $MASTER_PID 2>/dev/null" || {
    echo "nginx master did not exit after quit"; exit 1; }
  log "nginx exited"
}

# One request; appends "<path> <status>" to $T/requests (000 = no response).
request() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$NGINX_PORT$1" || true)
  echo "$1 ${code:-000}" >>"$T/requests.$2"
}

check() { "$LUAJIT" "$HERE/check.lua" "$@" dir="$T"; }

count_lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }

fast_fail='retry_count = 2, backoff = "exponential", initial_retry_delay = 0.01, max_retry_delay = 0.05, drop_poll_interval = 0.2, timeout = 2000'

case "$scenario" in
deliver)
  start_receiver
  cat >"$T/test_conf.lua" <<EOF
return {
  r = {
    http_endpoint = "http://127.0.0.1:$RX_PORT/logs",
    method = "POST", content_type = "application/json",
    timeout = 10000, keepalive = 60000, retry_count = 10,
    queue_size = 1, flush_timeout = 2,
    headers = { ["X-Test"] = "batchq" },
    custom_fields_by_lua = { ["batchq_test.worker"] = "return 'w' .. ngx.worker.id()" },
    drop_poll_interval = 0.2,
  },
  s = {
    http_endpoint = "http://127.0.0.1:$RX_PORT/batched",
    queue_size = 25, flush_timeout = 0.2,
  },
}
EOF
  start_nginx
  N=200
  for i in $(seq 1 $N); do request "/r/$i" main; done
  for i in $(seq 1 $N); do request "/s/$((10000 + i))" main; done
  WAIT_S=20 wait_until bash -c "[ \$(wc -l <'$T/rx.out' 2>/dev/null || echo 0) -ge $((2 * N)) ]" || true
  log "receiver has $(count_lines "$T/rx.out") entries"
  quit_nginx
  check deliver sandbox="$SANDBOX"
  ;;

down)
  start_receiver --fail-status 500 --fail-first 6
  DEAD=$(free_port)
  cat >"$T/test_conf.lua" <<EOF
return {
  -- nothing listens there
  r = { http_endpoint = "http://127.0.0.1:$DEAD/logs", $fast_fail },
  -- answers 500 to its first 6 requests
  s = { http_endpoint = "http://127.0.0.1:$RX_PORT/logs", $fast_fail },
}
EOF
  start_nginx
  N=40
  for i in $(seq 1 $N); do
    request "/r/$i" main
    request "/s/$((10000 + i))" main
  done
  # Give the queues time to use up their retries and the timer to report.
  WAIT_S=20 wait_until bash -c "[ \$(grep -c 'dropped entry (' '$T/error.log' || true) -ge $N ]" || true
  sleep 1
  quit_nginx
  check down
  ;;

reload|reload-kong)
  [ "$scenario" = reload-kong ] && EXIT_HOOK=off
  start_receiver
  DEAD=$(free_port)
  cat >"$T/test_conf.lua" <<EOF
return {
  -- batches of 10, so entries sit in open batches when the workers exit
  r = { http_endpoint = "http://127.0.0.1:$RX_PORT/logs", queue_size = 10,
        flush_timeout = 1, drop_poll_interval = 0.2 },
  -- endpoint down with Kong's slow retries: exiting workers must give up
  -- after shutdown_timeout and report these entries
  s = { http_endpoint = "http://127.0.0.1:$DEAD/logs", shutdown_timeout = 1,
        drop_poll_interval = 0.2 },
}
EOF
  start_nginx
  load() { # $1 = loop id
    local i
    for i in $(seq 1 150); do
      # nginx has quit: the rest would only be refused
      [ -e "$T/quit" ] && break
      request "/r/$(( $1 * 1000 + i ))" "load$1"
      request "/s/$(( $1 * 1000 + 500 + i ))" "load$1"
    done
  }
  for l in 1 2 3; do load "$l" & LOAD_PIDS+=($!); done
  WAIT_S=20 wait_until bash -c "[ \$(cat '$T'/requests.load* 2>/dev/null | wc -l) -ge 150 ]" || true
  log "nginx -s reload after $(cat "$T"/requests.load* | wc -l) requests"
  nginx_cmd -s reload
  WAIT_S=20 wait_until bash -c "[ \$(cat '$T'/requests.load* 2>/dev/null | wc -l) -ge 450 ]" || true
  log "quitting after $(cat "$T"/requests.load* | wc -l) requests"
  quit_nginx
  touch "$T/quit"
  for p in "${LOAD_PIDS[@]}"; do wait "$p" || true; done
  LOAD_PIDS=()
  log "$(cat "$T"/requests.load* | wc -l) requests made, $(cat "$T"/requests.load* | grep -vc ' 000$' || true) answered"
  # The receiver may still be writing the last batch it answered.
  sleep 0.5
  check reload hook="$EXIT_HOOK"
  ;;

badconf)
  start_receiver
  cat >"$T/test_conf.lua" <<EOF
return {
  r = { http_endpoint = "ftp://x", drop_poll_interval = 0.2 },
  s = { http_endpoint = "http://127.0.0.1:$RX_PORT/logs", drop_poll_interval = 0.2 },
}
EOF
  start_nginx
  N=30
  for i in $(seq 1 $N); do
    request "/r/$i" main
    request "/s/$((10000 + i))" main
  done
  WAIT_S=20 wait_until bash -c "[ \$(wc -l <'$T/rx.out' 2>/dev/null || echo 0) -ge $N ]" || true
  quit_nginx
  check badconf
  ;;

spool)
  : "${BATCHQ_REPLAY:?BATCHQ_REPLAY must name the batchq-replay tool}"
  DEAD=$(free_port)
  mkdir -p "$T/spool" && chmod 700 "$T/spool"
  cat >"$T/test_conf.lua" <<EOF
return {
  r = { http_endpoint = "http://127.0.0.1:$DEAD/logs", $fast_fail,
        spool_dir = "$T/spool", shutdown_timeout = 1 },
}
EOF
  start_nginx
  load() { # $1 = loop id
    local i
    for i in $(seq 1 100); do request "/r/$(( $1 * 1000 + i ))" "load$1"; done
  }
  for l in 1 2; do load "$l" & LOAD_PIDS+=($!); done
  WAIT_S=20 wait_until bash -c "[ \$(cat '$T'/requests.load* 2>/dev/null | wc -l) -ge 60 ]" || true
  log "nginx -s reload after $(cat "$T"/requests.load* | wc -l) requests"
  nginx_cmd -s reload
  for p in "${LOAD_PIDS[@]}"; do wait "$p" || true; done
  LOAD_PIDS=()
  sleep 1
  quit_nginx
  # every directory holding spool segments (the layout is the library's)
  for d in $(find "$T/spool" -name 'spool-*.seg' -printf '%h\n' | sort -u); do
    "$BATCHQ_REPLAY" print "$d" >>"$T/spooled.jsonl" 2>>"$T/replay.err" || {
      echo "batchq-replay print $d failed: $(cat "$T/replay.err")"; exit 1; }
  done
  log "$(count_lines "$T/spooled.jsonl") records in the spool"
  check spool
  ;;

exit|exit-hook)
  # exit: Kong's stock template (the timer's premature run drains the queues);
  # exit-hook: exit_worker_by_lua calls the handler's exit_worker()
  [ "$scenario" = exit ] && EXIT_HOOK=off
  # One worker: the three queues and the slow request share it.
  WORKERS=1
  # accepts, reads, never answers (within the test)
  start_receiver --delay-ms 600000
  cat >"$T/test_conf.lua" <<EOF
return {
  r = { http_endpoint = "http://127.0.0.1:$RX_PORT/r", queue_size = 1, shutdown_timeout = 2, timeout = 600000 },
  s = { http_endpoint = "http://127.0.0.1:$RX_PORT/s", queue_size = 1, shutdown_timeout = 2, timeout = 600000 },
  t = { http_endpoint = "http://127.0.0.1:$RX_PORT/t", queue_size = 1, shutdown_timeout = 2, timeout = 600000 },
}
EOF
  start_nginx
  # three queues, each with a send that hangs
  for c in r s t; do request "/$c/1" main; done
  sleep 0.5
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 30 \
    "http://127.0.0.1:$NGINX_PORT/slow/1" >"$T/slow.out" 2>&1 &
  SLOW_PID=$!
  LOAD_PIDS+=("$SLOW_PID")
  sleep 0.3
  log "nginx -s quit with /slow/1 in flight"
  nginx_cmd -s quit
  wait "$SLOW_PID" || true
  LOAD_PIDS=()
  read -r slow_code slow_time <"$T/slow.out" || true
  echo "/slow/1 ${slow_code:-000}" >>"$T/requests.main"
  log "/slow/1 answered ${slow_code:-000} in ${slow_time:-?} s (its own time: 2 s)"
  WAIT_S=40 wait_until bash -c "! kill -0 $MASTER_PID 2>/dev/null" || {
    echo "nginx master did not exit after quit"; exit 1; }
  log "nginx exited"
  [ "${slow_code:-000}" = 200 ] || { echo "the request in flight was not answered: ${slow_code:-000}"; exit 1; }
  # the bound the issue asks for: its own 2 s + 0.5 s
  awk -v t="$slow_time" 'BEGIN { exit !(t <= 2.5) }' || {
    echo "FAIL: the request in flight took $slow_time s (> 2.5 s): worker exit blocked the event loop"; exit 1; }
  check exit hook="$EXIT_HOOK"
  ;;

restart)
  # One worker: its queue (created on its first request) owns the spool.
  WORKERS=1
  RX_PORT=$(free_port)
  mkdir -p "$T/spool" && chmod 700 "$T/spool"
  cat >"$T/test_conf.lua" <<EOF
return {
  -- Kong's retry schedule: nothing is given up before the quit
  r = { http_endpoint = "http://127.0.0.1:$RX_PORT/logs", queue_size = 5,
        spool_dir = "$T/spool", shutdown_timeout = 1, drop_poll_interval = 0.2 },
}
EOF
  start_nginx
  N=60
  for i in $(seq 1 $N); do request "/r/$i" main; done
  quit_nginx
  pending=$(find "$T/spool" -path '*write-ahead*' -name 'spool-*.seg' | wc -l)
  log "endpoint still down at quit; write-ahead segments on disk: $pending"
  [ "$pending" -ge 1 ] || { echo "nothing was kept in the spool at quit"; exit 1; }
  start_receiver --port "$RX_PORT"
  start_nginx
  for i in $(seq $((N + 1)) $((N + 5))); do request "/r/$i" main; done
  WAIT_S=30 wait_until bash -c "[ \$(wc -l <'$T/rx.out' 2>/dev/null || echo 0) -ge $((N + 5)) ]" || true
  quit_nginx
  missing=0
  while read -r path code; do
    [ "$code" = 000 ] && continue
    grep -q "\"$path\"" "$T/rx.out" || { echo "never delivered: $path"; missing=$((missing + 1)); }
  done <"$T/requests.main"
  got=$(count_lines "$T/rx.out")
  log "$(wc -l <"$T/requests.main") requests, $got entries received, $missing missing"
  [ "$missing" -eq 0 ] || exit 1
  ;;

*)
  echo "unknown scenario $scenario"; exit 2;;
esac
log "PASS $scenario"
