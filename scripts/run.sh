#!/usr/bin/env bash
# Start Slipway on the embedded default: SQLite, local artifact storage, the filesystem
# broker, the web server (gunicorn, configured as in production) and one real Celery worker
# (with beat, for the reconciler) that is started again whenever it dies
# (platform/config/embedded.py). DEBUG is off (config/settings/dev.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${SLIPWAY_HOST:-127.0.0.1}
PORT=${SLIPWAY_PORT:-8000}
export DJANGO_SETTINGS_MODULE=config.settings.dev
DATA_DIR=${SLIPWAY_DATA_DIR:-var}
mkdir -p "$DATA_DIR"

# The browser app: rebuilt (npm ci + vite build) only when its sources changed since the last build.
# (npm keeps using your own HOME and its cache; nothing Slipway runs below does.)
if command -v npm >/dev/null 2>&1; then
  make --no-print-directory frontend >&2
elif [ ! -f frontend/dist/index.html ]; then
  echo "Node.js/npm not found: the API runs, but /app/ stays empty until the browser app is built (make frontend)." >&2
fi

$PY manage.py migrate --noinput >/dev/null
$PY manage.py collectstatic --noinput >/dev/null

$PY manage.py bootstrap --url "http://$HOST:$PORT/"
echo "  browser app: http://$HOST:$PORT/app/"
echo "  worker log:  $DATA_DIR/worker.log      (the worker is restarted if it dies; Ctrl-C stops web and worker)"
# Caffe/MXNet/Paddle imports and the LiteRT, RKNN and ExecuTorch builds run in environments of
# their own (docs/adr/0017), built once by `make framework-envs`; say which are missing.
$PY -c 'from workers.engine import framework_envs as f
names = ", ".join(n for n in f.ENVS if not f.is_ready(n))
if names:
    print(f"  not built:   framework environments {names}; until `make framework-envs` builds them "
          "(about 10 minutes, once), this worker does not import Caffe, MXNet or PaddlePaddle models or build "
          "LiteRT, RKNN or ExecuTorch variants")'

PYTHONPATH="$PWD/platform${PYTHONPATH:+:$PYTHONPATH}" exec $PY -m config.embedded --host "$HOST" --port "$PORT" --data-dir "$DATA_DIR"
