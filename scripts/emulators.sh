#!/usr/bin/env bash
# Start, check and stop the local Pub/Sub and Bigtable emulators from the installed Google Cloud SDK,
# and the Cloud Storage emulator from PyPI (gcp-storage-emulator, pinned in requirements.txt).
#   scripts/emulators.sh start|stop|status|env
# Ports: PUBSUB_PORT (default 8085), BIGTABLE_PORT (default 8086), STORAGE_PORT (default 9023).
# State lives in .emulators/.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE_DIR="${EMULATOR_STATE_DIR:-$ROOT/.emulators}"
PUBSUB_PORT="${PUBSUB_PORT:-8085}"
BIGTABLE_PORT="${BIGTABLE_PORT:-8086}"
STORAGE_PORT="${STORAGE_PORT:-9023}"
HOST=127.0.0.1

sdk_root() {
  if [ -n "${CLOUDSDK_ROOT:-}" ]; then echo "$CLOUDSDK_ROOT"; return; fi
  if command -v gcloud >/dev/null 2>&1; then
    gcloud info --format='value(installation.sdk_root)' 2>/dev/null && return
  fi
  echo /usr/lib/google-cloud-sdk
}

find_binaries() {
  local root
  root="$(sdk_root)"
  PUBSUB_BIN="$root/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
  BIGTABLE_BIN="$root/platform/bigtable-emulator/cbtemulator"
  local missing=()
  [ -x "$PUBSUB_BIN" ] || missing+=("pubsub-emulator")
  [ -x "$BIGTABLE_BIN" ] || missing+=("bigtable")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "error: Google Cloud SDK component(s) missing under $root/platform: ${missing[*]}" >&2
    echo "install them with: gcloud components install ${missing[*]}" >&2
    echo "  (Debian/Ubuntu: apt-get install google-cloud-cli-pubsub-emulator google-cloud-cli-bigtable-emulator)" >&2
    if ! command -v java >/dev/null 2>&1; then
      echo "the Pub/Sub emulator also needs Java 11+: apt-get install openjdk-17-jre-headless" >&2
    fi
    exit 3
  fi
}

# The Cloud Storage emulator: GCS_EMULATOR_BIN, else the .venv's, else the one on PATH.
find_storage() {
  STORAGE_BIN="${GCS_EMULATOR_BIN:-}"
  [ -n "$STORAGE_BIN" ] || { [ -x "$ROOT/.venv/bin/gcp-storage-emulator" ] && STORAGE_BIN="$ROOT/.venv/bin/gcp-storage-emulator"; }
  [ -n "$STORAGE_BIN" ] || STORAGE_BIN="$(command -v gcp-storage-emulator || true)"
  if [ -z "$STORAGE_BIN" ] || [ ! -x "$STORAGE_BIN" ]; then
    echo "error: the Cloud Storage emulator is not installed; run make setup (it is in requirements.txt)" >&2
    exit 3
  fi
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

pubsub_ready() { curl -fsS -m 2 "http://$HOST:$PUBSUB_PORT/" >/dev/null 2>&1; }
bigtable_ready() { port_open "$BIGTABLE_PORT"; }
storage_ready() { curl -fsS -m 2 "http://$HOST:$STORAGE_PORT/storage/v1/b?project=ready" >/dev/null 2>&1; }

wait_ready() {
  local name=$1 check=$2 log=$3
  for _ in $(seq 1 120); do
    if $check; then echo "$name ready"; return 0; fi
    sleep 0.5
  done
  echo "error: $name did not answer within 60 s; see $log" >&2
  tail -n 20 "$log" >&2 || true
  exit 4
}

# Run "$@" in the background, in a session of its own, with none of this shell's descriptors past
# stderr: a long-lived emulator must not keep open (or locked) a file its starter had open.
daemon() {
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@"
  ) &
}

start() {
  find_binaries
  mkdir -p "$STATE_DIR"
  if pubsub_ready; then
    echo "Pub/Sub emulator already running on $HOST:$PUBSUB_PORT"
  else
    # setsid: the emulator survives the shell that started it and can be stopped as a group.
    daemon "$PUBSUB_BIN" --host="$HOST" --port="$PUBSUB_PORT" >"$STATE_DIR/pubsub.log" 2>&1 < /dev/null
    echo $! >"$STATE_DIR/pubsub.pid"
    wait_ready "Pub/Sub emulator" pubsub_ready "$STATE_DIR/pubsub.log"
  fi
  if bigtable_ready; then
    echo "Bigtable emulator already running on $HOST:$BIGTABLE_PORT"
  else
    daemon "$BIGTABLE_BIN" -host "$HOST" -port "$BIGTABLE_PORT" >"$STATE_DIR/bigtable.log" 2>&1 < /dev/null
    echo $! >"$STATE_DIR/bigtable.pid"
    wait_ready "Bigtable emulator" bigtable_ready "$STATE_DIR/bigtable.log"
  fi
  if storage_ready; then
    echo "Cloud Storage emulator already running on $HOST:$STORAGE_PORT"
  else
    find_storage
    # In memory: buckets and objects last as long as the emulator, like the other two's data.
    daemon "$STORAGE_BIN" start --host "$HOST" --port "$STORAGE_PORT" --in-memory --quiet >"$STATE_DIR/storage.log" 2>&1 < /dev/null
    echo $! >"$STATE_DIR/storage.pid"
    wait_ready "Cloud Storage emulator" storage_ready "$STATE_DIR/storage.log"
  fi
  print_env
}

stop_one() {
  local name=$1 pidfile="$STATE_DIR/$2.pid"
  if [ -f "$pidfile" ]; then
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "$name stopped"
    fi
    rm -f "$pidfile"
  else
    echo "$name not started by this script"
  fi
}

stop() {
  stop_one "Pub/Sub emulator" pubsub
  stop_one "Bigtable emulator" bigtable
  stop_one "Cloud Storage emulator" storage
}

status() {
  local rc=0
  if pubsub_ready; then echo "Pub/Sub emulator: up on $HOST:$PUBSUB_PORT"; else echo "Pub/Sub emulator: down"; rc=1; fi
  if bigtable_ready; then echo "Bigtable emulator: up on $HOST:$BIGTABLE_PORT"; else echo "Bigtable emulator: down"; rc=1; fi
  if storage_ready; then echo "Cloud Storage emulator: up on $HOST:$STORAGE_PORT"; else echo "Cloud Storage emulator: down"; rc=1; fi
  return $rc
}

print_env() {
  echo "export PUBSUB_EMULATOR_HOST=$HOST:$PUBSUB_PORT"
  echo "export BIGTABLE_EMULATOR_HOST=$HOST:$BIGTABLE_PORT"
  echo "export STORAGE_EMULATOR_HOST=http://$HOST:$STORAGE_PORT"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|restart|status|env" >&2; exit 2 ;;
esac
