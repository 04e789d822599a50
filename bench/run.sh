#!/usr/bin/env bash
# bench/run.sh - builds the benchmarks in Release and runs them (issue 7).
#
#   bash bench/run.sh                 every case, then the table
#   bash bench/run.sh enqueue|ffi|delivery|nginx|memory|spool|framing   one case (+ table)
#
# Installs the Debian packages it needs (apt-get, sudo when not root; set
# BATCHQ_SKIP_APT=1 to skip), configures build-bench/ (Release,
# -DBATCHQ_BUILD_BENCH=ON) next to the source tree (BENCH_BUILD_DIR
# overrides), builds, runs, and prints one markdown table, also written to
# bench/results.md. Raw results stay in <build>/bench-results/.
# Everything listens on 127.0.0.1 only; every process started is stopped on
# exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$SRC/build-bench}
RES="$BUILD/bench-results"
CASES=${1:-all}
case "$CASES" in
  all|enqueue|ffi|delivery|nginx|memory|spool|framing) ;;
  *) echo "usage: bash bench/run.sh [all|enqueue|ffi|delivery|nginx|memory]" >&2; exit 2;;
esac

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# ---- packages -------------------------------------------------------------------
PKGS=(build-essential cmake pkg-config libbenchmark-dev libconcurrentqueue-dev libspdlog-dev
      libcurl4-openssl-dev zlib1g-dev rapidjson-dev luajit2 lua-cjson nginx-light libnginx-mod-http-lua
      libnginx-mod-http-ndk wrk curl python3 time procps)
