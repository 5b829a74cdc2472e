"""PyTorch on an NVIDIA GPU: ONNX models converted with onnx2torch and run eagerly, in FP16, or compiled.
It is over 600 lines because a runtime backend is one module by the plug-in contract
(docs/adr/0012: adding a runtime is one file plus its test; the registry discovers the modules
in the package), and this one holds all of PyTorch's: conversion with onnx2torch and one-node
probes for op support, the variant specs for eager, FP16 and compiled runs, and the CUDA
session.

`check_support` converts the model with onnx2torch; when the whole model does not
convert, one node of each distinct operator is converted on its own in a one-node model,
and the converter's error names what it cannot handle.

`build_variants` writes, per precision of the profile, a small JSON file that says how to
run the model: `torch-cuda-fp32` (eager, TF32 off), `torch-cuda-fp16` (weights and float
inputs in half precision, outputs back to float32) and `torch-cuda-compile` (fp32 through
`torch.compile`). The conversion is deterministic, so no converted weights are stored: a
variant is the original ONNX model plus that JSON, and `load` needs only the JSON's path.
Every variant is loaded and run once on example inputs before it is returned.

torch and onnx2torch are imported inside the functions that need them; without them, or
without a CUDA device, the backend reports itself as not installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.backends._onnx_graph import load_graph, node_labels, probe_model
from workers.engine.backends.base import (
    Backend,
    BackendNotInstalled,
    Calibration,
    HardwareProfile,
    SupportMethod,
    SupportReport,
    SupportStatus,
    Variant,
    device_runs,
    ops_by_outcome,
    verdict_for,
)
from workers.engine.errors import ModelError
from workers.engine.inspection import Dim, TensorSpec, graph_input_specs
from workers.engine.onnx_walk import DEFAULT_DOMAIN

if TYPE_CHECKING:
    import numpy as np
    from onnx import GraphProto, ModelProto, NodeProto, TypeProto

VARIANT_FORMAT = "torch-onnx2torch"
CONVERSION_STEP = "onnx2torch-conversion"
SPEC_SUFFIX = ".torchcuda.json"
CUDA_DEVICE = "CUDA"
UNSUPPORTED_DEVICE = "unsupported"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# Initializers up to this size keep their values in one-node probe models; larger (or
# external) ones are replaced by zeros of the same shape, up to _PROBE_ZEROS_BYTES.
_PROBE_CONSTANT_BYTES = 16 * 2**20
_PROBE_ZEROS_BYTES = 64 * 2**20
_MAX_REASON_CHARS = 500

_NO_CONVERTER = re.compile(
    r"Converter is not implemented \(OperationDescription\(domain='(?P<domain>[^']*)', "
    r"operation_type='(?P<op>[^']*)', version=(?P<version>\d+)\)\)"
)


@dataclass(frozen=True)
class TorchVariantSpec:
    """How to run one torch_cuda variant: which ONNX model, in which precision, compiled or not.

    `onnx` is the model's path relative to the spec file (so a folder holding both can move),
    `onnx_source` the absolute path it had when the variant was built.
    """

    onnx: str
    onnx_source: str
    onnx_sha256: str
    precision: str  # "fp32" or "fp16"
    compile: bool = False
    compile_mode: str = "default"

    def write(self, path: Path) -> None:
        """Save the spec as JSON at `path`."""
        path.write_text(json.dumps({"format": VARIANT_FORMAT, **asdict(self)}, indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> TorchVariantSpec:
        """The spec saved at `path`; raises ValueError with a sentence when it is not one."""
        try:
            data = json.loads(path.read_text())
            if data.get("format") != VARIANT_FORMAT:
                raise KeyError("format")
            return cls(
                onnx=str(data["onnx"]),
                onnx_source=str(data.get("onnx_source", "")),
                onnx_sha256=str(data.get("onnx_sha256", "")),
                precision=str(data["precision"]),
                compile=bool(data.get("compile", False)),
                compile_mode=str(data.get("compile_mode", "default")),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(
                f"{path.name} is not a torch_cuda variant file (a JSON object naming its ONNX model and precision)."
            ) from None

    def model_path(self, spec_path: Path) -> Path:
        """Where the ONNX model is: beside the spec as recorded, else where it was built from."""
        for candidate in (spec_path.parent / self.onnx, Path(self.onnx_source) if self.onnx_source else None):
            if candidate is not None and candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"The ONNX model of variant {spec_path.name} is not at {spec_path.parent / self.onnx} nor at "
            f"{self.onnx_source or 'its original path'}; keep the model beside its variants or rebuild them."
        )


def variant_spec_path(out_dir: Path, name: str) -> Path:
    """The spec file of variant `name` in `out_dir`: "<name>.torchcuda.json"."""
    return out_dir / f"{name}{SPEC_SUFFIX}"


class TorchCudaBackend(Backend):
    """PyTorch with CUDA, running ONNX models converted by onnx2torch."""

    name = "torch_cuda"
    builds_on_target = True  # its export is traced and checked on the CUDA device
    serving_requirements = ("numpy", "onnx", "torch")
    verify_failure = "does not run"

    def not_installed_text(self) -> str:
        return _not_installed_sentence()

    def verify(self, variant: Variant, profile: HardwareProfile) -> None:
        """Nothing: `build` ran each variant once, on the GPU, to time its load and first run."""

    def error_text(self, exc: BaseException) -> str:
        return _converter_error_text(exc)

    def runtime_version(self) -> str | None:
        """PyTorch's and CUDA's versions (and onnx2torch's) when all import and a GPU is usable, else None."""
        return _runtime()[0]

    def not_installed_report(self) -> SupportReport:
        """The base report, with the sentence saying which piece is missing."""
        report = super().not_installed_report()
        missing = _runtime()[1]
        return replace(report, notes=(*report.notes, missing)) if missing else report

    # --- operator support -----------------------------------------------------------------

    def check_support(self, model_path: Path) -> SupportReport:
        """Which operators onnx2torch converts, so that the model runs on the GPU through PyTorch.

        Raises ModelError "invalid_model" when the file cannot be parsed as ONNX.
        """
        version = self.runtime_version()
        if version is None:
            return self.not_installed_report()
        model = load_graph(model_path, file_format=None)
        labels = node_labels(model.graph)
        try:
            _convert(model_path)
        except Exception as exc:  # onnx2torch raises NotImplementedError, KeyError, ValueError, ...
            return self._probe_report(model, labels, version, _converter_error_text(exc))
        statuses: list[tuple[SupportStatus, str, str]] = [("supported", CUDA_DEVICE, "")] * len(labels)
        notes = ["onnx2torch converted the whole model; every operator runs as a PyTorch module on the GPU."]
        return _report(self.name, version, model.graph, labels, statuses, "converter", notes)

    def _probe_report(self, model: ModelProto, labels: list[str], version: str, whole_error: str) -> SupportReport:
        """Convert one node of each distinct operator on its own to find the ones onnx2torch refuses."""
        probes = _ProbeBuilder.of(model)
        outcomes: dict[tuple[str, str], tuple[SupportStatus, str, str]] = {}
        statuses: list[tuple[SupportStatus, str, str]] = []
        for node in model.graph.node:
            key = (node.domain or DEFAULT_DOMAIN, node.op_type)
            if key not in outcomes:
                try:
                    _convert(probes.one_node_model(node))
                    outcomes[key] = ("supported", CUDA_DEVICE, "")
                except Exception as exc:  # the converter's own errors
                    outcomes[key] = ("unsupported", "", _converter_error_text(exc))
            statuses.append(outcomes[key])
        notes = [
            f"onnx2torch could not convert the whole model ({whole_error}); one node of each distinct operator was "
            "converted on its own in a one-node model."
        ]
        notes.extend(probes.notes)
        report = _report(self.name, version, model.graph, labels, statuses, "converter", notes)
        if report.verdict == "full":
            notes.append(
                "Every operator converts on its own, so the model fails for another reason, such as how its nodes "
                "are connected or an attribute value one node uses."
            )
            return replace(report, verdict="error", notes=tuple(notes), error=whole_error)
        return report

    # --- variants -----------------------------------------------------------------------

    def build(
        self,
        model_path: Path,
        profile: HardwareProfile,
        calibration: Calibration | None,
        out_dir: Path,
        notes: list[str],
    ) -> list[Variant]:
        """Write the variants the profile's precisions ask for into `out_dir`, each run once before it is returned.

        "fp32" gives torch-cuda-fp32 and torch-cuda-compile (unless the profile's option
        "torch_compile" is false; "torch_compile_mode" picks the torch.compile mode),
        "fp16" gives torch-cuda-fp16. Example inputs take dynamic dims from the profile's
        "input_shapes" option, else 1. Each variant is run once here (its timings are
        part of its options), so `verify` has nothing left to check; variants that fail to run
        are dropped and the reason noted, as are precisions this backend does not build.
        """
        model = load_graph(model_path, file_format=None)
        specs = graph_input_specs(model.graph, numpy_dtypes_only=True)
        mode = str(profile.options.get("torch_compile_mode", "default"))
        if mode not in COMPILE_MODES:
            raise ValueError(f"torch_compile_mode '{mode}' is not one of {', '.join(COMPILE_MODES)}.")

        plans: list[tuple[str, str, bool]] = []
        for precision in dict.fromkeys(profile.precisions):
            if precision == "fp32":
                plans.append(("torch-cuda-fp32", "fp32", False))
                if profile.options.get("torch_compile", True):
                    plans.append(("torch-cuda-compile", "fp32", True))
            elif precision == "fp16":
                plans.append(("torch-cuda-fp16", "fp16", False))
            else:
                notes.append(f"torch_cuda builds fp32 and fp16 variants; '{precision}' was not built.")
        if calibration is not None:
            notes.append("torch_cuda variants are not quantized, so the calibration data was not used.")

        digest = _sha256(model_path)
        examples = _example_inputs(specs, profile.options.get("input_shapes") or {})
        versions = _tool_versions()
        variants = []
        for name, precision, compiled in plans:
            spec_path = variant_spec_path(out_dir, name)
            spec = TorchVariantSpec(
                onnx=os.path.relpath(model_path.resolve(), out_dir.resolve()),
                onnx_source=str(model_path.resolve()),
                onnx_sha256=digest,
                precision=precision,
                compile=compiled,
                compile_mode=mode,
            )
            spec.write(spec_path)
            try:
                started = time.monotonic()
                session = self.load(spec_path)
                loaded = time.monotonic()
                session.run(examples)
                first_run = time.monotonic() - loaded
                session.close()
            except Exception as exc:  # conversion, CUDA and compile errors of any type
                spec_path.unlink(missing_ok=True)
                notes.append(f"{name} was built but does not run, so it was dropped: {_converter_error_text(exc)}")
                continue
            options: dict[str, Any] = {
                "onnx": spec.onnx,
                "onnx_sha256": digest,
                "transform": _describe_transform(precision, compiled, mode),
                "precision": precision,
                "compile": compiled,
                "load_seconds": round(loaded - started, 3),
                "first_run_seconds": round(first_run, 3),
                "example_input_shapes": {key: list(value.shape) for key, value in examples.items()},
            }
            if compiled:
                options["compile_mode"] = mode
                options["compile_seconds"] = round(first_run, 3)
                options["compile_note"] = (
                    "torch.compile compiles on the first run after every load; that run took "
                    f"{first_run:.1f} s here, later runs reuse the compiled code."
                )
            else:
                options["tf32"] = False if precision == "fp32" else None
            variants.append(
                Variant(
                    name=name,
                    backend=self.name,
                    path=spec_path,
                    format=VARIANT_FORMAT,
                    precision=precision,
                    pass_name=CONVERSION_STEP,
                    options=options,
                    tool_versions=dict(versions),
                    files=(spec_path,),
                )
            )
        return variants

    # --- running ------------------------------------------------------------------------

    def load(self, variant_path: Path) -> TorchOnnxSession:
        """Load a variant from its "<name>.torchcuda.json" (or an ONNX model, as fp32) on the GPU.

        Raises BackendNotInstalled when PyTorch, CUDA or onnx2torch is missing.
        """
        if self.runtime_version() is None:
            raise BackendNotInstalled(_not_installed_sentence())
        if variant_path.name.endswith(".json"):
            spec = TorchVariantSpec.read(variant_path)
            return TorchOnnxSession(
                spec.model_path(variant_path),
                precision=spec.precision,
                compile=spec.compile,
                compile_mode=spec.compile_mode,
            )
        return TorchOnnxSession(variant_path)


class TorchOnnxSession:
    """An ONNX model converted to a torch.fx module by onnx2torch, on one device, ready to run.

    With precision "fp16" the module and float inputs are half precision and outputs come
    back as float32; "fp32" runs with TF32 off, so results match FP32 references.
    """

    def __init__(
        self,
        onnx_path: Path,
        *,
        precision: str = "fp32",
        compile: bool = False,
        compile_mode: str = "default",
        device: str = "cuda",
    ) -> None:
        import torch

        if precision not in ("fp32", "fp16"):
            raise ValueError(f"A torch_cuda session runs fp32 or fp16, not '{precision}'.")
        model = load_graph(onnx_path, file_format=None)
        self.input_names = tuple(spec.name for spec in graph_input_specs(model.graph, numpy_dtypes_only=True))
        self.output_names = tuple(value.name for value in model.graph.output)
        self._output_plan = _output_plan(model.graph)
        self.precision = precision
        self._device = torch.device(device)
        module = _convert(onnx_path).eval().to(self._device)
        if precision == "fp16":
            module = module.half()
        if compile:
            module = torch.compile(module, mode=None if compile_mode == "default" else compile_mode)
        self._module: Any = module

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on `inputs` (input name -> array); returns output name -> array."""
        import numpy as np
        import torch

        if self._module is None:
            raise RuntimeError("This session is closed; load the variant again to run it.")
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ValueError(f"Missing input(s) {', '.join(missing)}; the model takes {', '.join(self.input_names)}.")
        tensors = []
        for name in self.input_names:
            tensor = torch.from_numpy(np.require(inputs[name], requirements=["C", "W"])).to(self._device)
            if self.precision == "fp16" and tensor.is_floating_point():
                tensor = tensor.half()
            tensors.append(tensor)
        with torch.inference_mode(), _full_fp32_math(enabled=self.precision == "fp32"):
            result = self._module(*tensors)
        per_node = [result] if len(self._output_plan.nodes) == 1 else list(result)
        outputs = {}
        for name, (position, slot) in self._output_plan.outputs.items():
            value = per_node[position]
            if self._output_plan.nodes[position][1] > 1:
                value = value[slot]
            outputs[name] = _to_numpy(value)
        return outputs

    def close(self) -> None:
        """Free the module (and the GPU memory PyTorch cached for it); `run` fails afterwards."""
        import torch

        self._module = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()


@contextlib.contextmanager
def _full_fp32_math(enabled: bool) -> Iterator[None]:
    """Turn TF32 off for matmuls and convolutions while the block runs, then restore the settings."""
    import torch

    if not enabled:
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def _to_numpy(value: Any) -> np.ndarray:
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype in (torch.float16, torch.bfloat16):
            value = value.float()
        return value.cpu().numpy()
    return np.asarray(value)


@dataclass(frozen=True)
class _OutputPlan:
    """Where each graph output is in what the onnx2torch module returns.

    The module returns one value per distinct node producing graph outputs (the value
    itself when there is one such node); a node with several outputs returns them all.
    `nodes` holds (node index, output count); `outputs` maps output name -> (position in
    `nodes`, slot among that node's outputs).
    """

    nodes: tuple[tuple[int, int], ...]
    outputs: dict[str, tuple[int, int]]


def _output_plan(graph: GraphProto) -> _OutputPlan:
    producers = {name: (index, slot) for index, node in enumerate(graph.node) for slot, name in enumerate(node.output)}
    nodes: list[tuple[int, int]] = []
    outputs: dict[str, tuple[int, int]] = {}
    for value in graph.output:
        if value.name not in producers:
            raise ModelError(
                "unsupported_model",
                f"Output '{value.name}' is a model input or a constant, which onnx2torch cannot convert.",
            )
        index, slot = producers[value.name]
        entry = (index, len(graph.node[index].output))
        if entry not in nodes:
            nodes.append(entry)
        outputs[value.name] = (nodes.index(entry), slot)
    return _OutputPlan(tuple(nodes), outputs)


# --- support reports ----------------------------------------------------------------------------


def _report(
    backend: str,
    version: str,
    graph: GraphProto,
    labels: list[str],
    statuses: Sequence[tuple[SupportStatus, str, str]],
    method: SupportMethod,
    notes: list[str],
) -> SupportReport:
    ops = ops_by_outcome(
        (label, node.domain or DEFAULT_DOMAIN, node.op_type, *status)
        for node, label, status in zip(graph.node, labels, statuses, strict=True)
    )
    # onnx2torch requires nodes in topological order, so the file's order is the run order.
    partitions = device_runs(
        (label, CUDA_DEVICE if status == "supported" else UNSUPPORTED_DEVICE)
        for label, (status, _, _) in zip(labels, statuses, strict=True)
    )
    supported = sum(1 for status, _, _ in statuses if status == "supported")
    return SupportReport(
        backend=backend,
        runtime_version=version,
        installed=True,
        method=method,
        verdict=verdict_for(supported, len(labels)),
        ops=ops,
        partitions=tuple(partitions),
        notes=tuple(notes),
    )


def _converter_error_text(exc: BaseException) -> str:
    """The first line of a converter error, with onnx2torch's "no converter" message in words."""
    line = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    match = _NO_CONVERTER.search(line)
    if match:
        domain = match["domain"] or DEFAULT_DOMAIN
        return f"onnx2torch has no converter for {match['op']} (domain {domain}, opset {match['version']})."
    if line == type(exc).__name__ or isinstance(exc, KeyError):
        line = f"{type(exc).__name__}: {line}"
    return line[:_MAX_REASON_CHARS]


@dataclass
class _ProbeBuilder:
    """Known types and constants of a model, to rebuild any of its nodes as a model of its own."""

    model: ModelProto
    types: dict[str, TypeProto]
    initializers: dict[str, Any]
    notes: list[str]

    @classmethod
    def of(cls, model: ModelProto) -> _ProbeBuilder:
        import onnx

        notes: list[str] = []
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception as exc:  # shape inference raises several types; the declared types remain
            notes.append(f"Shape inference failed, so probes use the declared types: {_converter_error_text(exc)}")
            inferred = model
        types: dict[str, TypeProto] = {}
        for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
            if value.type.WhichOneof("value") is not None:
                types.setdefault(value.name, value.type)
        initializers = {tensor.name: tensor for tensor in model.graph.initializer}
        return cls(model, types, initializers, notes)

    def one_node_model(self, node: NodeProto) -> ModelProto:
        """`node` alone in a model: its constant inputs as initializers, the others as graph inputs."""
        from onnx import helper

        inputs, initializers, seen = [], [], set()
        for name in node.input:
            if not name or name in seen:
                continue
            seen.add(name)
            if name in self.initializers:
                initializers.append(self._probe_constant(self.initializers[name]))
            elif name in self.types:
                inputs.append(helper.make_value_info(name, self.types[name]))
            else:
                inputs.append(helper.make_empty_tensor_value_info(name))
        return probe_model(self.model, node, inputs, initializers, self.types)

    def _probe_constant(self, tensor: Any) -> Any:
        """The initializer as is when small and embedded, else zeros of its shape (the converter needs values)."""
        import numpy as np
        import onnx
        from onnx import numpy_helper

        embedded = tensor.data_location != onnx.TensorProto.EXTERNAL
        if embedded and tensor.ByteSize() <= _PROBE_CONSTANT_BYTES:
            return tensor
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        size = int(np.prod(tensor.dims)) * dtype.itemsize
        if size > _PROBE_ZEROS_BYTES:
            self.notes.append(
                f"Initializer '{tensor.name}' is too large to copy into a probe; a zero tensor of its shape stands in."
            )
        return numpy_helper.from_array(np.zeros(tuple(tensor.dims), dtype=dtype), tensor.name)


# --- helpers that need the runtime -----------------------------------------------------------


def _runtime() -> tuple[str | None, str]:
    """(version string, "") when PyTorch, CUDA and onnx2torch are usable, else (None, what is missing)."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch (torch) is not installed on this worker."
    if not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} is installed, but it sees no CUDA GPU on this worker."
    try:
        import onnx2torch  # noqa: F401  (imported to prove it works: it needs torchvision too)
    except Exception as exc:  # ImportError, or a torchvision that does not match torch
        return None, f"onnx2torch cannot be imported on this worker ({_converter_error_text(exc)})."
    return f"{torch.__version__} (CUDA {torch.version.cuda}, onnx2torch {_distribution_version('onnx2torch')})", ""


def _not_installed_sentence() -> str:
    missing = _runtime()[1] or "PyTorch with CUDA is not usable on this worker."
    return f"torch_cuda cannot run here: {missing} It needs PyTorch with CUDA, a GPU and onnx2torch."


def _distribution_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _tool_versions() -> dict[str, str]:
    import onnx
    import torch

    return {
        "torch": str(torch.__version__),
        "cuda": str(torch.version.cuda),
        "onnx2torch": _distribution_version("onnx2torch"),
        "onnx": str(onnx.__version__),
    }


def _convert(model: Path | ModelProto) -> Any:
    """The onnx2torch conversion of a model file (external weights included) or of a ModelProto."""
    from onnx2torch import convert

    return convert(str(model) if isinstance(model, Path) else model)


def _describe_transform(precision: str, compiled: bool, mode: str) -> str:
    steps = ["onnx2torch.convert of the original ONNX model", "moved to the CUDA device"]
    if precision == "fp16":
        steps.append("module.half(); float inputs cast to float16, outputs cast back to float32")
    else:
        steps.append("float32 with TF32 off for matmuls and convolutions")
    if compiled:
        steps.append(f"torch.compile(mode={mode!r})")
    return "; ".join(steps)


def _example_inputs(specs: Sequence[TensorSpec], input_shapes: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Seeded example inputs: fixed dims as the model says, dynamic ones from `input_shapes`, else 1."""
    import numpy as np

    rng = np.random.default_rng(0)
    examples = {}
    for spec in specs:
        given = input_shapes.get(spec.name)
        dims: Sequence[Dim] = spec.shape if spec.shape is not None else (given or ())
        shape = []
        for axis, dim in enumerate(dims):
            entry = given[axis] if isinstance(given, list | tuple) and axis < len(given) else None
            if isinstance(entry, list | tuple) and len(entry) == 3:
                entry = entry[1]  # [min, opt, max]: the typical size
            shape.append(dim if isinstance(dim, int) else entry if isinstance(entry, int) else 1)
        dtype = np.dtype(spec.dtype or "float32")
        if dtype.kind == "f":
            examples[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            examples[spec.name] = np.zeros(shape, dtype=dtype)
    return examples


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- reading models -----------------------------------------------------------------------------
