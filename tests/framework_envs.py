"""Caffe, MXNet and PaddlePaddle models for the tests, built by the frameworks themselves.

Each framework lives in an interpreter environment of its own (docs/adr/0017), built once per
machine by `make framework-envs` (cached under ~/.cache/slipway/framework-envs, shared by every
checkout); `ready(name)` builds it when missing. `framework_model(name, kind, folder)` runs
tests/framework_models/<name>_models.py with that environment's interpreter, which writes
`<kind>.zip`: the upload as a user would make it (a prototxt and its caffemodel, a symbol and
its params, a program and its params). Nothing is downloaded: the networks are defined by the
scripts and their weights are seeded random numbers.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from workers.engine import framework_envs

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_SECONDS = 20 * 60


def ready(name: str) -> framework_envs.FrameworkEnv:
    """The environment, built first when it is missing or stale (minutes, once per machine)."""
    if not framework_envs.is_ready(name):
        framework_envs.build(name)
    return framework_envs.get(name)


def framework_model(name: str, kind: str, folder: Path) -> Path:
    """`<folder>/<kind>.zip`, built by the framework (reused when already there)."""
    path = folder / f"{kind}.zip"
    if path.exists():
        return path
    env = ready(name)
    folder.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    environment["PYTHONPATH"] = str(REPO)
    built = subprocess.run(
        [str(env.python), "-s", str(REPO / "tests" / "framework_models" / f"{name}_models.py"), kind, str(folder)],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if built.returncode != 0 or not path.exists():
        raise RuntimeError(
            f"building the {name} model '{kind}' failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
        )
    return path
