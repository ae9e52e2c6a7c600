#!/usr/bin/env bash
# Serve the dashboard and JSON API with gunicorn (txn-serve with the settings below taken from the environment).
#   ./run_server.sh                       127.0.0.1:5000, config.json (else config.sample.json)
#   PORT=8000 CONFIG=my.json ./run_server.sh
#   HOST=0.0.0.0 ./run_server.sh          listen on every interface: refused unless the config sets
#                                         ingest_token, read_token and allowed_origins
#   ./run_server.sh --log-format json     every log line one JSON object (or LOG_FORMAT=json); other
#                                         arguments go to txn-serve as they are
# WORKERS and THREADS tune gunicorn (default 2 processes x 8 threads). The emulator variables are
# set from the config by the app itself, only when the config names emulator hosts.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")" && pwd)"
cd "$ROOT"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-5000}"
WORKERS="${WORKERS:-2}"
THREADS="${THREADS:-8}"
if [ -n "${CONFIG:-}" ]; then export CONFIG; fi
if [ ! -x .venv/bin/python ]; then
  echo "error: .venv/bin/python missing; run 'make setup' first" >&2
  exit 2
fi
# The config check, then gunicorn in this same process: webapp/__main__.py (the txn-serve command).
exec .venv/bin/python -m webapp --host "$HOST" --port "$PORT" --workers "$WORKERS" --threads "$THREADS" \
  --log-format "${LOG_FORMAT:-text}" "$@"
