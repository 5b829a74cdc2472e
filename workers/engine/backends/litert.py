"""LiteRT (TensorFlow Lite): operator support from its converter and its op resolver, .tflite
variants, and sessions on LiteRT's interpreter with XNNPACK.

The converter, onnx2tf, pins TensorFlow, numpy and onnx exactly, so it runs in the `litert`
framework environment (workers/engine/framework_envs.py, ADR 0017) through its side module
`workers/engine/importers/envs/litert_side.py`; LiteRT's runtime (`ai-edge-litert`) is a
plain wheel beside Slipway's other runtimes, and runs the files here, on a device's agent, or
in a serving image.

`check_support` converts the model once to FP32 and reads two answers: onnx2tf's, node by
node (it converts in graph order and stops at the first node it can't), and LiteRT's, on the
file it wrote: every operator of the .tflite must be one LiteRT's built-in op resolver has
(a Flex or custom op is not), and XNNPACK, the CPU delegate LiteRT applies by default, takes
some of them and leaves the rest to LiteRT's own kernels. onnx2tf rewrites layouts
(NCHW -> NHWC) and fuses operators, so neither answer proves the outputs: every variant
passes parity against onnxruntime before anyone uses it.

`build_variants` asks for FP32, FP16 (weights stored in float16, computed in float32 by
XNNPACK unless the CPU has FP16 arithmetic) and full INT8 (weights and activations, scales
from the calibration data, float input and output), as the profile's precisions ask. Each
.tflite has a companion `<name>.io.json` saying how ONNX-layout inputs and outputs map onto
its tensors (names, transposes, quantization), so a session takes and gives what the ONNX
model does.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
from collections import Counter
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine import framework_envs
from workers.engine.backends._converters import check_inputs, convert_in_side, first_line
from workers.engine.backends._onnx_graph import DEFAULT_DOMAIN, load_graph, node_labels
from workers.engine.backends.base import (
    Backend,
    BackendNotInstalled,
    Calibration,
    HardwareProfile,
    OpSupport,
    Partition,
    SupportReport,
    SupportStatus,
    Variant,
    ops_by_outcome,
    verdict_for,
)

if TYPE_CHECKING:
    import numpy as np

ENV = "litert"
DEVICE = "LiteRT (CPU)"
XNNPACK = "XNNPACK"
CONVERTER_STEP = "onnx2tf"
# (variant name, precision as profiles name it, the side's precision)
VARIANT_PLANS: tuple[tuple[str, str], ...] = (("litert-fp32", "fp32"), ("litert-fp16", "fp16"), ("litert-int8", "int8"))
_IO_SUFFIX = ".io.json"
_BUILD_FOLDER = ".litert-build"  # where the side writes, inside the build's folder
_SUPPORT_NOTE = (
    "Support comes from onnx2tf, which converts the ONNX graph node by node into TensorFlow and then to a .tflite "
    "file, and from LiteRT's own op resolver on that file. onnx2tf rewrites layouts and fuses operators, so "
    "acceptance does not prove the outputs: every LiteRT variant passes a parity check against onnxruntime first."
)


def io_path(variant_path: Path) -> Path:
    return variant_path.with_name(variant_path.name.removesuffix(".tflite") + _IO_SUFFIX)


class LiteRTSession:
    """A .tflite file on LiteRT's interpreter (XNNPACK applied by default), through its serving
    signature, with ONNX names and layouts: the io.json beside it says which signature key each
    ONNX input and output is, and how to transpose between the layouts."""

    def __init__(self, model_path: Path, *, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        companion = io_path(model_path)
        try:
            self._io: dict[str, Any] = json.loads(companion.read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"{companion.name} is missing or unreadable beside {model_path.name}: it says how the ONNX model's "
                "inputs and outputs map onto the .tflite file. Rebuild the variant."
            ) from exc
        try:
            self._interpreter: Any = Interpreter(model_path=str(model_path), num_threads=threads)
            self._runner: Any = self._interpreter.get_signature_runner(self._io.get("signature") or None)
        except (RuntimeError, ValueError) as exc:
            raise RuntimeError(f"LiteRT could not load {model_path.name}: {first_line(str(exc))}") from None
        self.input_names = tuple(str(item["onnx_name"]) for item in self._io["inputs"])
        self.output_names = tuple(str(item["onnx_name"]) for item in self._io["outputs"])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        if self._runner is None:
            raise RuntimeError("This session is closed; load the model again to run it.")
        check_inputs(self.input_names, inputs)
        feeds = {}
        for item in self._io["inputs"]:
            array = np.asarray(inputs[item["onnx_name"]])
            if item.get("transpose"):
                array = np.transpose(array, item["transpose"])
            feeds[item["tflite_name"]] = _to_tensor(array, item)
        try:
            # The runner resizes its inputs to what it is fed and allocates again when they change.
            results = self._runner(**feeds)
        except (RuntimeError, ValueError) as exc:
            raise RuntimeError(f"LiteRT could not run the model on {_shapes(feeds)}: {first_line(str(exc))}") from None
        outputs = {}
        for item in self._io["outputs"]:
            value = _from_tensor(np.asarray(results[item["tflite_name"]]), item)
            if item.get("transpose"):
                value = np.transpose(value, item["transpose"])
            outputs[item["onnx_name"]] = np.ascontiguousarray(value)
        return outputs

    def close(self) -> None:
        self._runner = None
        self._interpreter = None


def _shapes(feeds: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{name} {list(array.shape)}" for name, array in feeds.items())


def _to_tensor(array: np.ndarray, item: dict[str, Any]) -> np.ndarray:
    """The ONNX-side array in the tensor's type; an integer input of a quantized file is
    quantized with its scale and zero point (the io.json's `quantization`)."""
    import numpy as np

    dtype = np.dtype(item.get("dtype") or "float32")
    quantization = item.get("quantization")
    if quantization and dtype.kind in "iu" and array.dtype.kind == "f":
        info = np.iinfo(dtype)
        scaled = np.round(array / quantization["scale"]) + quantization["zero_point"]
        return np.clip(scaled, info.min, info.max).astype(dtype)
    return np.ascontiguousarray(array, dtype=dtype)


def _from_tensor(value: np.ndarray, item: dict[str, Any]) -> np.ndarray:
    import numpy as np

    quantization = item.get("quantization")
    if quantization and value.dtype.kind in "iu":
        return ((value.astype(np.float32) - quantization["zero_point"]) * quantization["scale"]).astype(np.float32)
    return np.array(value, copy=True)


class LiteRTBackend(Backend):
    """LiteRT on the CPU (XNNPACK), fed by onnx2tf in its own environment."""

    name = "litert"
    thread_argument = "threads"
    serving_requirements = ("numpy", "ai-edge-litert")
    install_extra = "runtimes-cpu"

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def runtime_version(self) -> str | None:
        """ai-edge-litert's version, or None without it. Building also needs the converter's
        environment (`available`); running a file needs only this."""
        if find_spec("ai_edge_litert") is None:
            return None
        try:
            return importlib.metadata.version("ai-edge-litert")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def runs_here(self) -> bool:
        return self.runtime_version() is not None

    def available(self) -> bool:
        return self.runtime_version() is not None and framework_envs.is_ready(ENV)

    def not_installed_text(self) -> str:
        if self.runtime_version() is None:
            return (
                "LiteRT is not installed on this worker: pip install 'slipway[runtimes-cpu]' (ai-edge-litert), or "
                "build on a worker that has it."
            )
        return (
            "LiteRT's converter environment (onnx2tf, which pins its own TensorFlow) is not built on this worker: "
            "make framework-envs, or build on a worker that has it."
        )

    # --- operator support -----------------------------------------------------------

    def check_support(self, model_path: Path) -> SupportReport:
        """onnx2tf's answer per node, then LiteRT's op resolver and XNNPACK on the FP32 file."""
        version = self.runtime_version()
        if version is None:
            return self.not_installed_report()
        if not framework_envs.is_ready(ENV):
            # A device that only measures: LiteRT runs here, its converter runs on the workers.
            return SupportReport(
                backend=self.name,
                runtime_version=version,
                installed=False,
                method="converter",
                verdict="not_installed",
                notes=(
                    f"This machine runs LiteRT {version} but not its converter (onnx2tf, in the workers' litert "
                    "environment), and LiteRT's op support is the converter's answer: it comes from where the "
                    "variants are built. Here, parity and the benchmark load and run the .tflite files the workers "
                    "built, which shows whether this machine's LiteRT resolves their operators.",
                ),
            )
        model = load_graph(model_path)
        with tempfile.TemporaryDirectory(prefix="slipway-litert-") as scratch:
            answer = self._convert(model_path, model, ("fp32",), None, Path(scratch), {})
            notes = [_SUPPORT_NOTE, *answer.get("notes", [])]
            nodes = answer["nodes"]
            fp32 = answer.get("variants", {}).get("fp32", {})
            resolver: dict[str, Any] = {}
            if answer.get("converted") and fp32.get("path"):
                resolver = _resolver_check(Path(fp32["path"]), self.threads)
        labels = node_labels(model.graph)
        domains = {label: node.domain or DEFAULT_DOMAIN for label, node in zip(labels, model.graph.node, strict=True)}
        failed = next((node for node in nodes if node["status"] == "failed"), None)
        converted_types = {node["op_type"] for node in nodes if node["status"] == "converted"}
        unresolved = list(resolver.get("unresolved", []))
        # Every node converted, yet no usable file: the TFLite writer refused the graph (an op that
        # is neither builtin nor Flex), or the FP32 file does not load. No node is runnable then
        # (found by bench/op_support_matrix.py: Acos, Asinh, Split cases said "full" and did not run).
        if failed is None and not answer.get("converted"):
            why = answer.get("error") or "no reason given"
            unresolved.append(f"onnx2tf converted every node, but no .tflite file came out: {why}")
        elif answer.get("converted") and fp32.get("error"):
            unresolved.append(str(fp32["error"]))
        device = DEVICE if not resolver.get("delegated") else f"{DEVICE}, {XNNPACK}"
        rows: list[tuple[str, str, str, SupportStatus, str, str]] = []
        for node in nodes:
            label, op_type = node["name"], node["op_type"]
            domain = domains.get(label, DEFAULT_DOMAIN)
            if node["status"] == "converted" and not unresolved:
                rows.append((label, domain, op_type, "supported", device, ""))
            elif node["status"] == "converted":
                reason = f"onnx2tf converted it, but the model does not run in LiteRT as built: {'; '.join(unresolved)}"
                rows.append((label, domain, op_type, "unsupported", "", reason))
            elif node["status"] == "failed":
                reason = f"onnx2tf {answer.get('converter_version', '')} could not convert it: {node['reason']}"
                rows.append((label, domain, op_type, "unsupported", "", reason))
            elif op_type in converted_types:
                reason = f"onnx2tf converted other {op_type} nodes; it stopped at '{failed and failed['name']}' first."
                rows.append((label, domain, op_type, "supported", device, reason))
            else:
                reason = (
                    f"Not known: onnx2tf stopped at '{failed and failed['name']}' ({failed and failed['op_type']}) "
                    "before it reached this node. Fix that one first, then validate again."
                )
                rows.append((label, domain, op_type, "unsupported", "", reason))
        if resolver.get("summary"):
            notes.append(resolver["summary"])
        if answer.get("tflite_ops"):
            listed = ", ".join(f"{op['op']} x{op['count']}" for op in answer["tflite_ops"])
            notes.append(f"The FP32 .tflite file holds: {listed}.")
        ops: tuple[OpSupport, ...] = ops_by_outcome(rows)
        supported = sum(1 for row in rows if row[3] == "supported")
        verdict = verdict_for(supported, len(rows))
        partitions: tuple[Partition, ...] = ()
        if verdict == "full":
            partitions = (Partition(device, len(labels), tuple(labels)),)
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
        """Convert to the .tflite variants the profile's precisions ask for; INT8 needs calibration."""
        model = load_graph(model_path)
        wanted = [precision for _, precision in VARIANT_PLANS if precision in profile.precisions]
        if "int8" in wanted and calibration is None:
            wanted.remove("int8")
            notes.append(
                "litert-int8 was not built: full INT8 needs calibration data to set its activation scales; upload a "
                "calibration .npz with the model."
            )
        if not wanted:
            return []
        overrides = profile.options.get("input_shapes") or {}
        try:
            answer = self._convert(model_path, model, tuple(wanted), calibration, out_dir, overrides)
            return self._variants(answer, wanted, out_dir, notes)
        finally:
            # onnx2tf's SavedModel and the files not kept: the variants were moved out first.
            shutil.rmtree(out_dir / _BUILD_FOLDER, ignore_errors=True)

    def _variants(self, answer: dict[str, Any], wanted: list[str], out_dir: Path, notes: list[str]) -> list[Variant]:
        """The side's files as variants, moved into `out_dir` with their io.json."""
        notes.extend(answer.get("notes", []))
        if not answer.get("converted"):
            failed = next((node for node in answer["nodes"] if node["status"] == "failed"), None)
            where = f" at node '{failed['name']}' ({failed['op_type']}): {failed['reason']}" if failed else ""
            notes.append(f"No LiteRT variant was built: onnx2tf could not convert the model{where}.")
            return []
        versions = {
            "ai-edge-litert": str(self.runtime_version()),
            "onnx2tf": str(answer.get("converter_version", "")),
            **{str(k): str(v) for k, v in answer.get("tool_versions", {}).items()},
        }
        variants = []
        for name, precision in VARIANT_PLANS:
            if precision not in wanted:
                continue
            built = answer.get("variants", {}).get(precision, {})
            if "error" in built or not built.get("path"):
                notes.append(f"{name} was not built: {built.get('error', 'onnx2tf wrote no file')}")
                continue
            source = Path(built["path"])
            target = out_dir / f"{name}.tflite"
            source.replace(target)
            Path(built["io"]).replace(io_path(target))
            notes.extend(f"{name}: {note}" for note in built.get("notes", []))
            variants.append(
                Variant(
                    name=name,
                    backend=self.name,
                    path=target,
                    format="tflite",
                    precision=precision,
                    pass_name=CONVERTER_STEP,
                    options={"input_shapes": answer.get("input_shapes", {})},
                    tool_versions=dict(versions),
                    files=(target, io_path(target)),
                )
            )
        return variants

    # --- running ----------------------------------------------------------------------

    def load(self, variant_path: Path) -> LiteRTSession:
        if self.runtime_version() is None:
            raise BackendNotInstalled(
                "LiteRT is not installed on this worker, so LiteRT variants cannot run here. Install ai-edge-litert "
                "on the worker or device, or run the variant where it is installed."
            )
        return LiteRTSession(variant_path, threads=self.threads)

    # --- the converter ------------------------------------------------------------------

    def _convert(
        self,
        model_path: Path,
        model: Any,
        precisions: tuple[str, ...],
        calibration: Calibration | None,
        out_dir: Path,
        overrides: dict[str, Any],
    ) -> dict[str, Any]:
        """One run of the side's "convert" in the converter's environment."""
        request = {
            "variants": list(precisions),
            "calibration": str(calibration.path) if calibration is not None else None,
        }
        return convert_in_side(ENV, "LiteRT", model_path, model, out_dir, _BUILD_FOLDER, overrides, request)


def _delegated_ops(details: list[dict[str, Any]]) -> tuple[Counter[str], int]:
    """Which operators a delegate took, by name, and in how many partitions. After delegation
    LiteRT still lists the original operators, plus one DELEGATE node per partition whose
    outputs are those of the operators it replaced: walking back from its outputs to its
    inputs through the operators that produce them finds them."""
    producers = {int(tensor): op for op in details if op["op_name"] != "DELEGATE" for tensor in op["outputs"]}
    taken: dict[int, str] = {}
    delegates = [op for op in details if op["op_name"] == "DELEGATE"]
    for delegate in delegates:
        boundary = {int(tensor) for tensor in delegate["inputs"]}
        pending = [int(tensor) for tensor in delegate["outputs"]]
        while pending:
            tensor = pending.pop()
            op = producers.get(tensor)
            if tensor in boundary or op is None or op["index"] in taken:
                continue
            taken[op["index"]] = str(op["op_name"])
            pending.extend(int(t) for t in op["inputs"] if int(t) >= 0)
    return Counter(taken.values()), len(delegates)


def _resolver_check(path: Path, threads: int) -> dict[str, Any]:
    """Which operators of the .tflite LiteRT's built-in resolver lacks, and how much XNNPACK takes."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    found: dict[str, Any] = {"unresolved": [], "delegated": False, "summary": ""}
    try:
        plain = Interpreter(
            model_path=str(path),
            num_threads=threads,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        plain.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        found["unresolved"] = [f"LiteRT's built-in op resolver can't load the file: {first_line(str(exc))}"]
        found["summary"] = f"LiteRT's built-in op resolver can't load the file: {first_line(str(exc))}"
        return found
    ops = Counter(str(op["op_name"]) for op in plain._get_ops_details())
    delegated = Interpreter(model_path=str(path), num_threads=threads)
    delegated.allocate_tensors()
    taken, partitions = _delegated_ops(delegated._get_ops_details())
    kept = Counter(ops)
    kept.subtract(taken)
    total = sum(ops.values())
    found["delegated"] = bool(taken)
    kept_text = ", ".join(f"{name} x{count}" for name, count in sorted(kept.items()) if count > 0) or "none"
    found["summary"] = (
        f"LiteRT resolves all {total} operators of the FP32 file; XNNPACK takes {sum(taken.values())} of them in "
        f"{partitions} delegated partition(s), and LiteRT's own kernels run the rest ({kept_text})."
    )
    return found
