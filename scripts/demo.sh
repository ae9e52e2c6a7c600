#!/usr/bin/env bash
# The README's first command: set up, then run the live demo (see scripts/demo.py for flags).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