if [ "${BATCHQ_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# ---- build ------------------------------------------------------------------------
log "configuring $BUILD (Release, BATCHQ_BUILD_BENCH=ON)"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBATCHQ_BUILD_BENCH=ON \
  -DBATCHQ_BUILD_TESTS=OFF -DBATCHQ_BUILD_EXAMPLES=OFF -DBATCHQ_BUILD_CAPI=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
B="$BUILD/bench"
LIB="$BUILD/capi/libbatchq.so"
mkdir -p "$RES"

want() { [ "$CASES" = all ] || [ "$CASES" = "$1" ]; }

start_receiver() { # -> RX_PORT, RX_PID; $1 = count file
  "$B/bench_receiver" --port 0 --count-file "$1" >"$1.stdout" 2>&1 &
  RX_PID=$!
  PIDS+=("$RX_PID")
  for _ in $(seq 1 50); do
    grep -q "listening on" "$1.stdout" 2>/dev/null && break
    sleep 0.1
  done
  RX_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1.stdout")
  [ -n "$RX_PORT" ] || { echo "bench_receiver did not start" >&2; exit 1; }
}

stop_receiver() {
  kill -TERM "$RX_PID" 2>/dev/null || true
  wait "$RX_PID" 2>/dev/null || true
}

# ---- case 1: enqueue ------------------------------------------------------------------
if want enqueue; then
  log "case 1: enqueue (batch_queue vs moodycamel vs spdlog), ~1 min"
  "$B/bench_enqueue" --benchmark_report_aggregates_only=true \
    --benchmark_out="$RES/enqueue.json" --benchmark_out_format=json >&2
fi

# ---- case 2: LuaJIT FFI ------------------------------------------------------------------
if want ffi; then
  log "case 2: LuaJIT FFI enqueue vs pure-Lua Kong add"
  # Nothing is sent during the loop (dead endpoint, long process_delay), so
  # the queue grows by N entries; a large trim threshold keeps glibc from
  # handing freed heap back to the kernel between rounds, so each round reuses
  # memory as a long-running nginx worker does, instead of measuring the
  # page faults of a heap growing from zero.
  MALLOC_TRIM_THRESHOLD_=4000000000 BATCHQ_LIB="$LIB" LUA_PATH="$SRC/capi/lua/?.lua;;" \
    luajit "$HERE/lua/bench_ffi.lua" --json "$RES/ffi.json" >&2
  # Issue 14: the string.buffer -> JSON decoder vs cjson.encode, and
  # enqueue_table vs cjson.encode + enqueue (CPU time of the Lua thread).
  MALLOC_TRIM_THRESHOLD_=4000000000 BATCHQ_LIB="$LIB" LUA_PATH="$SRC/capi/lua/?.lua;;" \
    luajit "$HERE/lua/bench_lua_json.lua" --json "$RES/lua_json.json" >&2
  # Issue 14: the nginx log phase piece by piece (CPU of the calling thread),
  # JIT on and off, into a draining queue: $RES/log_phase.txt.
  "$B/bench_receiver" --port 0 >"$RES/log_phase_rx.out" 2>&1 &
  LP_RX=$!
  for _ in $(seq 50); do grep -q "listening on" "$RES/log_phase_rx.out" && break; sleep 0.1; done
  LP_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$RES/log_phase_rx.out")
  : >"$RES/log_phase.txt"
  for j in on off; do
    BQ_BENCH_ENDPOINT="http://127.0.0.1:$LP_PORT/logs" BATCHQ_LIB="$LIB" LUA_PATH="$SRC/capi/lua/?.lua;;" \
      luajit -j"$j" "$HERE/lua/bench_log_phase.lua" | tee -a "$RES/log_phase.txt" >&2
  done
  kill "$LP_RX" 2>/dev/null || true
  wait "$LP_RX" 2>/dev/null || true
fi

# ---- case 3: delivery ------------------------------------------------------------------------
if want delivery; then
  log "case 3: delivery (http_log vs raw libcurl)"
  "$B/bench_delivery" --json "$RES/delivery.json" >&2
fi

# ---- case 4: nginx + wrk ----------------------------------------------------------------------------
if want nginx; then
  log "case 4: nginx + wrk"
  # Issue 15's measure: wrk -c32 for 8 s, 3 rounds (run_nginx_bench.sh's own
  # defaults, -c16 for 4 s and 5 rounds, stay for quick looks). The pure-Lua
  # peer's rate depends on the connections: see results.md, case 4.
  BENCH_WRK_SECONDS=${BENCH_WRK_SECONDS:-8} BENCH_WRK_CONNECTIONS=${BENCH_WRK_CONNECTIONS:-32} \
  BENCH_NGINX_ROUNDS=${BENCH_NGINX_ROUNDS:-3} \
  BATCHQ_LIB_DIR="$BUILD/capi" BENCH_BIN="$B" BATCHQ_SRC="$SRC" \
    bash "$HERE/nginx/run_nginx_bench.sh" "$RES/nginx.json" >&2
fi

# ---- case 5: memory ----------------------------------------------------------------------------------
if want memory; then
  log "case 5: memory with the endpoint down"
  : >"$RES/memory.jsonl"
  for conf in "1 16 push" "100 16 push" "1 64 push" "100 64 push" "100 64 pull"; do
    # shellcheck disable=SC2086
    "$B/bench_memory" $conf 4 200000 >>"$RES/memory.jsonl"
  done
fi

# ---- case 6: spool ----------------------------------------------------------------------------------
if want spool; then
  log "case 6: spool (write-ahead enqueue, fsync policies vs raw writes)"
  "$B/bench_spool" --json "$RES/spool.json" --entries 100000 --rounds 5 >&2
fi

# ---- case 7: the poison-entry rule (check_framing per entry) ----------------------------------------
if want framing; then
  log "case 7: check_framing per entry, enqueue with and without it"
  "$B/bench_framing" --json "$RES/framing.json" --entries 100000 --rounds 7 >&2
fi

# ---- table -----------------------------------------------------------------------------------------------
MACHINE="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r), $(date -u +'%Y-%m-%d %H:%M UTC')"
python3 "$HERE/report.py" "$RES" "$MACHINE" | tee "$HERE/results.md"
