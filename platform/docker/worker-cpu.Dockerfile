# syntax=docker/dockerfile:1
#
# Slipway CPU worker image: Celery consuming the `cpu` and `default` queues (conversion,
# inspection, validation, CPU benchmarks). docker-compose.yml also runs beat from it.
# The entrypoint waits for the database and for the web process to have migrated it.
#
# Build context is the repository root:
#   docker build -f platform/docker/worker-cpu.Dockerfile -t slipway/worker-cpu .

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a virtualenv with the project and its dependencies -------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, read from pyproject.toml alone, so a code change reuses this layer.
# SLIPWAY_EXTRAS picks what this worker can do: the CPU runtimes always; the importers for
# scikit-learn/XGBoost/LightGBM by default; add "pytorch" and/or "tensorflow" to build a worker
# that also takes those import jobs (manage.py run_worker subscribes to what is installed).
# The pytorch extra takes torch's CPU build from its own index, never a CUDA build.
# ExecuTorch's runtime (--no-deps) loads where torch 2.13 is installed (the "pytorch" extra); its
# exporter runs in the `executorch` framework environment below.
ARG SLIPWAY_EXTRAS=s3,runtimes-cpu,sklearn
COPY pyproject.toml ./
RUN python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = os.environ["SLIPWAY_EXTRAS"].split(","); print("\n".join(p["dependencies"] + [d for e in extras for d in p["optional-dependencies"][e]]))' > requirements.txt \
    && pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt \
    && pip install --no-cache-dir --no-deps "pnnx>=20250503" \
    && pip install --no-cache-dir --no-deps "executorch==1.4.1"
COPY apps ./apps
COPY workers ./workers
COPY platform ./platform
RUN pip install --no-cache-dir --no-deps "."

# --- runtime ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# PYTHONPATH: /app/platform holds the `config` package (platform/ is not a package); both
# entries come before site-packages, so the code under /app is what runs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/platform \
    DJANGO_SETTINGS_MODULE=config.settings.prod \
    SLIPWAY_DATA_DIR=/var/lib/slipway \
    SLIPWAY_WORKER_PROFILE=cpu \
    SLIPWAY_ROLE=worker
# The boundary around untrusted models (docs/adr/0008-sandbox.md): bubblewrap, and libseccomp
# for its syscall filter (setpriv comes with util-linux).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap libseccomp2 libgomp1 libquadmath0 \
    && rm -rf /var/lib/apt/lists/*
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
COPY --chmod=0755 platform/docker/entrypoint.sh /usr/local/bin/slipway-entrypoint
# Caffe, MXNet and PaddlePaddle, and the converters of LiteRT (onnx2tf), RKNN (rknn-toolkit2)
# and ExecuTorch run in interpreter environments of their own, whose pinned libraries can't
# live beside Slipway's (docs/adr/0017-framework-environments.md, 0018). Built with this
# image's interpreter; the RKNN and ExecuTorch ones pin torch's CPU build (2.13.0+cpu), from
# PyTorch's CPU index. An empty list leaves them out, and the worker then doesn't take those
# formats' imports or build those runtimes' variants.
ARG SLIPWAY_FRAMEWORK_ENVS_BUILD="caffe mxnet paddle litert rknn executorch"
ENV SLIPWAY_FRAMEWORK_ENVS=/opt/slipway/framework-envs
RUN if [ -n "$SLIPWAY_FRAMEWORK_ENVS_BUILD" ]; then \
        PIP_NO_CACHE_DIR=1 PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
        python -m workers.engine.framework_envs build $SLIPWAY_FRAMEWORK_ENVS_BUILD; \
    fi

USER slipway:slipway
ENTRYPOINT ["/usr/local/bin/slipway-entrypoint"]
CMD ["sh", "-c", "exec python manage.py run_worker --queues cpu,default -- -n cpu@%h --concurrency=\"${WORKER_CONCURRENCY:-2}\" --prefetch-multiplier=1 -O fair"]
