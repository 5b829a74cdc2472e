"""The target drivers are cheap to import: the web process lists targets without loading clients or runtimes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MODULES = (
    "base",
    "triton_config",
    "triton_stores",
    "triton_repository",
    "triton",
    "batching",
    "registry",
    "triton_python_model",
)
HEAVY = (
    "numpy",
    "onnx",
    "onnxruntime",
    "tritonclient",
    "gevent",
    "geventhttpclient",
    "requests",
    "boto3",
    "django",
    "celery",
)


def test_importing_the_drivers_loads_no_client_or_runtime() -> None:
    imports = "; ".join(f"import workers.engine.targets.{name}" for name in MODULES)
    script = f"import sys; {imports}; print(','.join(name for name in {HEAVY!r} if name in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == ""
