"""Run engine work on untrusted model files in a child process with memory and time limits.

A model can crash a native runtime (segfault), allocate without bound, or hang. Each call
runs in a fresh `python -m workers.engine.sandbox` process: address space capped with
RLIMIT_AS, no core dumps, its own process group (killed whole on timeout), inside the
isolation boundary of `workers.engine.isolation` (a private view of the host). The parent gets
progress and the result as JSON lines over a private pipe; everything the child or its
native libraries print goes to a bounded log instead of corrupting that channel.

Entry points are looked up by name in `workers.engine.entrypoints.ENTRYPOINTS`; the child
never imports a module named by the caller.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.engine.child import forbid_network, open_channel, run_child
from workers.engine.isolation import IsolationUnavailable, SandboxView

ProgressCallback = Callable[[float, str], None]

_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one sandboxed call."""

    memory_bytes: int = 8 * 2**30
    timeout_seconds: float = 1800.0


class SandboxError(Exception):
    """The sandboxed call did not return a result. `code` is stable; `message` is for people."""

    def __init__(self, code: str, message: str, log: str = ""):
        super().__init__(message)
        self.code, self.message, self.log = code, message, log


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def run_in_sandbox(
    entrypoint: str,
    payload: dict[str, Any],
    limits: SandboxLimits,
    on_progress: ProgressCallback | None = None,
    what: str = "this step",
    *,
    writable: Sequence[str | Path] = (),
    readable: Sequence[str | Path] = (),
) -> tuple[dict[str, Any], str]:
    """Run ENTRYPOINTS[entrypoint](payload, progress) in a child; return (result, log).

    The child sees of the host only the folders in `writable` (read-write: the job's scratch
    holding its inputs and receiving its outputs) and `readable` (read-only), besides the
    interpreter and the engine code (workers/engine/isolation.py); paths in the payload must
    lie inside them.

    Raises `workers.engine.errors.ModelError` when the entry point rejected the model (a
    readable problem with the user's file), and `SandboxError` when the child crashed, ran
    out of memory or time, or failed unexpectedly, or when this worker can't isolate it.
    """

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    scratch = tempfile.mkdtemp(prefix="slipway-sandbox-")
    try:
        view = SandboxView.of(writable=[scratch, *writable], readable=readable)
        return _run(entrypoint, payload, limits, on_progress, what, env, scratch, view)
    except IsolationUnavailable as exc:
        raise SandboxError("sandbox_unavailable", str(exc)) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(
    entrypoint: str,
    payload: dict[str, Any],
    limits: SandboxLimits,
    on_progress: ProgressCallback | None,
    what: str,
    env: dict[str, str],
    scratch: str,
    view: SandboxView,
) -> tuple[dict[str, Any], str]:
    from workers.engine.errors import ModelError

    result: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None

    def on_message(message: dict[str, Any]) -> None:
        nonlocal result, failure
        kind = message.get("type")
        if kind == "progress" and on_progress is not None:
            on_progress(float(message.get("progress", 0.0)), str(message.get("message", "")))
        elif kind == "result":
            result = message.get("data") or {}
        elif kind in ("model_error", "crash"):
            failure = message

    outcome = run_child(
        ["-m", "workers.engine.sandbox", entrypoint],
        payload,
        env=env,
        # A scratch working directory: libraries that drop temporary files in the current
        # directory must not litter the code tree.
        cwd=scratch,
        timeout=limits.timeout_seconds,
        memory_bytes=limits.memory_bytes,
        on_message=on_message,
        view=view,
    )
    returncode, log = outcome.returncode, outcome.log
    timed_out = outcome.timed_out

    if timed_out:
        raise SandboxError(
            "timeout",
            f"{what.capitalize()} did not finish within {limits.timeout_seconds:.0f} s and was stopped. "
            "The model may be too large for this worker, or it makes the runtime hang.",
            log,
        )
    if failure is not None and failure["type"] == "model_error":
        raise ModelError(failure["code"], failure["message"])
    if failure is not None:
        if failure.get("exception") == "MemoryError":
            raise SandboxError(
                "out_of_memory",
                _oom_message(what, limits),
                log + "\n" + failure.get("traceback", ""),
            )
        raise SandboxError(
            "engine_error",
            f"{what.capitalize()} failed with an unexpected {failure.get('exception')}: {failure.get('message')}",
            log + "\n" + failure.get("traceback", ""),
        )
    if returncode != 0 or result is None:
        if returncode < 0:
            name = signal.Signals(-returncode).name
            if -returncode in (signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV) and _looks_like_oom(log):
                raise SandboxError("out_of_memory", _oom_message(what, limits), log)
            raise SandboxError(
                "crashed",
                f"The runtime crashed ({name}) during {what}. The model file may be corrupt or use something the "
                "runtime can't handle; the worker itself is unaffected.",
                log,
            )
        if _looks_like_oom(log):
            raise SandboxError("out_of_memory", _oom_message(what, limits), log)
        raise SandboxError("crashed", f"{what.capitalize()} stopped unexpectedly (exit code {returncode}).", log)
    return result, log


def output_file(path: str | Path, scratch: Path) -> Path:
    """A file a sandboxed child says it wrote, checked before the worker reads it: a regular
    file inside `scratch`, reached without symlinks. Model code runs in that child, so a path
    in its result is as untrusted as the model (it could name /etc/shadow, or a link to it)."""
    candidate = Path(path)
    root = scratch.resolve()
    if not candidate.is_absolute() or ".." in candidate.parts or not candidate.is_relative_to(root):
        raise SandboxError("engine_error", f"The sandboxed step named an output outside its folder ({path}).")
    current = root
    for part in candidate.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise SandboxError("engine_error", f"The sandboxed step's output {current.name} is a symbolic link.")
    if not current.is_file():
        raise SandboxError("engine_error", f"The sandboxed step's output {current.name} is not a regular file.")
    return current


def _oom_message(what: str, limits: SandboxLimits) -> str:
    return (
        f"{what.capitalize()} needed more than the sandbox's memory limit of {_gib(limits.memory_bytes)}. "
        "Use a worker with more memory or raise SLIPWAY_SANDBOX_MEMORY_BYTES."
    )


def _looks_like_oom(log: str) -> bool:
    lowered = log.lower()
    return any(s in lowered for s in ("memoryerror", "bad_alloc", "cannot allocate memory", "out of memory"))


# ---- child side --------------------------------------------------------------------------


def _child_main(entrypoint: str) -> int:
    send = open_channel()
    last_sent = [0.0]

    def progress(fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - last_sent[0] > 0.2:
            last_sent[0] = now
            send({"type": "progress", "progress": fraction, "message": message})

    forbid_network()
    from workers.engine.entrypoints import ENTRYPOINTS
    from workers.engine.errors import ModelError

    try:
        function = ENTRYPOINTS[entrypoint]
        payload = json.loads(sys.stdin.read() or "{}")
        send({"type": "result", "data": function(payload, progress)})
    except ModelError as exc:
        send({"type": "model_error", "code": exc.code, "message": exc.message})
    except BaseException as exc:  # report everything; the parent decides what it means
        send(
            {
                "type": "crash",
                "exception": type(exc).__name__,
                "message": str(exc)[:2000],
                "traceback": traceback.format_exc()[-20000:],
            }
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
