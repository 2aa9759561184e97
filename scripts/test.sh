#!/usr/bin/env bash
# Runs every test: the whole ctest suite on the Release build, then the
# SANITIZED_LABELS again under AddressSanitizer + UndefinedBehaviorSanitizer,
# then TSAN_LABELS under ThreadSanitizer, then each libFuzzer target for
# FUZZ_SECONDS (scripts/fuzz.sh).
#
#   SANITIZED_LABELS=re   ctest labels for the sanitized run
#                         (default: core|capi|interop|install|python|discovery|faults|
#                         security|control|room;
#                         pychat runs with libasan preloaded into the interpreter)
#   TSAN_LABELS=re        ctest labels for the ThreadSanitizer run (default
#                         core|capi|security|control: the C++ suites; Python and the grpcio
#                         peer add nothing TSan can see into)
#   FUZZ_SECONDS=n        seconds per fuzz target (default 30; see
#                         fuzz/README.md for long runs)
#   BUILD_DIR, CMAKE_ARGS as for setup.sh; ASAN_BUILD_DIR (default build-asan),
#   TSAN_BUILD_DIR (default build-tsan), FUZZ_BUILD_DIR (default build-fuzz)
#   CI                    set (CI=true): the gcc builds (Release, asan,
#                         tsan) treat warnings as errors (-DCHAT_WERROR=ON);
#                         the clang fuzz build does not
#
# Run through sudo, the build trees are given back to the user who ran sudo.
#
# Tests run one at a time (ctest -j1): they are timing-sensitive and the
# per-test TIMEOUTs live in CMake. Exits non-zero if any phase failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${BUILD_DIR:-build}
asan_dir=${ASAN_BUILD_DIR:-build-asan}
sanitized_labels=${SANITIZED_LABELS:-core|capi|interop|install|python|discovery|faults|security|control|room}
tsan_dir=${TSAN_BUILD_DIR:-build-tsan}
tsan_labels=${TSAN_LABELS:-core|capi|security|control}
# shellcheck source=ownership.sh
source scripts/ownership.sh
mapfile -t ci_args < <(ci_cmake_args)
trap 'give_back "$asan_dir" "$tsan_dir" "${FUZZ_BUILD_DIR:-build-fuzz}"' EXIT

say() { printf '[test] %s\n' "$*"; }

summary=()   # one line per phase
ctest_lines=() # ctest's own summary lines, repeated at the end
failed=0

# phase NAME CMD...: runs CMD, times it, records the outcome, never exits.
phase() {
  local name=$1 t0=$SECONDS rc=0
  shift
  say "== $name"
  "$@" || rc=$?
  local took=$((SECONDS - t0))
  if ((rc == 0)); then
    summary+=("$(printf '%-22s %5ss  ok' "$name" "$took")")
  else
    summary+=("$(printf '%-22s %5ss  FAILED (status %s)' "$name" "$took" "$rc")")
    failed=1
  fi
  return 0
}

# ctest with its output kept, so the summary lines can be shown again at the end.
run_ctest() {
  local log
  log=$(mktemp)
  local rc=0
  ctest "$@" --output-on-failure 2>&1 | tee "$log" || rc=$?
  while IFS= read -r l; do ctest_lines+=("$l"); done < <(
    grep -E '^[0-9]+% tests passed|^Total Test time|^No tests were found|^Errors while running CTest' "$log" || true)
  rm -f "$log"
  return "$rc"
}

setup() { bash scripts/setup.sh; }

release_tests() { run_ctest --test-dir "$build_dir"; }

asan_build() {
  mkdir -p "$asan_dir"
  local log=$asan_dir/test-configure.log
  cmake -S . -B "$asan_dir" -G Ninja \
    -DCHAT_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCHAT_BUILD_BENCH=OFF -DPython_EXECUTABLE=/usr/bin/python3 "${ci_args[@]}" >"$log" 2>&1 ||
    { cat "$log"; return 1; }
  cmake --build "$asan_dir"
}

