"""ExecuTorch with the XNNPACK delegate: operator support as XNNPACK's share of each ONNX node,
.pte variants (FP32 and calibrated INT8), and sessions on ExecuTorch's runtime.

Every Slipway backend receives an ONNX model, and ExecuTorch takes PyTorch programs, so the
route is ONNX -> onnx2torch (the converter the torch_cuda backend uses) -> torch.export ->
ExecuTorch's lowering with the XNNPACK partitioner -> .pte. ExecuTorch's compiled extensions link
one PyTorch release, and its exporter brings torchao, so the conversion runs in the `executorch`
framework environment (workers/engine/framework_envs.py, ADR 0017) through its side module
`workers/engine/importers/envs/executorch_side.py`. The runtime needs only the `executorch` wheel
(installed without its dependencies) beside the same PyTorch release, so the .pte files run here,
in the worker's process, as LiteRT's do.

`check_support` converts the model once to FP32 and reads the side's answer node by node: an ONNX
node whose operators all went to XNNPACK runs "ExecuTorch (XNNPACK)"; one whose operators XNNPACK
does not take runs on ExecuTorch's portable CPU kernels, which is supported but slower; a node
onnx2torch, torch.export or the lowering refuses is unsupported, with the tool's reason, and the
nodes after it are not known. The program is traced, decomposed and lowered, so acceptance does
not prove the outputs: every variant passes a parity check against onnxruntime first.

`build_variants` asks for FP32 and INT8 (PT2E static quantization with ExecuTorch's XNNPACK
quantizer: per-channel INT8 weights, INT8 activations with scales from the calibration data, float
input and output), as the profile's precisions ask. A program is exported at fixed input shapes
(the declared ones, symbolic dims as 1, or the profile's `input_shapes`). Each .pte has a
companion `<name>.io.json` naming its positional inputs and outputs as the ONNX model does, so a
session takes and gives what the ONNX model does.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine import framework_envs
from workers.engine.backends._converters import check_inputs, convert_in_side, first_line
from workers.engine.backends._onnx_graph import DEFAULT_DOMAIN, load_graph
from workers.engine.backends.base import (
    Backend,
    BackendNotInstalled,
    Calibration,
    HardwareProfile,
    Partition,
    SupportReport,
    SupportStatus,
    Variant,
    device_runs,
    ops_by_outcome,
    verdict_for,
)

if TYPE_CHECKING:
    import numpy as np

ENV = "executorch"
DELEGATED_DEVICE = "ExecuTorch (XNNPACK)"
PORTABLE_DEVICE = "ExecuTorch (portable CPU kernels)"
MIXED_DEVICE = "ExecuTorch (XNNPACK and portable CPU kernels)"
CONVERTER_STEP = "executorch-export"
# (variant name, precision as profiles and the side name it)
VARIANT_PLANS: tuple[tuple[str, str], ...] = (("executorch-fp32", "fp32"), ("executorch-int8", "int8"))
_IO_SUFFIX = ".io.json"
_BUILD_FOLDER = ".executorch-build"  # where the side writes, inside the build's folder
_SUPPORT_NOTE = (
    "Support comes from converting the model as ExecuTorch would run it: ONNX -> onnx2torch -> torch.export -> "
    "ExecuTorch's lowering with the XNNPACK partitioner, node by node. Operators XNNPACK does not take run on "
    "ExecuTorch's portable CPU kernels (supported, usually slower). The program is traced and decomposed, so "
    "acceptance does not prove the outputs: every ExecuTorch variant passes a parity check against onnxruntime first."
)
_THREADS_NOTE = (
    "The thread count sets ExecuTorch's XNNPACK threadpool, which is one per process: sessions in one process "
    "share the last count set."
)


def io_path(variant_path: Path) -> Path:
    return variant_path.with_name(variant_path.name.removesuffix(".pte") + _IO_SUFFIX)


def _pybindings() -> Any:
    """ExecuTorch's runtime extension. It links libtorch, so torch is imported first. The compiled
    module imports in no time (`_portable_lib` in 1.4, `_C` from 1.5); its public wrapper
    (`portable_lib`, which `executorch.runtime` uses) imports the whole exporter first (5 s more,
    and ruamel.yaml), so it is only the fallback for a release that names the module otherwise."""
    importlib.import_module("torch")
    for name in ("_portable_lib", "_C"):
        try:
            return importlib.import_module(f"executorch.extension.pybindings.{name}")
        except ModuleNotFoundError:
            continue
    return importlib.import_module("executorch.extension.pybindings.portable_lib")


@functools.cache
def _runtime_problem() -> str | None:
    """Why ExecuTorch's runtime does not load in this process, or None when it does (once per process)."""
    if find_spec("executorch") is None:
        return "the executorch package is not installed"
    try:
        _pybindings()
    except (ImportError, OSError) as exc:
        # An extension built for another PyTorch release fails here, on a missing libtorch symbol.
        return f"its runtime extension does not load ({first_line(str(exc))})"
    return None


