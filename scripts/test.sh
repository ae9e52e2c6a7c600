#!/usr/bin/env bash
# The whole check: set-up, emulators, lint, types, and the test suite on the real emulators.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WITH_BROWSER=1 scripts/bootstrap.sh
started=0
if ! scripts/emulators.sh status >/dev/null 2>&1; then
  scripts/emulators.sh start >/dev/null
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then scripts/emulators.sh stop >/dev/null || true; fi; }
trap cleanup EXIT
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
# Two workers: much of the suite waits (on outages, kill points, JVM start-up), so two at once
# roughly halve its time on two cores; --dist worksteal rebalances the long tests.
.venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist worksteal --durations=20 "$@"
