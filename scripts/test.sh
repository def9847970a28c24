#!/usr/bin/env bash
# What CI runs (.ci/run): sets up (Debian packages), checks the formatting, builds the Release
# preset and runs the whole test suite, then builds the ASan + UBSan preset and runs the fast
# tests under it.
#   scripts/test.sh            everything (fast + slow labels; then the fast ones under ASan)
#   scripts/test.sh -L fast    only the quick tests (any ctest arguments pass through to the
#                              Release run; the ASan run is always its fast label)
#   LA_ASAN=0 scripts/test.sh  skips the sanitizer build and run
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/format.sh --check
jobs="$(nproc)"
cmake --preset release >/dev/null
cmake --build --preset release -j"$jobs"
# Tests run two at a time on two cores: one OpenMP thread each, and threads that sleep rather
# than spin while they wait, so the two never fight over a core.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
ctest --preset release -j"$jobs" --timeout 900 "$@"
if [ "${LA_ASAN:-1}" != "0" ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j"$jobs"
  ctest --preset asan -L fast -j"$jobs" --timeout 900
fi
