#!/usr/bin/env bash
# Runs the client tests of `llama-adapter serve` (tests/clients/test_*.py) with Python's unittest,
# in a venv with the openai SDK and selenium (made on first use, reused after):
#   tests/clients/run.sh                    every test_*.py here
#   tests/clients/run.sh test_openai.py     one file (ctest's Clients.openai, Clients.page)
# Environment: LA_CLI (the binary; default build/bin/llama-adapter), LA_SHARED_DATA (default
# ../shared/data), LA_CLIENTS_VENV (default ~/.cache/llama-adapter/venv-clients: kept across
# checkouts and CI runs, so the packages are fetched from PyPI once per machine, not per build). Exit status: 0 passed, 1 failed,
# 77 nothing ran (all skipped, or the venv could not be made: no PyPI) -- ctest's SKIP_RETURN_CODE.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${LA_CLIENTS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/llama-adapter/venv-clients}"
# Versions checked on Python 3.11 (Debian 12's) with Debian 12's chromium and chromium-driver.
requirements="openai==1.109.1 selenium==4.35.0"

# One venv for every run; ctest may start two of these at once, so its making is locked.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$requirements" ]; then
  echo "run.sh: making $venv ($requirements)"
  rm -rf "$venv"
  # shellcheck disable=SC2086  # the requirements are words
  if ! python3 -m venv "$venv" || ! "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements; then
    echo "run.sh: SKIPPED: could not make the venv with $requirements (python3-venv missing, or no PyPI)" >&2
    rm -rf "$venv"
    exit 77
  fi
  echo "$requirements" >"$venv/.requirements"
fi
flock -u 9

if [ $# -eq 0 ]; then
  set -- "$here"/test_*.py
fi
modules=()
for f in "$@"; do
  modules+=("$(basename "$f" .py)")
done
cd "$here"
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" - "${modules[@]}" <<'PY'
import sys
import time
import unittest


class Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1


start = time.monotonic()
suite = unittest.defaultTestLoader.loadTestsFromNames(sys.argv[1:])
result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=Result).run(suite)
for test, why in result.skipped:
    print(f"SKIPPED {test.id() if hasattr(test, 'id') else test}: {why}")
failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
print(f"clients: {result.passed} passed, {failed} failed, {len(result.skipped)} skipped "
      f"({time.monotonic() - start:.1f} s)")
sys.exit(1 if failed else 0 if result.passed else 77)
PY
