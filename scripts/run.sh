#!/usr/bin/env bash
# Start Slipway on the embedded default: SQLite, local artifact storage, the filesystem
# broker, one real Celery worker (with beat for the reconciler) and the web server.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${SLIPWAY_HOST:-127.0.0.1}
PORT=${SLIPWAY_PORT:-8000}
export DJANGO_SETTINGS_MODULE=config.settings.dev
DATA_DIR=${SLIPWAY_DATA_DIR:-var}
mkdir -p "$DATA_DIR"

# The browser app: rebuilt (npm ci + vite build) only when its sources changed since the last build.
if command -v npm >/dev/null 2>&1; then
  make --no-print-directory frontend >&2
elif [ ! -f frontend/dist/index.html ]; then
  echo "Node.js/npm not found: the API runs, but /app/ stays empty until the browser app is built (make frontend)." >&2
fi

$PY manage.py migrate --noinput >/dev/null
$PY manage.py collectstatic --noinput >/dev/null

# run_worker adds an import queue for each framework installed here (PyTorch, TensorFlow, ...).
$PY manage.py run_worker --queues cpu,default -- -B \
  --concurrency=2 --loglevel=INFO --logfile="$DATA_DIR/worker.log" --pidfile= \
  --schedule="$DATA_DIR/celerybeat-schedule" >/dev/null &
WORKER=$!
trap 'kill $WORKER 2>/dev/null; wait $WORKER 2>/dev/null' EXIT INT TERM

$PY manage.py bootstrap --url "http://$HOST:$PORT/"
echo "  browser app: http://$HOST:$PORT/app/"
echo "  worker log:  $DATA_DIR/worker.log      (Ctrl-C stops web and worker)"
$PY manage.py runserver "$HOST:$PORT" --noreload
