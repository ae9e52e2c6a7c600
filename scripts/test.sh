#!/usr/bin/env bash
# The whole check: set-up, lint, the unit tier (no services, about a minute), types, then the
# integration and end-to-end tiers on the real emulators. With arguments, runs pytest with them
# instead of the tiers (e.g. scripts/test.sh tests/integration/test_api.py -k sum).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WITH_BROWSER=1 scripts/bootstrap.sh
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
if [ "$#" -eq 0 ]; then
  echo "==> unit tests"
  .venv/bin/python -m pytest tests/unit
fi
echo "==> mypy"
.venv/bin/mypy
started=0
if ! scripts/emulators.sh status >/dev/null 2>&1; then
  scripts/emulators.sh start >/dev/null
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then scripts/emulators.sh stop >/dev/null || true; fi; }
trap cleanup EXIT
# Three workers on two cores: much of these tiers waits (on outages, kill points, JVM start-up),
# so a third worker fills the waits; --dist worksteal rebalances the long tests.
echo "==> integration and end-to-end tests"
if [ "$#" -eq 0 ]; then set -- tests/e2e tests/integration; fi  # the longest tests first, so the workers overlap them
.venv/bin/python -m pytest -n "${TEST_WORKERS:-3}" --dist worksteal --durations=20 "$@"
