#!/usr/bin/env bash
# What CI runs (.ci/run): sets up (Debian packages), checks the formatting, builds the Release
# preset and runs the whole test suite, then builds the ASan + UBSan preset and runs the fast
# input-facing tests under it (tests/CMakeLists.txt names them) -- without the signal tests
# (minutes of training each under ASan, for checkpoint code the Finetune resume tests already run
# there), the per-ISA re-runs of the kernel tests and the tokenizer's speed check (a megabyte
# through the BPE that the fuzzers and round trips already run there), and with 1500 mutants per fuzz test instead
# of 5000-20000 (the full counts run in Release; LA_FUZZ_ITERS=20000 under ASan is the deep run,
# see tests/fuzz/README.md).
#   scripts/test.sh            everything (fast + slow labels; then the fast ones under ASan)
#   scripts/test.sh -L fast    only the quick tests (any ctest arguments pass through to the
#                              Release run; the ASan run is always its fast label)
#   LA_ASAN=0 scripts/test.sh  skips the sanitizer build and run
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's end is stamped with the seconds since the start: CI's budget is 20 minutes.
stamp() { echo "=== test.sh: $1 done at ${SECONDS} s"; }
./scripts/install-deps.sh
./scripts/format.sh --check
jobs="$(nproc)"
cmake --preset release >/dev/null
cmake --build --preset release -j"$jobs"
stamp "Release build"
# Tests run two at a time on two cores: one OpenMP thread each, and threads that sleep rather
# than spin while they wait, so the two never fight over a core.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

asan() {
  cmake --preset asan >/dev/null &&
    cmake --build --preset asan -j"$jobs" && stamp "ASan build" &&
    LA_FUZZ_ITERS="${LA_FUZZ_ITERS:-1500}" ctest --preset asan -L fast -E '^Signals[.]|[.]isa_|^BpeSpeed[.]' -j"$jobs" --timeout 900 &&
    stamp "ASan tests"
}

if [ $# -gt 0 ] || [ "${LA_ASAN:-1}" = "0" ]; then
  ctest --preset release -j"$jobs" --timeout 900 "$@"
  if [ "${LA_ASAN:-1}" != "0" ]; then asan; fi
  exit 0
fi

# The whole suite and the ASan stage. The slow label is one long single-threaded test (~1.5 min):
# alone it would leave the second core idle, so it runs beside the ASan build, which has work
# for every core (on 2 cores this saves ~3 minutes of CI). Its output is shown when it is done.
ctest --preset release -L fast -j"$jobs" --timeout 900
stamp "Release tests, label fast"
slow_log=build/slow-tests.log
ctest --preset release -L slow --timeout 900 >"$slow_log" 2>&1 &
slow_pid=$!
trap 'kill "$slow_pid" 2>/dev/null || true' INT TERM
status=0
asan || status=1
wait "$slow_pid" || status=1
stamp "Release tests, label slow"
echo "=== Release tests, label slow (ran beside the ASan build): $slow_log"
cat "$slow_log"
exit "$status"
