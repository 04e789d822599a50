#!/usr/bin/env bash
# bench/nginx/run_nginx_bench.sh - case 4: nginx (one worker) + wrk, against
# one loopback receiver (bench_receiver), in these modes:
#
#   none          no log phase
#   serialize_only  log phase builds the entry table only: kong.log.serialize()
#                 (no JSON, nothing sent): the ceiling of any logger that
#                 takes Kong's serialized table
#   entry_only    log phase builds the entry only: cjson.encode(kong.log.serialize())
#   batchq_q1     the batchq-log Kong plugin (examples/kong-plugin), queue_size 1
#   batchq_q100   the same, queue_size 100
#   batchq_q1_c1 .. batchq_q1_c4  batchq_q1 with `concurrency` set (not run
#                 unless named in BENCH_NGINX_MODES: for choosing the default)
#   purelua_q1    a pure-Lua Kong 2.x style logger (purelua_logger.lua), queue_size 1
#   purelua_q100  the same, queue_size 100
#   batchq_q100_table  issue 14's path without the plugin: table_logger.lua,
#                 q:enqueue_table(kong.log.serialize()) (JSON made on batchq's
#                 thread), queue_size 100. Once the plugin's handler uses
#                 enqueue_table, batchq_q100 measures the same path.
#
# For each mode: fresh receiver, fresh nginx, wrk for $BENCH_WRK_SECONDS (4)
# with 1 thread / 16 connections, then `nginx -s quit`; once nginx has exited,
# not received = requests nginx answered (access log) - entries the receiver
# counted (marker "source":"kong_standin", one per serialized entry), split
# into entries the plugin reported as dropped (error log, with the reason)
# and entries lost silently. $BENCH_NGINX_ROUNDS (5) rounds; the modes
# alternate within a round and ratios are taken within each round.
#
#   run_nginx_bench.sh OUT.json
# BENCH_PERF_DIR=dir: perf record -g of the nginx worker during each wrk run,
# one perf.<mode>.<round>.data there (BENCH_PERF_ARGS: perf record options
# instead of -g, e.g. "-e syscalls:sys_enter_futex --call-graph dwarf").
# sender_budget.py perf.<mode>.<round>.data --us N sorts the samples of
# batchq's threads into what a request costs them (libcurl, the sleep until
# the answer, sendto, ...), N being the run's batchq_threads µs per request.
# BENCH_PERF_STAT=dir: perf stat --per-thread of the nginx worker during each
# wrk run (context switches, system calls, futex calls, poll calls), one
# stat.<mode>.<round>.txt there; divide by the requests wrk reports.
# The summary's stats line then also gives, per request answered, the
# worker's main thread and its other (batchq's) threads' context switches,
# system calls, futex and poll calls (also in OUT.json, "per_request").
# BENCH_PLACEMENT=1: bench/nginx/placement.py samples, every 2 ms during each
# wrk run, which CPU the nginx worker's event loop, batchq's threads, the
# receiver and wrk are on, and gives in the round's line ("placement") how
# often two of them were runnable on the same CPU (one waiting for the
# other). The sampler takes some CPU itself: for diagnosis, not the table.
# A/B in one run: BENCH_BASE_SRC=tree BENCH_BASE_LIB_DIR=its libbatchq.so's
# folder, and a mode named M@base (e.g. BENCH_NGINX_MODES="batchq_q1@base
# batchq_q1 purelua_q1") runs M with that tree's plugin, Lua module and
# library (the peers and the receiver stay this tree's); OUT.json's
# "vs_base" of M is the median of M / M@base within the rounds.
# Environment: BATCHQ_SRC, BATCHQ_LIB_DIR (libbatchq.so), BENCH_BIN
# (bench_receiver), NGINX, BATCHQ_NGINX_MODULES as in tests/nginx.
set -euo pipefail

OUT=${1:?usage: run_nginx_bench.sh OUT.json}
: "${BATCHQ_SRC:?}" "${BATCHQ_LIB_DIR:?}" "${BENCH_BIN:?}"
NGINX=${NGINX:-nginx}
MODULES=${BATCHQ_NGINX_MODULES:-/usr/lib/nginx/modules}
SECS=${BENCH_WRK_SECONDS:-4}
CONNS=${BENCH_WRK_CONNECTIONS:-16}
HERE="$BATCHQ_SRC/bench/nginx"
MODES=${BENCH_NGINX_MODES:-"none serialize_only entry_only batchq_q1 batchq_q100 purelua_q1 purelua_q100 batchq_q100_table"}