def _set_threads(pybindings: Any, threads: int) -> None:
    """Size ExecuTorch's threadpool, which XNNPACK's kernels run on. It is one per process and may not be
    resized while a program runs ("unsafe"), so it is resized only when the count differs."""
    try:
        if pybindings._threadpool_get_thread_count() != threads:
            pybindings._unsafe_reset_threadpool(threads)
    except AttributeError:  # a build without the threadpool API runs at its default size
        pass


class ExecuTorchSession:
    """A .pte program on ExecuTorch's runtime (XNNPACK delegate registered), with ONNX names: the
    io.json beside it gives the ONNX name, dtype and shape of each positional input and output."""

    def __init__(self, model_path: Path, *, threads: int = 1) -> None:
        companion = io_path(model_path)
        try:
            self._io: dict[str, Any] = json.loads(companion.read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"{companion.name} is missing or unreadable beside {model_path.name}: it says how the ONNX model's "
                "inputs and outputs map onto the program. Rebuild the variant."
            ) from exc
        pybindings = _pybindings()
        _set_threads(pybindings, threads)
        try:
            self._module: Any = pybindings._load_for_executorch(str(model_path))
        except (RuntimeError, ValueError) as exc:
            raise RuntimeError(
                f"ExecuTorch could not load {model_path.name}: {first_line(str(exc))}. A program that asks for an "
                "operator or delegate this runtime lacks fails here; rebuild it with this worker's ExecuTorch."
            ) from None
        self._method = str(self._io.get("method") or "forward")
        self.input_names = tuple(str(item["onnx_name"]) for item in self._io["inputs"])
        self.output_names = tuple(str(item["onnx_name"]) for item in self._io["outputs"])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np
        import torch

        if self._module is None:
            raise RuntimeError("This session is closed; load the model again to run it.")
        check_inputs(self.input_names, inputs)
        tensors = []
        for item in self._io["inputs"]:
            array = np.asarray(inputs[item["onnx_name"]])
            if list(array.shape) != list(item["shape"]):
                raise RuntimeError(
                    f"The ExecuTorch program takes '{item['onnx_name']}' of shape {item['shape']} only (it was "
                    f"exported at that shape); got {list(array.shape)}. Build the variant for that shape (the "
                    "profile's input_shapes option)."
                )
            tensors.append(torch.from_numpy(np.ascontiguousarray(array, dtype=item["dtype"])))
        try:
            # Outputs live in the program's planned memory until the next run: copied below.
            results = self._module.run_method(self._method, tensors, clone_outputs=False)
        except RuntimeError as exc:
            raise RuntimeError(f"ExecuTorch could not run the program: {first_line(str(exc))}") from None
        return {
            item["onnx_name"]: np.array(value.numpy(), copy=True)
            for item, value in zip(self._io["outputs"], results, strict=True)
        }

    def close(self) -> None:
        self._module = None


def support_rows(answer: Mapping[str, Any]) -> list[tuple[str, str, str, SupportStatus, str, str]]:
    """(label, domain, op_type, status, device, reason) per ONNX node, from the side's answer.

    A node without operators of its own (folded by export, fused by the partitioner) counts as
    supported where it sits: on the device of the node before it with operators, else the next.
    """
    nodes: Sequence[Mapping[str, Any]] = answer.get("nodes", [])
    failed = next((node for node in nodes if node["status"] == "failed"), None)
    devices = {"delegated": DELEGATED_DEVICE, "portable": PORTABLE_DEVICE, "partly_delegated": MIXED_DEVICE}
    placed = [devices.get(node["status"], "") for node in nodes]
    for index, node in enumerate(nodes):
        if node["status"] == "no_ops":
            before = next((device for device in reversed(placed[:index]) if device), "")
            after = next((device for device in placed[index + 1 :] if device), "")
            placed[index] = before or after or DELEGATED_DEVICE
    rows: list[tuple[str, str, str, SupportStatus, str, str]] = []
    for node, device in zip(nodes, placed, strict=True):
        label, op_type, status = str(node["name"]), str(node["op_type"]), node["status"]
        domain = str(node.get("domain") or DEFAULT_DOMAIN)
        reason = str(node.get("reason") or "")
        if status == "delegated":
            rows.append((label, domain, op_type, "supported", device, ""))
        elif status in ("portable", "partly_delegated", "no_ops"):
            rows.append((label, domain, op_type, "supported", device, reason))
        elif status == "failed":
            rows.append((label, domain, op_type, "unsupported", "", reason or "The conversion failed on this node."))
        elif failed is not None:
            reason = (
                f"Not known: conversion stopped at '{failed['name']}' ({failed['op_type']}) before it reached this "
                "node. Fix that one first, then validate again."
            )
            rows.append((label, domain, op_type, "unsupported", "", reason))
        else:
            reason = (
                f"Not known: the conversion stopped before it reached this node ({answer.get('error', 'no reason')})."
            )
            rows.append((label, domain, op_type, "unsupported", "", reason))
    return rows


