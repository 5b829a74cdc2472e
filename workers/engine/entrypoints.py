"""The engine functions the sandbox may run, by name. Each takes a JSON payload and a progress callback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

ProgressCallback = Callable[[float, str], None]


def inspect_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Unpack the source (an .onnx file or a .zip with external data) and inspect the model.

    payload: {"source": path, "format": "onnx" | "onnx-zip", "workdir": path}
    """
    from workers.engine.archive import extract_archive
    from workers.engine.inspection import inspect_model

    source = Path(payload["source"])
    if payload["format"] == "onnx-zip":
        progress(0.02, "unpacking archive")
        model_path = extract_archive(source, Path(payload["workdir"]) / "unpacked")
    else:
        model_path = source
    return inspect_model(model_path, progress=progress).to_dict()


def _selftest_entry(payload: dict[str, Any], progress: ProgressCallback) -> dict[str, Any]:
    """Used by the sandbox's own tests: behave as asked (echo, crash, allocate, hang, reject)."""
    import os
    import signal
    import time

    from workers.engine.errors import ModelError

    action = payload.get("action")
    if action == "echo":
        print("noise on stdout must not break the protocol")
        progress(0.5, "halfway")
        return {"echo": payload.get("value")}
    if action == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if action == "allocate":
        blob = bytearray(int(payload["bytes"]))
        return {"allocated": len(blob)}
    if action == "hang":
        time.sleep(3600)
    if action == "reject":
        raise ModelError("invalid_model", "The model is not valid.")
    raise ValueError(f"unknown action {action!r}")


ENTRYPOINTS: dict[str, Callable[[dict[str, Any], ProgressCallback], dict[str, Any]]] = {
    "inspect": inspect_entry,
    "selftest": _selftest_entry,
}
