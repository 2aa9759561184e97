#!/usr/bin/env bash
# Builds the libFuzzer targets into build-fuzz/ (clang-14, -DCHAT_FUZZ=ON)
# and runs each one for FUZZ_SECONDS on a copy of its seed corpus
# (fuzz/corpus/<target>/, which stays as committed). Prints per target the
# executions, exec/s and the coverage of libFuzzer's final line, and exits
# non-zero on any crash, leak, timeout or out-of-memory, naming the artifact.
#
#   FUZZ_SECONDS=n        seconds per target (default 30)
#   FUZZ_TARGETS="a b"    which targets (default: fuzz_wire fuzz_address fuzz_capi)
#   FUZZ_TIMEOUT=n        one input slower than this many seconds is a failure (default 10)
#   FUZZ_BUILD_DIR=dir    build tree (default build-fuzz)
#   FUZZ_JOBS=n           build parallelism (default 2)
#   FUZZ_BUILD_ONLY=1     configure and build, run nothing
#   FUZZ_SKIP_BUILD=1     run what is built (scripts/test.sh builds in a phase of its own)
#
# Targets run one after another, one process each (-jobs/-workers unused).
# Work files (grown corpus, artifacts, logs) go to $FUZZ_BUILD_DIR/runs/.
set -euo pipefail
# The whole script is one block, parsed before it runs, so editing this file
# during a long run does not change the run.
{

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${FUZZ_BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-30}
timeout_s=${FUZZ_TIMEOUT:-10}
read -r -a targets <<<"${FUZZ_TARGETS:-fuzz_wire fuzz_address fuzz_capi}"

say() { printf '[fuzz] %s\n' "$*"; }

for tool in clang-14 clang++-14; do
  command -v "$tool" >/dev/null ||
    { say "$tool is missing: run scripts/setup.sh (it installs clang-14 and libclang-rt-14-dev)"; exit 1; }
done

build() {
  mkdir -p "$build_dir"
  log=$build_dir/fuzz-configure.log
  if ! CC=clang-14 CXX=clang++-14 cmake -S . -B "$build_dir" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_FUZZ=ON \
      -DCHAT_BUILD_EXAMPLES=OFF -DCHAT_BUILD_PYTHON=OFF -DCHAT_BUILD_BENCH=OFF \
      -DCHAT_BUILD_TESTS=OFF -DPython_EXECUTABLE=/usr/bin/python3 >"$log" 2>&1; then
    cat "$log"
    say "configure failed (log: $log)"
    exit 1
  fi
  say "build: $build_dir (${targets[*]})"
  cmake --build "$build_dir" -j "${FUZZ_JOBS:-2}" --target "${targets[@]}"
}

if [[ -z ${FUZZ_SKIP_BUILD:-} ]]; then build; fi
if [[ -n ${FUZZ_BUILD_ONLY:-} ]]; then exit 0; fi
for t in "${targets[@]}"; do
  [[ -x $build_dir/fuzz/$t ]] || { say "$build_dir/fuzz/$t is not built"; exit 1; }
done

runs=$build_dir/runs
failed=0
results=()
for t in "${targets[@]}"; do
  work=$runs/$t
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  if [[ -d fuzz/corpus/$t ]]; then cp fuzz/corpus/"$t"/* "$work/corpus/"; fi
  out=$work/fuzz.log
  say "== $t: ${seconds}s on $(find "$work/corpus" -type f | wc -l) seed(s) (log: $out)"
  rc=0
  # The outer timeout only guards against a process that will not exit.
  timeout --kill-after=10 $((seconds + 120)) \
    "$build_dir/fuzz/$t" "$work/corpus" -max_total_time="$seconds" -timeout="$timeout_s" \
      -rss_limit_mb=2560 -detect_leaks=1 -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/" >"$out" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
  final=$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED|NEW|REDUCE|pulse)' "$out" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$final")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$final")
  corp=$(find "$work/corpus" -type f | wc -l)
  line=$(printf '%-13s execs %-9s exec/s %-6s cov %-5s ft %-6s corpus %-5s' \
    "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$corp")
  if ((rc == 0)); then
    results+=("$line ok")
  else
    failed=1
    results+=("$line FAILED (status $rc)")
    grep -E 'ERROR: |SUMMARY: |property failed|contract violated|runtime error' "$out" | head -5 || true
    grep -E 'Test unit written to|artifact' "$out" | tail -3 || true
    for a in "$work"/artifacts/*; do [[ -e $a ]] && say "artifact: $a"; done
  fi
  say "$line"
done

say "results (${seconds}s per target):"
for l in "${results[@]}"; do say "  $l"; done
exit "$failed"
}
