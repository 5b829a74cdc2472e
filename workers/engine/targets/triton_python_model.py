"""A Triton python-backend model that runs a Slipway variant with Slipway's own engine backends.

Slipway copies this file, unchanged, as `model.py` into each version directory of a target in
python mode; the version directory also holds the variant's files and `slipway.json`, which
names the engine backend ("onnxruntime", "openvino", ...) and the main file.

It runs inside Triton's python stub, an embedded interpreter that is not Slipway's: it sees
neither the worker's site-packages (numpy, onnxruntime) nor the `workers` package. Importing
this file puts the directories listed in the model's config.pbtxt (parameter
`slipway_sys_path`, ":"-separated) on sys.path, ahead of the system's packages. That has to happen when the
file is imported, not in `initialize`: the stub imports `triton_python_backend_utils`,
which imports numpy, right after importing the model and before calling `initialize`.
(PyTriton instead starts the server with its virtualenv's bin directory first on PATH, so
that the stub's interpreter takes the virtualenv's prefix; carrying the paths in the model's
own config keeps the server's environment untouched and the stub's standard library
matched to the libpython it links.)

Tensors cross between Triton and numpy by DLPack. The stub's `as_numpy()` and numpy-array
`Tensor`s are built against numpy 1: under numpy 2 they read and write wrong data (numbers
come back as zeros or repeated values, strings crash the stub), while DLPack is a stable
ABI. Strings, which DLPack can't carry, therefore work only with numpy 1 on the server;
under numpy 2 a model with string tensors refuses to load, saying so. The stub marks the
capsules it consumed "used_dlpack" where the DLPack standard says "used_dltensor", so
numpy's capsule destructor reports a harmless ValueError for every output; `initialize`
mutes exactly that report.

With `max_batch_size` above 0, the requests Triton's dynamic batcher hands over together are
run as one batch (concatenated on axis 0, split afterwards), which is what batching is for.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

SYS_PATH_PARAMETER = "slipway_sys_path"
MANIFEST_NAME = "slipway.json"

_PARAMETER = re.compile(r'key:\s*"' + SYS_PATH_PARAMETER + r'"\s*value:\s*\{\s*string_value:\s*"([^"\\]*)"')


def extend_sys_path(config_path: Path) -> list[str]:
    """Put the `slipway_sys_path` entries of a config.pbtxt on sys.path; returns them.

    They go after the standard library and before the first site- or dist-packages
    directory: nothing in them can shadow the standard library, and their packages (the
    worker's numpy, say) win over the system's.
    """
    try:
        text = config_path.read_text()
    except OSError:
        return []
    match = _PARAMETER.search(text)
    entries = [entry for entry in match.group(1).split(":") if entry] if match else []
    for entry in entries:
        if entry in sys.path:
            sys.path.remove(entry)
    packages = [index for index, path in enumerate(sys.path) if path.rstrip("/").endswith("-packages")]
    position = packages[0] if packages else len(sys.path)
    sys.path[position:position] = entries
    return entries


# <model>/<version>/model.py: the config is one level up.
_SYS_PATH = extend_sys_path(Path(__file__).resolve().parent.parent / "config.pbtxt")


def _mute_used_dlpack_reports() -> None:
    """Drop numpy's unraisable "PyCapsule_GetPointer called with incorrect name" reports.

    They come from capsules the stub consumed and renamed "used_dlpack": numpy's destructor
    then finds neither "dltensor" nor "used_dltensor", reports it and frees nothing (the
    stub's own deleter frees the tensor), so the report is noise. Anything else is reported.
    """
    previous = sys.unraisablehook
    if getattr(previous, "slipway_mutes_dlpack", False):
        return

    def hook(unraisable: Any) -> None:
        value = unraisable.exc_value
        if isinstance(value, ValueError) and str(value) == "PyCapsule_GetPointer called with incorrect name":
            return
        previous(unraisable)

    hook.slipway_mutes_dlpack = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


class TritonPythonModel:
    """The model Triton's python backend instantiates, once per instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the variant named in this version's slipway.json with Slipway's engine backend."""
        import numpy as np
        import triton_python_backend_utils as pb_utils

        self._np: Any = np
        self._pb: Any = pb_utils
        config = json.loads(args["model_config"])
        strings = [
            tensor["name"] for tensor in config["input"] + config["output"] if tensor["data_type"] == "TYPE_STRING"
        ]
        if strings and int(np.__version__.split(".")[0]) >= 2:
            raise RuntimeError(
                f"Tensors {', '.join(strings)} hold strings, which Triton's python stub (built against numpy 1) "
                f"corrupts under numpy {np.__version__}; serve this model with numpy<2 on the Triton host, or in "
                "native mode."
            )
        _mute_used_dlpack_reports()
        version_dir = Path(args["model_repository"]) / args["model_version"]
        manifest = json.loads((version_dir / MANIFEST_NAME).read_text())
        try:
            from workers.engine.backends.registry import get_backend
        except ImportError as exc:
            raise RuntimeError(
                f"Triton's python stub can't import Slipway's engine ({exc}); sys.path starts with {_SYS_PATH}. "
                "Set the target's python paths to the directories that hold Slipway's `workers` package and "
                "its site-packages on the Triton host."
            ) from exc
        # The variant is built from an untrusted model: from here on this process reads only the
        # version's files and the code it runs, opens no TCP connection, and makes none of the
        # syscalls Slipway's sandbox refuses (workers/engine/confine.py, docs/adr/0008-sandbox.md).
        from workers.engine.confine import confine_self
        from workers.engine.isolation import IsolationUnavailable

        try:
            self.confinement = confine_self([version_dir])
        except IsolationUnavailable as exc:
            raise RuntimeError(str(exc)) from None
        pb_utils.Logger.log_info(f"Slipway model {args.get('model_name', '')}: {self.confinement}")
        backend = get_backend(manifest["engine_backend"])
        if not backend.available():
            needs = ", ".join(backend.serving_requirements) or backend.name
            raise RuntimeError(
                f"This variant runs on {backend.name}, which the Python that Triton's python stub uses does not have: "
                f"install {needs} there (pip install {' '.join(backend.serving_requirements)}), or serve the variant "
                "in native mode."
            )
        self._session: Any = backend.load(version_dir / manifest["model_file"])
        self._inputs = [tensor["name"] for tensor in config["input"]]
        self._outputs = [tensor["name"] for tensor in config["output"]]
        self._batching = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer each request; with batching, run the requests as one batch where they fit."""
        feeds: list[Any] = []
        for request in requests:
            try:
                feeds.append({name: self._input(request, name) for name in self._inputs})
            except Exception as exc:  # a bad request fails alone
                feeds.append(exc)
        results: list[Any] = [None] * len(requests)
        runnable = [index for index, feed in enumerate(feeds) if isinstance(feed, dict)]
        if self._batching and len(runnable) > 1:
            together = self._run_together([feeds[index] for index in runnable])
            if together is not None:
                for index, outputs in zip(runnable, together, strict=True):
                    results[index] = outputs
        for index, feed in enumerate(feeds):
            if results[index] is not None:
                continue
            if isinstance(feed, Exception):
                results[index] = feed
                continue
            try:
                results[index] = self._session.run(feed)
            except Exception as exc:
                results[index] = exc
        return [self._response(result) for result in results]

    def finalize(self) -> None:
        """Free the session when Triton unloads the instance."""
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def _run_together(self, feeds: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """The feeds run as one batch and split again; None when they don't stack or the run fails
        (then each runs alone, and a failure is that request's own)."""
        np = self._np
        try:
            sizes = [int(feed[self._inputs[0]].shape[0]) for feed in feeds]
            merged = {name: np.concatenate([feed[name] for feed in feeds]) for name in self._inputs}
            outputs = self._session.run(merged)
            bounds = np.cumsum(sizes)[:-1]
            split = {name: np.split(value, bounds) for name, value in outputs.items()}
        except Exception:
            return None
        return [{name: parts[index] for name, parts in split.items()} for index in range(len(feeds))]

    def _input(self, request: Any, name: str) -> Any:
        tensor = self._pb.get_input_tensor_by_name(request, name)
        if tensor is None:
            raise ValueError(f"The request has no input '{name}'.")
        try:
            return self._np.from_dlpack(tensor)
        except Exception:  # strings have no DLPack form
            return tensor.as_numpy()

    def _response(self, result: Any) -> Any:
        pb = self._pb
        if isinstance(result, Exception):
            text = str(result).strip() or type(result).__name__
            return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(text))
        tensors = []
        for name in self._outputs:
            value = self._np.ascontiguousarray(result[name])
            if value.dtype.kind in "OSU":
                tensors.append(pb.Tensor(name, value.astype(object)))
            else:
                tensors.append(pb.Tensor.from_dlpack(name, value))
        return pb.InferenceResponse(output_tensors=tensors)
