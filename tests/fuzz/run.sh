#!/usr/bin/env bash
# tests/fuzz/run.sh <seconds-per-target> [target...]
#
# Configures the fuzzing build (build-fuzz/, clang, everything instrumented
# with -fsanitize=fuzzer-no-link,address,undefined), builds the libFuzzer
# targets, and runs each one (default: fuzz_config fuzz_capi fuzz_spool
# fuzz_record fuzz_lua_json) for
# the given time on a fresh copy of its seed corpus (tests/fuzz/corpus/<name>,
# without the fuzz_ prefix). Exits non-zero if any target found a crash, a
# sanitizer report, a leak, a timeout (-timeout) or an out-of-memory; the
# input that triggered it is kept as build-fuzz/artifacts/<target>-crash-...
# and its path printed. Reproduce with: build-fuzz/tests/fuzz/<target> <file>.
#
# Environment: FUZZ_BUILD_DIR (default <repo>/build-fuzz), JOBS (nproc: also
# how many targets fuzz at once),
# FUZZ_ARGS (extra libFuzzer flags, e.g. "-jobs=2 -workers=2").
set -euo pipefail

secs="${1:?usage: tests/fuzz/run.sh <seconds-per-target> [target...]}"
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(fuzz_config fuzz_capi fuzz_spool fuzz_record fuzz_lua_json); fi

root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${JOBS:-$(nproc)}"

cmake -S "$root" -B "$build" \
  -DCMAKE_C_COMPILER="${CC:-clang}" -DCMAKE_CXX_COMPILER="${CXX:-clang++}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DBATCHQ_BUILD_FUZZ=ON -DBATCHQ_BUILD_TESTS=OFF -DBATCHQ_BUILD_EXAMPLES=OFF -DBATCHQ_BUILD_CAPI=OFF \
  -DBATCHQ_INSTALL=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:allocator_may_return_null=1${ASAN_EXTRA:+:$ASAN_EXTRA}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p "$build/artifacts"
# One target: fuzz it, write its summary line to $build/artifacts/<t>.summary
# and its exit code to <t>.rc.
run_target() {
  local t=$1 name="${1#fuzz_}"
  local work="$build/corpus-run/$name" log="$build/artifacts/$1.log"
  rm -rf "$work"
  mkdir -p "$work"
  cp -r "$root/tests/fuzz/corpus/$name/." "$work/"
  local dict=()
  if [ -f "$root/tests/fuzz/$name.dict" ]; then dict=(-dict="$root/tests/fuzz/$name.dict"); fi
  echo "== $t: ${secs}s on $(ls "$work" | wc -l) seeds (log: $log)"
  local rc=0
  (cd "$build/artifacts" && "$build/tests/fuzz/$t" "$work" "${dict[@]}" \
      -max_total_time="$secs" -rss_limit_mb=2048 -detect_leaks=1 -timeout=20 -max_len=8192 \
      -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" ${FUZZ_ARGS:-}) >"$log" 2>&1 || rc=$?
  local done_line execs rate
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -1)
  echo "$t: rc=$rc execs=${execs:-?} exec/s=${rate:-?} corpus=$(ls "$work" | wc -l) $(echo "$done_line" | sed -E 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+//')" \
    >"$build/artifacts/$t.summary"
  echo "$rc" >"$build/artifacts/$t.rc"
}

# Each target is single-threaded: run up to $jobs of them at once (each still
# gets its full $secs).
running=0
for t in "${targets[@]}"; do
  rm -f "$build/artifacts/$t.summary" "$build/artifacts/$t.rc"
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
wait || true

failed=()
summary=()
for t in "${targets[@]}"; do
  rc=$(cat "$build/artifacts/$t.rc" 2>/dev/null || echo "missing")
  summary+=("$(cat "$build/artifacts/$t.summary" 2>/dev/null || echo "$t: no summary (the run did not finish)")")
  if [ "$rc" != 0 ]; then
    failed+=("$t")
    echo "---- $t FAILED (exit $rc); last lines of $build/artifacts/$t.log:"
    tail -n 60 "$build/artifacts/$t.log" || true
  fi
done
echo "== fuzz summary (${secs}s per target)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED: ${failed[*]}; artifacts in $build/artifacts" >&2
  exit 1
fi