T=$(mktemp -d "${TMPDIR:-/tmp}/batchq-bench-nginx-XXXXXX")
MASTER_PID=
RX_PID=

log() { printf '[nginx-bench %s] %s\n' "$(date +%T)" "$*" >&2; }

wait_until() { # $1 = tenths of a second, rest = command
  local limit=$1 i=0
  shift
  until "$@"; do
    i=$((i + 1))
    [ "$i" -ge "$limit" ] && return 1
    sleep 0.1
  done
}

stop_all() {
  if [ -n "$MASTER_PID" ] && kill -0 "$MASTER_PID" 2>/dev/null; then
    kill -TERM "$MASTER_PID" 2>/dev/null || true
    wait_until 50 bash -c "! kill -0 $MASTER_PID 2>/dev/null" || kill -KILL "$MASTER_PID" 2>/dev/null || true
  fi
  if [ -n "$RX_PID" ] && kill -0 "$RX_PID" 2>/dev/null; then
    kill -TERM "$RX_PID" 2>/dev/null || true
    wait "$RX_PID" 2>/dev/null || true
  fi
}
trap 'stop_all; if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi' EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

RX_OUT=
start_receiver() { # $1 = a name for its output file (one file per run)
  RX_OUT="$T/rx.$1.stdout"
  rm -f "$RX_OUT"
  "$BENCH_BIN/bench_receiver" --port 0 --marker '"source":"kong_standin"' >"$RX_OUT" 2>&1 &
  RX_PID=$!
  wait_until 50 grep -q "listening on" "$RX_OUT"
  RX_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$RX_OUT")
}

stop_receiver() { # -> RX_ENTRIES
  kill -TERM "$RX_PID"
  wait "$RX_PID" || true
  RX_PID=
  RX_ENTRIES=$(tail -n 1 "$RX_OUT" | awk '{print $2}')
}

write_conf() { # $1 = mode (M or M@base)
  local mode=${1%@base} load_modules="" user_line="" log_block="" worker_hooks=""
  local src=$BATCHQ_SRC lib_dir=$BATCHQ_LIB_DIR
  if [ "$1" != "$mode" ]; then
    src=${BENCH_BASE_SRC:?"mode $1 needs BENCH_BASE_SRC and BENCH_BASE_LIB_DIR"}
    lib_dir=${BENCH_BASE_LIB_DIR:?"mode $1 needs BENCH_BASE_LIB_DIR"}
  fi
  if [ -f "$MODULES/ngx_http_lua_module.so" ]; then
    [ -f "$MODULES/ndk_http_module.so" ] && load_modules="load_module $MODULES/ndk_http_module.so;"
    load_modules="$load_modules
load_module $MODULES/ngx_http_lua_module.so;"
  fi
  if [ -z "$load_modules" ] && ! "$NGINX" -V 2>&1 | grep -q lua; then
    log "no ngx_http_lua_module.so in $MODULES and nginx has no built-in Lua module"
    exit 1
  fi
  [ "$(id -u)" = 0 ] && user_line="user root;"
  case "$mode" in
    none) ;;
    serialize_only) log_block='log_by_lua_block { local e = kong.log.serialize() }' ;;
    entry_only) log_block='log_by_lua_block { local e = cjson.encode(kong.log.serialize()) }' ;;
    batchq_q100_table)
      log_block="log_by_lua_block { require(\"table_logger\").log(require(\"bench_conf\").batchq_q100) }"
      worker_hooks='exit_worker_by_lua_block { require("table_logger").exit_worker() }' ;;
    batchq_q*)
      log_block="log_by_lua_block { require(\"kong.plugins.batchq-log.handler\"):log(require(\"bench_conf\").$mode) }"
      worker_hooks='init_worker_by_lua_block { require("kong.plugins.batchq-log.handler"):init_worker() }
  exit_worker_by_lua_block { require("kong.plugins.batchq-log.handler").exit_worker() }' ;;
    purelua_q*)
      log_block="log_by_lua_block { require(\"purelua_logger\").log(require(\"bench_conf\").$mode) }" ;;
  esac
  cat >"$T/bench_conf.lua" <<EOF
