#!/usr/bin/env bash
# Start, stop or show a real Prefect server and MLflow server on loopback, with pid and log files.
# Idempotent: `start` leaves running services alone. Point evomerge at them with the printed exports.
#   infra/services.sh start|stop|status
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${EVOMERGE_VENV:-$ROOT/.venv}/bin"
STATE="${EVOMERGE_SERVICES_DIR:-$ROOT/.services}"
PREFECT_PORT="${PREFECT_PORT:-4200}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
mkdir -p "$STATE"

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

wait_for() {  # name url
  for _ in $(seq 1 120); do
    if curl -fsS "$2" >/dev/null 2>&1; then echo "$1 ready at $2"; return 0; fi
    sleep 1
  done
  echo "$1 did not answer at $2; see $STATE/$1.log" >&2
  return 1
}

start() {
  if running prefect; then echo "prefect already running (pid $(cat "$STATE/prefect.pid"))"; else
    PREFECT_HOME="$STATE/prefect-home" PREFECT_SERVER_ANALYTICS_ENABLED=false \
      setsid "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT" >"$STATE/prefect.log" 2>&1 &
    echo $! >"$STATE/prefect.pid"
  fi
  if running mlflow; then echo "mlflow already running (pid $(cat "$STATE/mlflow.pid"))"; else
    mkdir -p "$STATE/mlflow-artifacts"
    setsid "$BIN/mlflow" server --backend-store-uri "sqlite:///$STATE/mlflow.db" --serve-artifacts \
      --artifacts-destination "$STATE/mlflow-artifacts" --host 127.0.0.1 --port "$MLFLOW_PORT" \
      >"$STATE/mlflow.log" 2>&1 &
    echo $! >"$STATE/mlflow.pid"
  fi
  wait_for prefect "http://127.0.0.1:$PREFECT_PORT/api/health"
  wait_for mlflow "http://127.0.0.1:$MLFLOW_PORT/health"
  echo "export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api"
  echo "export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT"
}

stop() {
  for name in prefect mlflow; do
    if running "$name"; then
      kill -- "-$(cat "$STATE/$name.pid")" 2>/dev/null || kill "$(cat "$STATE/$name.pid")"
      echo "stopped $name"
    fi
    rm -f "$STATE/$name.pid"
  done
}

status() {
  for name in prefect mlflow; do
    if running "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-status}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