def delegation_note(delegation: Mapping[str, Any]) -> str:
    """XNNPACK's share of the FP32 program's operators, in words."""

    def listed(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{op} x{count}" for op, count in sorted(counts.items())) or "none"

    delegated, portable = delegation.get("delegated", {}), delegation.get("not_delegated", {})
    return (
        f"XNNPACK takes {sum(delegated.values())} operator(s) of the FP32 program in "
        f"{delegation.get('partitions', 0)} delegated partition(s) ({listed(delegated)}); ExecuTorch's portable CPU "
        f"kernels run {sum(portable.values())} ({listed(portable)})."
    )


class ExecuTorchBackend(Backend):
    """ExecuTorch on the CPU (XNNPACK delegate, portable kernels for the rest), fed by onnx2torch and
    torch.export in their own environment."""

    name = "executorch"
    thread_argument = "threads"
    serving_requirements = ("numpy", "torch", "executorch")
    install_extra = "runtimes-cpu"

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def runtime_version(self) -> str | None:
        """The executorch package's version, or None without it (cheap: nothing is imported). Building
        also needs the converter's environment (`available`); running a file needs the runtime to
        load here (`runs_here`)."""
        if find_spec("executorch") is None:
            return None
        try:
            return importlib.metadata.version("executorch")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def runs_here(self) -> bool:
        return self.runtime_version() is not None and _runtime_problem() is None

    def available(self) -> bool:
        return self.runs_here() and framework_envs.is_ready(ENV)

    def not_installed_text(self) -> str:
        problem = (
            _runtime_problem() if self.runtime_version() is not None else "the executorch package is not installed"
        )
        if problem is not None:
            return (
                f"ExecuTorch's runtime can't run on this worker: {problem}. Install the executorch wheel that matches "
                "this worker's PyTorch (pip install 'slipway[runtimes-cpu]'), or build on a worker that has it."
            )
        return (
            "ExecuTorch's exporter environment (onnx2torch, torch.export and ExecuTorch, pinned to one PyTorch "
            "release) is not built on this worker: make framework-envs, or build on a worker that has it."
        )

    # --- operator support -----------------------------------------------------------

    def check_support(self, model_path: Path) -> SupportReport:
        """XNNPACK's share of each ONNX node, from one FP32 conversion in the exporter's environment."""
        version = self.runtime_version()
        if version is None or not self.runs_here():
            return self.not_installed_report()
        if not framework_envs.is_ready(ENV):
            # A device that only measures: ExecuTorch runs here, its exporter runs on the workers.
            return SupportReport(
                backend=self.name,
                runtime_version=version,
                installed=False,
                method="converter",
                verdict="not_installed",
                notes=(
                    f"This machine runs ExecuTorch {version} but not its exporter (onnx2torch, torch.export and "
                    "ExecuTorch's lowering, in the workers' executorch environment), and ExecuTorch's op support is "
                    "the exporter's answer: it comes from where the variants are built. Here, parity and the "
                    "benchmark load and run the .pte files the workers built.",
                ),
            )
        model = load_graph(model_path)
        with tempfile.TemporaryDirectory(prefix="slipway-executorch-") as scratch:
            answer = self._convert(model_path, model, ("fp32",), None, Path(scratch), {})
        return self.report_from_answer(version, answer)

    def report_from_answer(self, version: str, answer: Mapping[str, Any]) -> SupportReport:
        """The support report of the side's answer (no I/O)."""
        rows = support_rows(answer)
        notes = [_SUPPORT_NOTE, *answer.get("notes", [])]
        if answer.get("converted"):
            notes.append(delegation_note(answer.get("delegation", {})))
        elif answer.get("error"):
            notes.append(f"The conversion stopped: {answer['error']}")
        ops = ops_by_outcome(rows)
        supported = sum(1 for row in rows if row[3] == "supported")
        verdict = verdict_for(supported, len(rows))
        partitions: tuple[Partition, ...] = tuple(
            run for run in device_runs((row[0], row[4] if row[3] == "supported" else "") for row in rows) if run.device
        )
        return self.installed_report(version, "converter", verdict, ops=ops, partitions=partitions, notes=notes)

    # --- variants ---------------------------------------------------------------------

    def build(
        self,
        model_path: Path,
        profile: HardwareProfile,
        calibration: Calibration | None,
        out_dir: Path,
        notes: list[str],
    ) -> list[Variant]:
        """Export the .pte variants the profile's precisions ask for; INT8 needs calibration."""
        model = load_graph(model_path)
        wanted = [precision for _, precision in VARIANT_PLANS if precision in profile.precisions]
        if "int8" in wanted and calibration is None:
            wanted.remove("int8")
            notes.append(
                "executorch-int8 was not built: static INT8 needs calibration data to set its activation scales; "
                "upload a calibration .npz with the model."
            )
        if not wanted:
            return []
        overrides = profile.options.get("input_shapes") or {}
        try:
            answer = self._convert(model_path, model, tuple(wanted), calibration, out_dir, overrides)
            return self._variants(answer, wanted, out_dir, notes)
        finally:
            # The side's folder, with anything not kept: the variants were moved out first.
            shutil.rmtree(out_dir / _BUILD_FOLDER, ignore_errors=True)

    def _variants(self, answer: dict[str, Any], wanted: list[str], out_dir: Path, notes: list[str]) -> list[Variant]:
        """The side's files as variants, moved into `out_dir` with their io.json."""
        notes.extend(answer.get("notes", []))
        if not answer.get("converted"):
            failed = next((node for node in answer["nodes"] if node["status"] == "failed"), None)
            where = f" at node '{failed['name']}' ({failed['op_type']}): {failed['reason']}" if failed else ""
            reason = "" if failed else f": {answer.get('error', 'no reason given')}"
            notes.append(f"No ExecuTorch variant was built: the model could not be converted{where}{reason}")
            return []
        notes.append(delegation_note(answer.get("delegation", {})))
        notes.append(_THREADS_NOTE)
        versions = {
            "executorch-runtime": str(self.runtime_version()),
            **{str(key): str(value) for key, value in answer.get("tool_versions", {}).items()},
        }
        variants = []
        for name, precision in VARIANT_PLANS:
            if precision not in wanted:
                continue
            built = answer.get("variants", {}).get(precision, {})
            if "error" in built or not built.get("path"):
                notes.append(f"{name} was not built: {built.get('error', 'the exporter wrote no file')}")
                continue
            target = out_dir / f"{name}.pte"
            Path(built["path"]).replace(target)
            Path(built["io"]).replace(io_path(target))
            notes.extend(f"{name}: {note}" for note in built.get("notes", []))
            variants.append(
                Variant(
                    name=name,
                    backend=self.name,
                    path=target,
                    format="pte",
                    precision=precision,
                    pass_name=CONVERTER_STEP,
                    options={"input_shapes": answer.get("input_shapes", {}), "delegate": "xnnpack"},
                    tool_versions=dict(versions),
                    files=(target, io_path(target)),
                )
            )
        return variants

    # --- running ----------------------------------------------------------------------

    def load(self, variant_path: Path) -> ExecuTorchSession:
        if not self.runs_here():
            raise BackendNotInstalled(self.not_installed_text())
        return ExecuTorchSession(variant_path, threads=self.threads)

    # --- the exporter -----------------------------------------------------------------

    def _convert(
        self,
        model_path: Path,
        model: Any,
        precisions: tuple[str, ...],
        calibration: Calibration | None,
        out_dir: Path,
        overrides: dict[str, Any],
    ) -> dict[str, Any]:
        """One run of the side's "convert" in the exporter's environment."""
        request = {
            "variants": list(precisions),
            "calibration": str(calibration.path) if calibration is not None else None,
        }
        return convert_in_side(ENV, "ExecuTorch", model_path, model, out_dir, _BUILD_FOLDER, overrides, request)
