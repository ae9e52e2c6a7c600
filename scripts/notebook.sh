#!/usr/bin/env bash
# JupyterLab on notebooks/main.ipynb with the project's kernel, `txn-pipeline`: this checkout's .venv
# Python, which scripts/bootstrap.sh registers in the .venv (run `make notebook`, which runs it
# first). The server's root is the checkout. Arguments go to `jupyter lab`, e.g.
#   scripts/notebook.sh --no-browser --port 8890
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# Jupyter refuses to run as root unless told; containers and CI machines often are root.
if [ "$(id -u)" = 0 ]; then set -- --allow-root "$@"; fi
exec .venv/bin/python -m jupyter lab --ServerApp.root_dir="$ROOT" "$@" notebooks/main.ipynb
