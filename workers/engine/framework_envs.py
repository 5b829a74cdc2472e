"""Framework environments: an interpreter of its own for a framework that can't live beside Slipway.

MXNet 1.9 needs numpy < 1.24, paddle2onnx pins onnx <= 1.17, caffe2onnx pins onnx 1.6 and its
reference (OpenCV's Caffe reader) is gone from OpenCV 5: none of them fits Slipway's own
environment, and none should make Slipway pin old libraries. Each gets a virtual environment
of its own, made from the pinned requirements in `workers/engine/importers/envs/<name>.txt`
(and `<name>-nodeps.txt`, installed with --no-deps, for packages whose metadata asks for what
they don't need). The importer starts its framework side there (`run_side`), inside the
same sandbox as the rest of the import.

Environments live under SLIPWAY_FRAMEWORK_ENVS (the worker image: /opt/slipway/framework-envs;
elsewhere the user's cache, ~/.cache/slipway/framework-envs). Each is built once by
`python -m workers.engine.framework_envs build NAME` (`make framework-envs`), stamped with the
fingerprint of its requirements and interpreter, and rebuilt when those change; a worker
serves a format's import queue only when its environment is built and current, and
advertises which it has (`available`). docs/adr/0017-framework-environments.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.engine.errors import ModelError

_REPO_ROOT = Path(__file__).resolve().parents[2]
_REQUIREMENTS = Path(__file__).resolve().parent / "importers" / "envs"
_STAMP = ".slipway-env.json"
# What the side may print (a converter's native log can be long); the tail is what explains.
_LOG_TAIL = 4000


@dataclass(frozen=True)
class FrameworkEnv:
    """A framework's own interpreter environment and the module that runs there."""

    name: str  # also the requirements' file name and the side module's prefix
    framework: str  # as users name it
    why: str  # why it can't share Slipway's environment

    @property
    def requirements(self) -> tuple[Path, ...]:
        """The requirement files: installed with dependencies, then those installed with --no-deps."""
        files = (_REQUIREMENTS / f"{self.name}.txt", _REQUIREMENTS / f"{self.name}-nodeps.txt")
        return tuple(path for path in files if path.exists())

    @property
    def side_module(self) -> str:
        return f"workers.engine.importers.envs.{self.name}_side"

    @property
    def path(self) -> Path:
        return envs_root() / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


ENVS: dict[str, FrameworkEnv] = {
    env.name: env
    for env in (
        FrameworkEnv("caffe", "Caffe", "caffe2onnx pins onnx 1.6, and only OpenCV 4 still reads Caffe files"),
        FrameworkEnv("mxnet", "MXNet", "MXNet 1.9 needs numpy < 1.24"),
        FrameworkEnv("paddle", "PaddlePaddle", "paddle2onnx pins onnx <= 1.17"),
        FrameworkEnv("litert", "LiteRT's converter (onnx2tf)", "onnx2tf pins TensorFlow, numpy and onnx exactly"),
        FrameworkEnv(
            "rknn",
            "Rockchip's RKNN-Toolkit2",
            "rknn-toolkit2 pins numpy <= 1.26.4, protobuf <= 4.25.4 and onnx <= 1.18",
        ),
        FrameworkEnv(
            "executorch",
            "ExecuTorch's exporter",
            "ExecuTorch's compiled kernels match one PyTorch release, and its exporter brings torchao and coremltools",
        ),
    )
}


def envs_root() -> Path:
    configured = os.environ.get("SLIPWAY_FRAMEWORK_ENVS")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "slipway" / "framework-envs"


def get(name: str) -> FrameworkEnv:
    try:
        return ENVS[name]
    except KeyError:
        raise KeyError(f"There is no framework environment '{name}'; known: {', '.join(sorted(ENVS))}.") from None


def fingerprint(env: FrameworkEnv) -> str:
    """What the environment was built from: its requirement files and this interpreter's version."""
    digest = hashlib.sha256(f"python {sys.version_info.major}.{sys.version_info.minor}\n".encode())
    for path in env.requirements:
        digest.update(path.name.encode() + b"\n" + path.read_bytes() + b"\n")
    return digest.hexdigest()