local ep = "http://127.0.0.1:$RX_PORT/logs"
-- http-log's defaults (retry_count 10, flush_timeout 2 s) except queue_size.
return {
  batchq_q1 = { http_endpoint = ep, queue_size = 1 },
  -- for choosing the plugin's default concurrency at queue_size 1 (not in
  -- the default MODES): batchq_q1 with concurrency set
  batchq_q1_c1 = { http_endpoint = ep, queue_size = 1, concurrency = 1 },
  batchq_q1_c2 = { http_endpoint = ep, queue_size = 1, concurrency = 2 },
  batchq_q1_c3 = { http_endpoint = ep, queue_size = 1, concurrency = 3 },
  batchq_q1_c4 = { http_endpoint = ep, queue_size = 1, concurrency = 4 },
  batchq_q100 = { http_endpoint = ep, queue_size = 100 },
  purelua_q1 = { http_endpoint = ep, queue_size = 1 },
  purelua_q100 = { http_endpoint = ep, queue_size = 100 },
}
EOF
  local jit_log=""
  # BENCH_JIT_LOG=dir: LuaJIT's jit.v trace log of each mode (which code runs
  # compiled, and why a trace aborted), jitv.<mode>.log there.
  [ -n "${BENCH_JIT_LOG:-}" ] && mkdir -p "$BENCH_JIT_LOG" && jit_log="require('jit.v').start('$BENCH_JIT_LOG/jitv.$mode.log')"
  mkdir -p "$T/tmp"
  cat >"$T/nginx.conf" <<EOF
$load_modules
$user_line
worker_processes 1;
master_process on;
daemon on;
pid $T/nginx.pid;
error_log $T/error.log warn;
events { worker_connections 1024; }
http {
  log_format plain '\$status';
  access_log $T/access.log plain buffer=64k;
  client_body_temp_path $T/tmp/body;
  proxy_temp_path $T/tmp/proxy;
  fastcgi_temp_path $T/tmp/fastcgi;
  uwsgi_temp_path $T/tmp/uwsgi;
  scgi_temp_path $T/tmp/scgi;
  lua_package_path "$T/?.lua;$HERE/?.lua;$BATCHQ_SRC/tests/nginx/?.lua;$src/capi/lua/?.lua;$src/examples/kong-plugin/?.lua;;";
  lua_package_cpath "$lib_dir/?.so;;";
  init_by_lua_block {
    $jit_log
    require "kong_standin"
    cjson = require "cjson.safe"
    require "purelua_logger"
    require "kong.plugins.batchq-log.handler"
  }
  $worker_hooks
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      return 200 "ok\n";
      $log_block
    }
  }
}
EOF
}

# CPU time (clock ticks, user + system) of a process: "<main thread>
# <others>"; for the nginx worker, the others are batchq's threads. The
# others are the process's total (/proc/PID/stat, which keeps the time of
# threads that have exited) less the main thread's. Summing the live threads
# of /proc/PID/task instead lost the time of every thread that exited between
# the two readings: the pure-Lua logger's receiver, with a thread per
# connection and connections that come and go (its keep-alive pool
# overflows), was counted at a fraction of its time.
cpu_ticks() { # $1 = pid
  local all main
  all=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/"$1"/stat 2>/dev/null || echo 0)
  main=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/"$1"/task/"$1"/stat 2>/dev/null || echo 0)
  echo "$main $((all - main))"
}

nginx_cmd() { "$NGINX" -p "$T" -c "$T/nginx.conf" -e "$T/error.log" "$@"; }