asan_tests() {
  local rc=0 native=() label
  local -a labels
  IFS='|' read -r -a labels <<<"$sanitized_labels"
  # python, discovery and room import pychat: they run with the interpreter
  # below, and so do the pytest suites of faults, security and control.
  for label in "${labels[@]}"; do [[ $label =~ ^(python|discovery|room)$ ]] || native+=("$label"); done
  local pytests='faults_pytest|security_pytest|control_pytest'

  # halt_on_error: the first report fails the test instead of scrolling by.
  local common=halt_on_error=1:print_stacktrace=1
  if ((${#native[@]})); then
    local re
    re="^($(IFS='|'; echo "${native[*]}"))\$"
    ASAN_OPTIONS=$common:detect_leaks=1 \
      UBSAN_OPTIONS=$common \
      run_ctest --test-dir "$asan_dir" -L "$re" -E "^($pytests)\$" --no-tests=error || rc=$?
  fi
  # ctest ANDs -L with -R, so the Python tests are picked by label, less
  # the native tests of those labels, which ran above.
  local py_labels=()
  for label in python discovery room faults security control; do
    [[ "|$sanitized_labels|" == *"|$label|"* ]] && py_labels+=("$label")
  done
  if ((${#py_labels[@]})); then
    local py_tests=(-L "^($(IFS='|'; echo "${py_labels[*]}"))\$"
                    -E '^(faults_churn|security\..*|control\..*)$')
    # The interpreter is not instrumented: the ASan runtime must be loaded
    # before it, and libstdc++ with it, or ASan cannot intercept the first
    # C++ throw. CPython's own allocations at exit are not leaks of ours.
    # --capture=sys leaves fd 2 alone, so a sanitizer report that ends the
    # interpreter still reaches the log.
    local preload
    preload="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
    LD_PRELOAD=$preload PYTEST_ADDOPTS=--capture=sys \
      ASAN_OPTIONS=$common:detect_leaks=0 UBSAN_OPTIONS=$common \
      run_ctest --test-dir "$asan_dir" "${py_tests[@]}" --no-tests=error || rc=$?
  fi
  return "$rc"
}

tsan_build() {
  mkdir -p "$tsan_dir"
  local log=$tsan_dir/test-configure.log
  cmake -S . -B "$tsan_dir" -G Ninja \
    -DCHAT_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCHAT_BUILD_BENCH=OFF -DCHAT_BUILD_PYTHON=OFF \
    -DPython_EXECUTABLE=/usr/bin/python3 "${ci_args[@]}" >"$log" 2>&1 ||
    { cat "$log"; return 1; }
  cmake --build "$tsan_dir" --target chat_core_tests chat_capi_tests chat_header_c99 \
    chat_header_cxx capi_dlopen_demo chat_server chat_client chat_log_helper \
    chat_loop_client chat_loop_server room_server chat_poll_syscalls \
    chat_capi_host_proto chat_security_tests chat_control_tests
}

tsan_tests() {
  # The system gRPC is not instrumented: tests/sanitizers/tsan.supp says what
  # is suppressed and why. Test failures fail the phase; so does any report
  # whose racing access is in our sources (tsan_gate.py), while reports
  # inside gRPC's own inlined code are counted and listed.
  local rc=0
  TSAN_OPTIONS="halt_on_error=0:exitcode=0:ignore_noninstrumented_modules=1:suppressions=$root/tests/sanitizers/tsan.supp" \
    run_ctest --test-dir "$tsan_dir" -L "^($tsan_labels)\$" --no-tests=error || rc=$?
  /usr/bin/python3 tests/sanitizers/tsan_gate.py "$tsan_dir"/Testing/Temporary/LastTest*.log || rc=$?
  return "$rc"
}

# The fuzz build and the fuzz run are two phases, like the others: a build
# that fails fails the run and skips the fuzzing.
fuzz_build() { FUZZ_BUILD_ONLY=1 bash scripts/fuzz.sh; }
fuzz_run() { FUZZ_SKIP_BUILD=1 bash scripts/fuzz.sh; }

skipped() { summary+=("$(printf '%-22s %5s   skipped (%s)' "$1" - "$2")"); }

t_all=$SECONDS
phase "setup" setup
if ((failed)); then
  skipped "tests (Release)" "no build"
else
  phase "tests (Release)" release_tests
fi
phase "build ($asan_dir)" asan_build
if [[ ${summary[-1]} == *FAILED* ]]; then
  skipped "tests (asan+ubsan)" "no sanitized build"
else
  phase "tests (asan+ubsan)" asan_tests
fi

phase "build ($tsan_dir)" tsan_build
if [[ ${summary[-1]} == *FAILED* ]]; then
  skipped "tests (tsan)" "no tsan build"
else
  phase "tests (tsan)" tsan_tests
fi

phase "build (${FUZZ_BUILD_DIR:-build-fuzz})" fuzz_build
if [[ ${summary[-1]} == *FAILED* ]]; then
  skipped "fuzz" "no fuzz build"
else
  phase "fuzz" fuzz_run
fi

echo
say "ctest summaries:"
for l in "${ctest_lines[@]}"; do say "  $l"; done
say "phases:"
for l in "${summary[@]}"; do say "  $l"; done
say "total $((SECONDS - t_all))s: $( ((failed)) && echo FAILED || echo all passed)"
exit "$failed"
