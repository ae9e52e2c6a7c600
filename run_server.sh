#!/usr/bin/env bash
# Serve the dashboard and JSON API with gunicorn.
#   ./run_server.sh                       127.0.0.1:5000, config.json (else config.sample.json)
#   PORT=8000 CONFIG=my.json ./run_server.sh
#   HOST=0.0.0.0 ./run_server.sh          listen on every interface: refused unless the config sets
#                                         ingest_token, read_token and allowed_origins
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
if [ ! -x .venv/bin/gunicorn ]; then
  echo "error: .venv/bin/gunicorn missing; run 'make setup' first" >&2
  exit 2
fi
.venv/bin/python -m webapp --check --host "$HOST"
exec .venv/bin/gunicorn \
  --bind "$HOST:$PORT" \
  --workers "$WORKERS" \
  --worker-class gthread \
  --threads "$THREADS" \
  --timeout 30 \
  --graceful-timeout 10 \
  --no-control-socket \
  --access-logfile - \
  --access-logformat '%(h)s "%(r)s" %(s)s %(b)s %(M)sms' \
  "webapp:create_app()"
