#!/usr/bin/env bash
# Start, stop or show a real Prefect server and MLflow server on loopback, with pid and log files.
# Idempotent: `start` leaves running services alone. Point evomerge at them with the printed exports.
#   infra/services.sh start|stop|status [prefect] [mlflow]      (default: both)
# Ports: PREFECT_PORT (4200), MLFLOW_PORT (5000); state (pids, logs, databases): EVOMERGE_SERVICES_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${EVOMERGE_VENV:-$ROOT/.venv}/bin"
STATE="${EVOMERGE_SERVICES_DIR:-$ROOT/.services}"
PREFECT_PORT="${PREFECT_PORT:-4200}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
MLFLOW_WORKERS="${MLFLOW_WORKERS:-2}"  # mlflow's default is 4; 2 answers a few searches and starts faster
mkdir -p "$STATE"

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

answers() {  # url: true when it answers 2xx (python, not curl: the venv is all this needs)
  "$BIN/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" >/dev/null 2>&1
}

wait_for() {  # name url
  for _ in $(seq 1 180); do
    if answers "$2"; then echo "$1 ready at $2"; return 0; fi
    sleep 1
  done
  echo "$1 did not answer at $2; see $STATE/$1.log" >&2
  return 1
}

start_prefect() {
  if running prefect; then echo "prefect already running (pid $(cat "$STATE/prefect.pid"))"; else
    PREFECT_HOME="$STATE/prefect-home" PREFECT_SERVER_ANALYTICS_ENABLED=false \
      PREFECT_UI_API_URL="http://127.0.0.1:$PREFECT_PORT/api" \
      setsid "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT" >>"$STATE/prefect.log" 2>&1 &
    echo $! >"$STATE/prefect.pid"
  fi
  wait_for prefect "http://127.0.0.1:$PREFECT_PORT/api/health"
  echo "export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api"
}

start_mlflow() {
  if running mlflow; then echo "mlflow already running (pid $(cat "$STATE/mlflow.pid"))"; else
    mkdir -p "$STATE/mlflow-artifacts"
    setsid "$BIN/mlflow" server --backend-store-uri "sqlite:///$STATE/mlflow.db" --serve-artifacts \
      --artifacts-destination "$STATE/mlflow-artifacts" --host 127.0.0.1 --port "$MLFLOW_PORT" \
      --workers "$MLFLOW_WORKERS" >>"$STATE/mlflow.log" 2>&1 &
    echo $! >"$STATE/mlflow.pid"
  fi
  wait_for mlflow "http://127.0.0.1:$MLFLOW_PORT/health"
  echo "export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT"
}

start() {
  for name in "$@"; do "start_$name"; done
}

stop() {
  for name in "$@"; do
    if running "$name"; then
      pid="$(cat "$STATE/$name.pid")"
      kill -- "-$pid" 2>/dev/null || kill "$pid"
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      echo "stopped $name"
    fi
    rm -f "$STATE/$name.pid"
  done
}

status() {
  for name in "$@"; do
    if running "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

command="${1:-status}"
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(prefect mlflow)
for name in "${names[@]}"; do
  case "$name" in prefect|mlflow) ;; *) echo "unknown service $name (prefect or mlflow)" >&2; exit 2 ;; esac
done
case "$command" in
  start) start "${names[@]}" ;;
  stop) stop "${names[@]}" ;;
  status) status "${names[@]}" ;;
  *) echo "usage: $0 start|stop|status [prefect] [mlflow]" >&2; exit 2 ;;
esac
