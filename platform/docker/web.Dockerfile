# syntax=docker/dockerfile:1
#
# Slipway web image: Django + DRF behind gunicorn. Static files (Django admin, DRF and,
# once frontend/ exists, the Vite build in frontend/dist) are collected at build time and
# served by WhiteNoise. The entrypoint waits for the database and applies migrations.
#
# Build context is the repository root:
#   docker build -f platform/docker/web.Dockerfile -t slipway/web .

ARG PYTHON_IMAGE=python:3.11-slim
ARG NODE_IMAGE=node:20-slim

# --- frontend: Vite build, skipped until frontend/package.json exists -------------------
FROM ${NODE_IMAGE} AS frontend
WORKDIR /src/frontend
# `frontend*` matches nothing until the frontend lands; pyproject.toml is listed only so
# this COPY always has a source (the legacy builder and podman reject an empty one).
COPY pyproject.toml frontend* ./
RUN if [ -f package.json ]; then \
        npm ci --no-audit --no-fund \
        && npm run build \
        && { [ -d dist ] || { echo "npm run build did not produce frontend/dist" >&2; exit 1; }; }; \
    else \
        echo "frontend/package.json not found: no frontend to build"; \
        mkdir -p dist; \
    fi

# --- builder: a virtualenv with the project and its dependencies -------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, read from pyproject.toml alone, so a code change reuses this layer.
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["s3"]))' > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt
COPY apps ./apps
COPY workers ./workers
COPY platform ./platform
RUN pip install --no-cache-dir ".[s3]"

# --- runtime ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# PYTHONPATH: /app/platform holds the `config` package (platform/ is not a package). These
# two entries come before site-packages, so the code under /app is what runs and the
# settings' REPO_DIR is /app (STATIC_ROOT=/app/staticfiles, frontend at /app/frontend/dist).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/platform \
    DJANGO_SETTINGS_MODULE=config.settings.prod \
    SLIPWAY_DATA_DIR=/var/lib/slipway \
    SLIPWAY_ROLE=web
# uid/gid 10001 in every Slipway image: they share the artifact volume. The data dir is
# created owned by slipway so a fresh named volume mounted there inherits that owner.
RUN groupadd --gid 10001 slipway \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/slipway \
        --shell /usr/sbin/nologin slipway \
    && install -d -o slipway -g slipway -m 0750 /var/lib/slipway
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY manage.py ./
COPY apps ./apps
COPY workers ./workers
COPY platform ./platform
COPY --from=frontend /src/frontend/dist ./frontend/dist
COPY --chmod=0755 platform/docker/entrypoint.sh /usr/local/bin/slipway-entrypoint

# collectstatic needs importable production settings, which require a secret key. The
# dummy key (and throwaway DATABASE_URL / data dir; nothing connects) exists only in the
# environment of this one command, never in the image's ENV.
ARG COLLECTSTATIC_SECRET_KEY=collectstatic-only-build-time-dummy-key-never-used-at-run-time
RUN SLIPWAY_SECRET_KEY="$COLLECTSTATIC_SECRET_KEY" \
    DATABASE_URL=postgres://collectstatic:unused@127.0.0.1:5432/unused \
    SLIPWAY_DATA_DIR=/tmp/collectstatic-data \
    python manage.py collectstatic --noinput \
    && rm -rf /tmp/collectstatic-data

USER slipway:slipway
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=8)"]
ENTRYPOINT ["/usr/local/bin/slipway-entrypoint"]
# Sizes (WEB_CONCURRENCY, WEB_THREADS), timeouts, request limits and gunicorn's own error
# answers (JSON, like the API's) are in gunicorn.conf.py, shared with docker-compose.yml and `make run`.
CMD ["gunicorn", "--config", "platform/docker/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "config.wsgi:application"]
