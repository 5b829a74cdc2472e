"""The request/result protocol between an importer and its framework side (standard library only).

The importer writes a request as JSON and starts the side with two arguments, the request's
path and the path the side writes its result to. Actions:

- "convert": {"action", "model": {role: path}, "out_dir", "opset": int | null,
  "inputs": [{"name", "shape": [int | str | null], "dtype"}] (declared by the user; may be
  empty)}. Result: {"ok": true, "onnx": path, "inputs": [...], "outputs": [names, in the
  ONNX graph's order], "framework", "framework_version", "converter", "converter_version",
  "method", "notes": [...], "assumptions": [...], "tool_versions": {...}}.
- "run": {"action", "model": {role: path}, "inputs": [...] (as convert answered),
  "feeds": npz path (one array per input name), "outputs": npz path to write (one array per
  ONNX output name)}. Result: {"ok": true, "reference": "what ran the original, with version"}.
  Several input sets in one process: "batches": [{"feeds", "outputs"}, ...] instead of
  "feeds" and "outputs"; `serve` runs the action once per set (the framework is imported once).

A refusal (a file the framework or converter can't take) is {"ok": false, "code", "message"}
with exit status 0: the message says what is wrong, naming the layer and its type, and what
to do. Any other exit is a crash, which the importer reports with the side's log.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class Refused(Exception):
    """The model can't be taken: `code` is stable, `message` is for the user."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def serve(actions: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> int:
    """Read the request named by argv[1], run its action, write the result to argv[2]."""
    request_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    request = json.loads(request_path.read_text())
    action = actions.get(request.get("action", ""))
    if action is None:
        result: dict[str, Any] = {"ok": False, "code": "bad_request", "message": f"unknown action {request!r}"}
    else:
        try:
            batches = request.pop("batches", None)
            if batches is None:
                result = {"ok": True, **action(request)}
            else:
                result = {"ok": True}
                for batch in batches:
                    result.update(action({**request, "feeds": batch["feeds"], "outputs": batch["outputs"]}))
        except Refused as exc:
            result = {"ok": False, "code": exc.code, "message": exc.message}
        except Exception:
            traceback.print_exc()
            return 2
    result_path.write_text(json.dumps(result))
    return 0


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


class _NoShell:
    """What Popen gives for a shell command in the sandbox, which has no shell (no programs
    besides the interpreter: workers/engine/isolation.py): the answer of a shell that lacks the
    command, on stderr, which is how the libraries that probe this way read "unknown"."""

    returncode = 127

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def communicate(self, *args: Any, **kwargs: Any) -> tuple[bytes, bytes]:
        return b"", b"sh: not available in the sandbox"

    def wait(self, *args: Any, **kwargs: Any) -> int:
        return self.returncode


@contextlib.contextmanager
def without_shell() -> Iterator[None]:
    """Shell commands answer as a shell that lacks them, while a framework is imported: Paddle
    asks `ldd --version | awk ...` for the glibc version at import (only to work around glibc
    < 2.23), and a probe like it must not crash the side where no shell exists."""
    real = subprocess.Popen

    def popen(args: Any, *rest: Any, shell: bool = False, **kwargs: Any) -> Any:
        if shell:
            return _NoShell()
        return real(args, *rest, shell=shell, **kwargs)  # type: ignore[call-overload]

    subprocess.Popen = popen  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        subprocess.Popen = real  # type: ignore[misc]
