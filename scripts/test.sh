#!/usr/bin/env bash
# Sets up (Debian packages), builds the Release preset and runs the whole test suite.
#   scripts/test.sh            everything (fast + slow labels)
#   scripts/test.sh -L fast    only the quick tests (any ctest arguments pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
# Tests run two at a time on two cores: one OpenMP thread each, and threads that sleep rather
# than spin while they wait, so the two never fight over a core.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
ctest --preset release -j"$(nproc)" --timeout 900 "$@"
