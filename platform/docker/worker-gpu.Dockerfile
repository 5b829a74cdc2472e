# syntax=docker/dockerfile:1
#
# Slipway GPU worker image: Celery consuming the `gpu` queue (TensorRT builds, CUDA and
# TensorRT execution-provider benchmarks), one task at a time.
#
# Base image choice: python:3.11-slim plus NVIDIA's pip wheels, not nvidia/cuda:*-ubuntu22.04.
#   * Same interpreter and Debian base as the web and CPU images, so all three run the same
#     Python 3.11 with the same pins. Ubuntu 22.04 has no supported Python 3.11 of its own
#     (a universe build, or the deadsnakes PPA), which is what the CUDA images would need.
#   * CUDA user-space libraries come from wheels resolved together by pip: the
#     onnxruntime-gpu [cuda,cudnn] extras pull the CUDA runtime, cuBLAS, cuFFT, cuRAND,
#     NVRTC and cuDNN 9 versions that build of ONNX Runtime asks for, and tensorrt-cu12
#     brings the TensorRT libraries. Nothing has to be kept in step with a base image's
#     CUDA/cuDNN by hand, and no unused CUDA libraries ship.
#   * Only the driver (libcuda, nvidia-smi) comes from the host, mounted by the NVIDIA
#     Container Toolkit when the container requests a GPU (compose: deploy.resources.
#     reservations.devices). Host driver >= 535 for CUDA 12 / TensorRT 10.
#
# Build context is the repository root:
#   docker build -f platform/docker/worker-gpu.Dockerfile -t slipway/worker-gpu .

ARG PYTHON_IMAGE=python:3.11-slim
# onnxruntime-gpu 1.22 to 1.26 are the CUDA 12 builds on PyPI (1.27 and later need CUDA 13,
# host driver >= 580). TensorRT stays on 10.x, the major version ONNX Runtime's TensorRT
# execution provider is built against (it loads libnvinfer.so.10); tensorrt-cu12 is named
# instead of the `tensorrt` meta-package because recent `tensorrt` releases resolve to CUDA 13.
ARG ONNXRUNTIME_GPU_REQUIREMENT="onnxruntime-gpu[cuda,cudnn]>=1.22,<1.27"
ARG TENSORRT_REQUIREMENT="tensorrt-cu12>=10.9,<11"

# --- builder: a virtualenv with the project and its dependencies -------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG ONNXRUNTIME_GPU_REQUIREMENT
ARG TENSORRT_REQUIREMENT
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, read from pyproject.toml alone, so a code change reuses this layer.
# The CPU `onnxruntime` is left out: `onnxruntime-gpu` provides the same `onnxruntime`
# module, and the two wheels overwrite each other's files if both are installed.
COPY pyproject.toml ./
RUN python -c 'import re, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; deps = p["dependencies"] + p["optional-dependencies"]["s3"]; print("\n".join(d for d in deps if re.split(r"[^A-Za-z0-9._-]", d, maxsplit=1)[0].lower() != "onnxruntime"))' > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt
# The TensorRT packages on PyPI are stubs that fetch the real wheels from NVIDIA's index;
# naming that index lets pip resolve the wheels directly.
RUN pip install --no-cache-dir --extra-index-url https://pypi.nvidia.com \
        "$ONNXRUNTIME_GPU_REQUIREMENT" "$TENSORRT_REQUIREMENT"
COPY apps ./apps
COPY workers ./workers
COPY platform ./platform
# --no-deps: every dependency is installed above; letting pip resolve again would bring
# the CPU onnxruntime wheel back on top of onnxruntime-gpu.
RUN pip install --no-cache-dir --no-deps ".[s3]" \
    && if pip show onnxruntime >/dev/null 2>&1; then \
        echo "the CPU onnxruntime wheel is installed next to onnxruntime-gpu" >&2; exit 1; \
    fi \
    && python -c 'import onnxruntime as ort; p = ort.get_available_providers(); assert "CUDAExecutionProvider" in p and "TensorrtExecutionProvider" in p, p; print("onnxruntime", ort.__version__, p)' \
    && python -c 'import importlib.util as u; assert u.find_spec("tensorrt") and u.find_spec("tensorrt_libs"), "tensorrt wheels missing"'

# --- runtime ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# PYTHONPATH: /app/platform holds the `config` package (platform/ is not a package); both
# entries come before site-packages, so the code under /app is what runs.
# NVIDIA_DRIVER_CAPABILITIES: which host driver parts the container toolkit mounts
# (compute: libcuda, utility: nvidia-smi/NVML). Which GPUs are visible is left to the
# device request (compose deploy.resources.reservations.devices, or `docker run --gpus`).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/platform \
    DJANGO_SETTINGS_MODULE=config.settings.prod \
    SLIPWAY_DATA_DIR=/var/lib/slipway \
    SLIPWAY_WORKER_PROFILE=gpu \
    SLIPWAY_ROLE=worker \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# The boundary around untrusted models (docs/adr/0008-sandbox.md): bubblewrap, and libseccomp
# for its syscall filter (setpriv comes with util-linux).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap libseccomp2 \
    && rm -rf /var/lib/apt/lists/*
# uid/gid 10001 in every Slipway image: they share the artifact volume. The data dir is
# created owned by slipway so a fresh named volume mounted there inherits that owner.
RUN groupadd --gid 10001 slipway \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/slipway \
        --shell /usr/sbin/nologin slipway \
    && install -d -o slipway -g slipway -m 0750 /var/lib/slipway
COPY --from=builder /opt/venv /opt/venv
# Register the CUDA, cuDNN and TensorRT libraries from the wheels with the dynamic loader,
# so ONNX Runtime's CUDA/TensorRT providers and TensorRT itself find them by soname
# (the toolkit's own ldconfig run at container start keeps these entries).
RUN site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && find "$site/nvidia" "$site/tensorrt_libs" -name 'lib*.so*' -printf '%h\n' \
        | sort -u > /etc/ld.so.conf.d/slipway-gpu-wheels.conf \
    && test -s /etc/ld.so.conf.d/slipway-gpu-wheels.conf \
    && ldconfig \
    && cache="$(ldconfig -p)" \
    && grep -q 'libcudnn\.so\.9 ' <<<"$cache" \
    && grep -q 'libnvinfer\.so\.10 ' <<<"$cache"
WORKDIR /app
COPY manage.py ./
COPY apps ./apps
COPY workers ./workers
COPY platform ./platform
COPY --chmod=0755 platform/docker/entrypoint.sh /usr/local/bin/slipway-entrypoint

USER slipway:slipway
ENTRYPOINT ["/usr/local/bin/slipway-entrypoint"]
CMD ["python", "manage.py", "run_worker", "--queues", "gpu", "--", "-n", "gpu@%h", "--concurrency=1", "--prefetch-multiplier=1", "-O", "fair"]
