"""Build the `slipway-agent` wheel: the device agent (slipway_agent) and Slipway's framework-free
engine (workers/engine), nothing else of Slipway: no Django, no Celery (docs/adr/0016).

The agent runs the engine the workers run, so the wheel is made from this checkout's files
at build time and its version says which commit it came from. A device installs it with pip,
with the runtimes it has:

    python scripts/build_agent_wheel.py [OUT_DIR]       # -> OUT_DIR/slipway_agent-<version>-py3-none-any.whl
    pip install slipway_agent-*.whl 'onnxruntime' 'MNN'  # on the device

Prints the wheel's path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "slipway-agent"
version = "{version}"
description = "Slipway's device agent: leases measuring steps over HTTPS and runs them with Slipway's engine."
requires-python = ">=3.11"
dependencies = ["numpy>=1.26", "onnx>=1.16", "requests>=2.31", "psutil>=5.9"]

[project.optional-dependencies]
onnxruntime = ["onnxruntime>=1.17"]
mnn = ["MNN>=3.0"]
ncnn = ["ncnn>=1.0.20240410"]
# the sandbox's seccomp filter (bubblewrap comes from the system: apt install bubblewrap)
sandbox = ["pyseccomp>=0.1.2"]

[project.scripts]
slipway-agent = "slipway_agent.cli:main"

[tool.setuptools.packages.find]
include = ["slipway_agent*", "workers", "workers.engine*"]

[tool.setuptools.package-data]
"workers.engine.backends" = ["oplists/*"]
"""

WORKERS_INIT = '"""Slipway\'s framework-free model engine, as the device agent ships it (no Celery tasks)."""\n'


def _version() -> str:
    text = (REPO / "slipway_agent" / "__init__.py").read_text()
    found = re.search(r'__version__ = "([^"]+)"', text)
    assert found, "slipway_agent/__init__.py declares __version__"
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"{found.group(1)}+g{commit}" if commit else found.group(1)


def build(out_dir: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    with tempfile.TemporaryDirectory(prefix="slipway-agent-wheel-") as scratch:
        stage = Path(scratch) / "stage"
        shutil.copytree(REPO / "slipway_agent", stage / "slipway_agent", ignore=ignore)
        shutil.copytree(REPO / "workers" / "engine", stage / "workers" / "engine", ignore=ignore)
        (stage / "workers" / "__init__.py").write_text(WORKERS_INIT)
        (stage / "pyproject.toml").write_text(PYPROJECT.format(version=_version()))
        out_dir.mkdir(parents=True, exist_ok=True)
        built = Path(scratch) / "dist"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(built), "."],
            cwd=stage,
            check=True,
        )
        (wheel,) = built.glob("slipway_agent-*.whl")
        target = out_dir / wheel.name
        shutil.move(str(wheel), target)
    return target


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "dist"))