def stamp(env: FrameworkEnv) -> dict[str, Any] | None:
    """The build record of a built environment, or None when it is not built."""
    try:
        data = json.loads((env.path / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and env.python.exists() else None


def is_ready(name: str) -> bool:
    """Built, and from the requirements this checkout pins (a stale environment is not used)."""
    env = get(name)
    built = stamp(env)
    return built is not None and built.get("fingerprint") == fingerprint(env)


def available() -> dict[str, dict[str, Any]]:
    """The framework environments this worker can run, with what each holds: its registration
    says so, and the Workers page shows it."""
    found: dict[str, dict[str, Any]] = {}
    for name, env in ENVS.items():
        built = stamp(env)
        if built is not None and built.get("fingerprint") == fingerprint(env):
            found[name] = {"framework": env.framework, "packages": built.get("packages", {})}
    return found


def build(name: str, *, force: bool = False, log: Any = print) -> Path:
    """Make the environment (a venv beside the final place, renamed there when complete, so a
    half-built one is never used) unless it is current. Returns its folder."""
    env = get(name)
    if not force and is_ready(name):
        log(f"{name}: current at {env.path}")
        return env.path
    root = envs_root()
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        # mkdtemp makes it 0700; the sandbox's unprivileged user must read and run it.
        staging.chmod(0o755)
        # venv's python is a link to this interpreter, so the sandbox (which binds this
        # interpreter's prefix) can run it; copies would be a second interpreter to bind.
        subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True)
        pip = [str(staging / "bin" / "python"), "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
        for path in env.requirements:
            nodeps = ["--no-deps"] if path.name.endswith("-nodeps.txt") else []
            log(f"{name}: pip install {' '.join(nodeps)} -r {path.name}")
            subprocess.run([*pip, *nodeps, "-r", str(path)], check=True)
        frozen = subprocess.run(
            [str(staging / "bin" / "python"), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        packages = {item["name"]: item["version"] for item in json.loads(frozen)}
        (staging / _STAMP).write_text(
            json.dumps({"fingerprint": fingerprint(env), "packages": packages, "built": time.time()}, indent=1)
        )
        if env.path.exists():
            shutil.rmtree(env.path)
        staging.rename(env.path)
        # venv wrote absolute paths of the staging folder into its scripts; `python -m`
        # (all Slipway runs) does not read them, and pip's own entry points are not used.
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"{name}: built at {env.path} in {time.monotonic() - started:.0f} s")
    return env.path


def require(name: str) -> FrameworkEnv:
    """The environment, or a readable refusal saying how to build it."""
    env = get(name)
    if not is_ready(name):
        raise ModelError(
            "framework_not_installed",
            f"This worker has no current {env.framework} environment ({env.why}, so it runs in an environment of "
            f"its own). Build it on the worker with `make framework-envs` or "
            f"`python -m workers.engine.framework_envs build {name}`, then restart the worker.",
        )
    return env


def run_side(name: str, request: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run one action of the framework's side module in its environment; return its answer.

    A refusal comes back as ModelError with the side's code and message; a crash as
    ModelError("conversion_failed") with the end of its log, since what crashed is the
    framework on the user's file. Runs wherever the caller runs: the import entry point is
    in the sandbox, and the side inherits its boundary and limits.
    """
    env = require(name)
    workdir.mkdir(parents=True, exist_ok=True)
    request_path = workdir / f"{request['action']}-request.json"
    result_path = workdir / f"{request['action']}-result.json"
    request_path.write_text(json.dumps(request))
    result_path.unlink(missing_ok=True)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA"))
    }
    environment["PYTHONPATH"] = str(_REPO_ROOT)
    environment["PYTHONNOUSERSITE"] = "1"
    completed = subprocess.run(
        [str(env.python), "-s", "-m", env.side_module, str(request_path), str(result_path)],
        cwd=workdir,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    log = completed.stdout.decode("utf-8", "replace")[-_LOG_TAIL:]
    if log.strip():
        # The sandbox keeps the child's stderr as the step's log.
        print(log, file=sys.stderr)
    if completed.returncode != 0 or not result_path.exists():
        last = next((line.strip() for line in reversed(log.splitlines()) if line.strip()), "no output")
        raise ModelError(
            "conversion_failed",
            f"{env.framework} stopped with exit code {completed.returncode} while it ran '{request['action']}' on "
            f"the model: {last[:400]}. The step's log has the rest.",
        )
    answer = json.loads(result_path.read_text())
    if not answer.get("ok"):
        raise ModelError(str(answer.get("code") or "conversion_failed"), str(answer.get("message") or "refused"))
    return dict(answer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.engine.framework_envs", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build (or confirm current) framework environments")
    build_parser.add_argument("names", nargs="*", help=f"default: all ({', '.join(ENVS)})")
    build_parser.add_argument("--force", action="store_true", help="rebuild even when current")
    commands.add_parser("list", help="the environments, where they are, and whether they are current")
    args = parser.parse_args(argv)
    if args.command == "build":
        for name in args.names or list(ENVS):
            build(name, force=args.force)
        return 0
    for name, env in ENVS.items():
        state = "current" if is_ready(name) else ("stale" if stamp(env) else "not built")
        print(f"{name:8} {state:10} {env.path}  ({env.why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
