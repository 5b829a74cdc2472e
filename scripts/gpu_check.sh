#!/usr/bin/env bash
# Run every GPU test of the engine (TensorRT engines, torch_cuda variants) in one go, on a GPU machine.
#
#   bash scripts/gpu_check.sh            # from the repository root or anywhere
#
# Wheels in .whl/ (onnx2torch, and whatever else the machine lacks: onnx, pytest, ...) are
# installed without an index into a scratch folder put first on PYTHONPATH; without .whl/
# the machine's own packages are used. The engine tests need no Django, so the Django
# plugin is off and the root conftest (which needs Django) is not loaded. The whole run
# stays under 10 minutes: pytest gets 540 s. With OUT set, the log is also written to
# "$OUT/gpu_check.log". The exit status is pytest's (124 when it timed out).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PYTHON=${PYTHON:-python3}
LOG=/dev/null
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  LOG="$OUT/gpu_check.log"
fi

main() {
  echo "== gpu_check $(date -u +%FT%TZ) on $(hostname)"
  if compgen -G ".whl/*.whl" >/dev/null; then
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-site.XXXXXX")
    echo "== installing the wheels in .whl/ into $SITE:" .whl/*.whl
    "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$SITE" .whl/*.whl || echo "!! wheel install failed"
    export PYTHONPATH="$SITE:$PWD:$PWD/platform${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "== no .whl/ folder: using the packages installed on this machine"
    export PYTHONPATH="$PWD:$PWD/platform${PYTHONPATH:+:$PYTHONPATH}"
  fi

  echo "== nvidia-smi"
  nvidia-smi || echo "!! nvidia-smi failed or is missing"

  echo "== versions"
  "$PYTHON" - <<'EOF'
import importlib
import sys

print("python", sys.version.split()[0])
try:
    import torch

    cuda = torch.cuda.is_available()
    print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| available", cuda)
    if cuda:
        print("gpu", torch.cuda.get_device_name(0), "| compute capability", torch.cuda.get_device_capability(0))
except Exception as exc:  # report, do not stop: the tests skip with their own reasons
    print("torch: not usable:", exc)
for name in ("tensorrt", "onnx2torch", "torchvision", "onnx", "onnxruntime", "numpy", "pytest"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "(no __version__)"))
    except Exception as exc:
        print(f"{name}: not importable ({type(exc).__name__}: {exc})")
EOF

  echo "== pytest -m gpu tests/engine"
  timeout 540 "$PYTHON" -m pytest -m gpu tests/engine -q -rs -p no:django -p no:cacheprovider \
    --confcutdir=tests/engine -W "ignore::pytest.PytestConfigWarning"
  local status=$?
  echo "== pytest exit status: $status"
  return "$status"
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