ROUNDS=${BENCH_NGINX_ROUNDS:-5}
: >"$T/runs.jsonl"
# The modes alternate within each round, so slow drifts of this shared
# machine hit every mode alike; the table takes the median of the rounds.
for round in $(seq 1 "$ROUNDS"); do
for mode in $MODES; do
  start_receiver "$mode.$round"
  NGINX_PORT=$(free_port)
  write_conf "$mode"
  rm -f "$T/access.log" "$T/nginx.pid"
  nginx_cmd -t -q
  nginx_cmd
  wait_until 50 test -s "$T/nginx.pid"
  MASTER_PID=$(cat "$T/nginx.pid")
  wait_until 50 curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/warmup"
  WORKER_PID=$(pgrep -P "$MASTER_PID" | head -n 1)
  read -r w0 s0 < <(cpu_ticks "$WORKER_PID")
  read -r r0 r0b < <(cpu_ticks "$RX_PID")
  PERF_PID=
  if [ -n "${BENCH_PERF_DIR:-}" ]; then # a profile of the worker (all its threads) during wrk
    mkdir -p "$BENCH_PERF_DIR"
    # shellcheck disable=SC2086
    perf record -q ${BENCH_PERF_ARGS:--g} -o "$BENCH_PERF_DIR/perf.$mode.$round.data" -p "$WORKER_PID" 2>/dev/null &
    PERF_PID=$!
  fi
  STAT_PID=
  if [ -n "${BENCH_PERF_STAT:-}" ]; then
    mkdir -p "$BENCH_PERF_STAT"
    perf stat --per-thread -e context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_poll,syscalls:sys_enter_epoll_wait \
      -o "$BENCH_PERF_STAT/stat.$mode.$round.txt" -p "$WORKER_PID" 2>/dev/null &
    STAT_PID=$!
  fi
  PLACE_PID=
  if [ "${BENCH_PLACEMENT:-0}" = 1 ]; then
    python3 "$HERE/placement.py" "$T/placement.$mode.$round.json" 2 \
      worker="$WORKER_PID" receiver="$RX_PID" wrk=@wrk &
    PLACE_PID=$!
  fi
  /usr/bin/time -f "%U %S" -o "$T/wrk.$mode.$round.cpu" \
    wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$NGINX_PORT/r" >"$T/wrk.$mode.$round" 2>&1
  read -r w1 s1 < <(cpu_ticks "$WORKER_PID")
  read -r r1 r1b < <(cpu_ticks "$RX_PID")
  TCK=$(getconf CLK_TCK)
  if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
  place_json=""
  if [ -n "$PLACE_PID" ]; then
    kill -TERM "$PLACE_PID"; wait "$PLACE_PID" || true
    # null when the sampler wrote nothing (ended before it could write its file)
    place_json=",\"placement\":$(cat "$T/placement.$mode.$round.json" 2>/dev/null || echo null)"
  fi
  if [ -n "$STAT_PID" ]; then
    kill -INT "$STAT_PID"; wait "$STAT_PID" || true
    awk '/requests in/ {print "# wrk requests: " $1}' "$T/wrk.$mode.$round" >>"$BENCH_PERF_STAT/stat.$mode.$round.txt"
  fi
  nginx_cmd -s quit
  wait_until 300 bash -c "! kill -0 $MASTER_PID 2>/dev/null" || { log "nginx did not exit"; kill -KILL "$MASTER_PID" || true; }
  MASTER_PID=
  sleep 0.3
  stop_receiver
  answered=$(grep -c '^200$' "$T/access.log" || true)
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$T/wrk.$mode.$round")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$T/wrk.$mode.$round")
  if [ "$mode" = none ] || [ "$mode" = serialize_only ] || [ "$mode" = entry_only ]; then
    received=0; lost=0
  else
    received=$RX_ENTRIES
    lost=$((answered - received))
  fi
  errs=$(grep -c '\[error\]' "$T/error.log" || true)
  # Entries the plugin reported as dropped (each is printed in full with its
  # reason, e.g. queue_full when the sender cannot keep up): not silent.
  reported=$(grep -c 'dropped entry (' "$T/error.log" || true)
  # Drops beyond the plugin's drop buffer are reported as a count (report.lua:
  # "N dropped entries for ... could not be kept for reporting"): reported,
  # not silent, though not one by one.
  counted=$(sed -n 's/.* \([0-9][0-9]*\) dropped entries for .* could not be kept for reporting.*/\1/p' "$T/error.log" | awk '{s += $1} END {print s + 0}')
  reported=$((reported + counted))
  silent=$((lost - reported))
  # CPU per request answered during wrk (µs): nginx worker's event loop,
  # batchq's threads in the worker, the receiver, wrk.
  cpu_json=$(python3 -c 'import sys
w0,w1,s0,s1,r0,r1,tck,n=map(float,sys.argv[1:9]); wu,ws=map(float,open(sys.argv[9]).read().split()[:2])
n=max(n,1); f=1e6/tck/n
print("\"cpu_us\":{\"worker\":%.2f,\"batchq_threads\":%.2f,\"receiver\":%.2f,\"wrk\":%.2f}" % ((w1-w0)*f,(s1-s0)*f,(r1-r0)*f,(wu+ws)*1e6/n))' \
    "$w0" "$w1" "$s0" "$s1" "$((r0 + r0b))" "$((r1 + r1b))" "$TCK" "$(awk '/requests in/ {print $1}' "$T/wrk.$mode.$round")" "$T/wrk.$mode.$round.cpu")
  # perf stat's counts per request answered: the worker's main thread (the
  # event loop) and its other threads (batchq's), summed.
  stat_json=""
  if [ -n "$STAT_PID" ]; then
    stat_json=,$(python3 - "$BENCH_PERF_STAT/stat.$mode.$round.txt" "$WORKER_PID" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
main_tid = sys.argv[2]
m = re.search(r"# wrk requests: (\d+)", text)
n = max(int(m.group(1)) if m else 1, 1)
names = {"context-switches": "cs", "raw_syscalls:sys_enter": "syscalls",
         "syscalls:sys_enter_futex": "futex", "syscalls:sys_enter_poll": "poll"}
out = {"main": {}, "threads": {}}
for tid, val, ev in re.findall(r"^\s*\S+-(\d+)\s+([0-9,.]+)\s+(\S+)", text, re.M):
    if ev not in names:
        continue
    side = out["main" if tid == main_tid else "threads"]
    side[names[ev]] = side.get(names[ev], 0) + float(val.replace(",", "")) / n
print('"per_request":' + json.dumps({k: {e: round(v, 2) for e, v in d.items()} for k, d in out.items()}))
PY
)
  fi
  log "round $round $mode: $rps req/s, p99 $p99 ms, answered $answered, received $received, not received $lost (reported dropped $reported, silently lost $silent), error-log errors $errs, $cpu_json$stat_json$place_json"
  echo "{\"round\":$round,\"mode\":\"$mode\",\"rps\":$rps,\"p99_ms\":$p99,\"answered\":$answered,\"received\":$received,\"lost\":$lost,\"reported\":$reported,\"silent\":$silent,\"errors\":$errs,$cpu_json$stat_json$place_json}" >>"$T/runs.jsonl"
  cp "$T/error.log" "$T/error.$mode.$round.log"
  : >"$T/error.log"
done
done

python3 - "$T/runs.jsonl" "$OUT" "wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds, nginx 1 worker, return 200, access_log buffered" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
modes = []
for r in runs:
    if r["mode"] not in modes:
        modes.append(r["mode"])
by = {(r["mode"], r["round"]): r for r in runs}
rounds = sorted({r["round"] for r in runs})

def ratio(a, b):
    # Median over rounds of the ratio measured within each round: the machine
    # drifts between rounds far more than within one.
    v = [by[(a, k)]["rps"] / by[(b, k)]["rps"] for k in rounds if (a, k) in by and (b, k) in by]
    return statistics.median(v) if v else None

out = []
for m in modes:
    rs = [r for r in runs if r["mode"] == m]
    e = {"mode": m, "rps": statistics.median(r["rps"] for r in rs),
         "p99_ms": statistics.median(r["p99_ms"] for r in rs),
         "answered": sum(r["answered"] for r in rs), "received": sum(r["received"] for r in rs),
         "lost": sum(r["lost"] for r in rs), "reported": sum(r["reported"] for r in rs),
         "silent": sum(r["silent"] for r in rs), "errors": sum(r["errors"] for r in rs), "rounds": len(rs),
         "vs_entry_only": ratio(m, "entry_only")}
    if all("cpu_us" in r for r in rs):
        e["cpu_us"] = {k: statistics.median(r["cpu_us"][k] for r in rs) for k in rs[0]["cpu_us"]}
    if all("per_request" in r for r in rs):
        e["per_request"] = {side: {k: statistics.median(r["per_request"][side].get(k, 0) for r in rs)
                                   for k in rs[0]["per_request"][side]} for side in rs[0]["per_request"]}
    if m.startswith("batchq_q"):
        e["vs_purelua"] = ratio(m, "purelua_q" + m[len("batchq_q"):].split("@")[0].split("_")[0])
    if (m + "@base") in modes:
        e["vs_base"] = ratio(m, m + "@base")
    out.append(e)
json.dump({"wrk": sys.argv[3], "modes": out}, open(sys.argv[2], "w"))
PY
