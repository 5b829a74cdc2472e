#!/usr/bin/env bash
# Entrypoint of every Slipway image (web, worker-cpu, worker-gpu; beat runs on worker-cpu).
#
#   1. waits, for a bounded time, until the database configured by DATABASE_URL answers;
#   2. SLIPWAY_ROLE=web:            applies migrations (only the web process migrates);
#      SLIPWAY_ROLE=worker or beat: waits, for a bounded time, until web has applied them,
#                                   so no task runs against an older schema;
#      SLIPWAY_ROLE=none:           skips both steps (one-off commands that need no database);
#   3. exec "$@", so the server or worker is PID 1 and receives SIGTERM directly.
#
# The images set SLIPWAY_ROLE (web image: web, worker images: worker); compose sets beat.
# Tunables, read only here: DB_WAIT_TIMEOUT (seconds, default 60) and
# MIGRATIONS_WAIT_TIMEOUT (seconds, default 600). Exit status 78 means a configuration
# error (Django's ImproperlyConfigured, naming the variable); 1 means a wait timed out.
set -euo pipefail

log() {
  printf '%s [entrypoint] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

if [[ $# -eq 0 ]]; then
  log "no command given; pass the process to run (e.g. gunicorn ..., celery ...)"
  exit 64
fi

role="${SLIPWAY_ROLE:-none}"
readonly app_dir=/app  # WORKDIR of every image; manage.py lives here

# wait_for db|migrations: one Python process polls until the condition holds or the
# deadline passes. Configuration errors (bad DATABASE_URL, missing SLIPWAY_SECRET_KEY) are
# not retried: Django raises ImproperlyConfigured naming the variable and we stop at once.
wait_for() {
  local what="$1"
  python - "$what" <<'PY'
import os
import sys
import time

what = sys.argv[1]
if what == "db":
    timeout = float(os.environ.get("DB_WAIT_TIMEOUT", "60"))
else:
    timeout = float(os.environ.get("MIGRATIONS_WAIT_TIMEOUT", "600"))


def say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} [entrypoint] {message}", file=sys.stderr, flush=True)


import django
from django.core.exceptions import ImproperlyConfigured

try:
    django.setup()
except ImproperlyConfigured as exc:
    say(f"ERROR: configuration: {exc}")
    sys.exit(78)  # EX_CONFIG: restarting will not help until the environment changes

from django.db import connection
from django.db.utils import Error as DatabaseError

settings = connection.settings_dict
target = f"{settings.get('ENGINE', '?').rsplit('.', 1)[-1]} database {settings.get('NAME')!r}"
if settings.get("HOST"):
    target += f" on {settings['HOST']}:{settings.get('PORT') or 'default port'}"


def pending_migrations() -> list:
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    return executor.migration_plan(executor.loader.graph.leaf_nodes())


deadline = time.monotonic() + timeout
attempt = 0
while True:
    attempt += 1
    try:
        if what == "db":
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            say(f"{target} is reachable")
            break
        plan = pending_migrations()
        if not plan:
            say(f"{target} has every migration applied")
            break
        first = plan[0][0]
        problem = f"{len(plan)} migration(s) not applied yet, first {first.app_label}.{first.name}"
    except DatabaseError as exc:
        problem = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no details'}"
    connection.close()
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        if what == "db":
            say(
                f"ERROR: {target} did not answer within {timeout:g}s ({attempt} attempts). "
                f"Last error: {problem}. Check DATABASE_URL and that the database server is up "
                "(raise DB_WAIT_TIMEOUT for slow starts)."
            )
        else:
            say(
                f"ERROR: {target} still has unapplied migrations after {timeout:g}s: {problem}. "
                "The web process applies them at start; is it running the same image version? "
                "(raise MIGRATIONS_WAIT_TIMEOUT to wait longer)"
            )
        sys.exit(1)
    if attempt == 1 or attempt % 10 == 0:
        say(f"waiting for {target}: {problem}")
    time.sleep(min(2.0, remaining))
PY
}

case "$role" in
  web)
    wait_for db
    log "applying database migrations"
    python "$app_dir/manage.py" migrate --noinput
    ;;
  worker | beat)
    wait_for db
    wait_for migrations
    ;;
  none) ;;
  *)
    log "unknown SLIPWAY_ROLE='$role': expected web, worker, beat or none"
    exit 64
    ;;
esac

log "starting (role $role): $*"
exec "$@"
