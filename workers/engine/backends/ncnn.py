"""ncnn: operator support from the pnnx converter, converted variants, and sessions.
It is over 600 lines because a runtime backend is one module by the plug-in contract
(docs/adr/0012: adding a runtime is one file plus its test; the registry discovers the modules
in the package), and this one holds all of ncnn's: running the pnnx converter as a child
process, reading what its output says about operators, checking layers against ncnn's registry,
and the blob-name bindings its sessions need.

Tencent's ncnn runs its own model format (a `.param` graph and a `.bin` of weights); ONNX
models get there through pnnx, the converter the ncnn project ships (the `ncnn` wheel has
no onnx2ncnn). pnnx is a native program in the `pnnx` wheel; it runs as a child process
with a time limit, so its crashes (it segfaults on operators it does not know) cannot take
the caller down. The `pnnx` Python package is never imported: it imports torch.

pnnx needs concrete input shapes. They come from the model, with symbolic dimensions set
to 1, unless the backend or the profile (`profile.options["input_shapes"]`, input name ->
list of ints) gives them.

`check_support` converts the model once and reads what pnnx says about operators it
cannot handle: "todo Foo" (no conversion; the op is passed through as a layer ncnn does
not have), "unexpected op_type Foo" and onnxruntime's "... is not a registered
function/op" (an operator pnnx does not know at all). The converted graph's layer types are
then checked against ncnn's layer registry. pnnx can report success and still produce a
model that computes something else (seen with an opset-18 ReduceL2 whose axes are an
input), so converter acceptance proves nothing about outputs: variants must pass a parity
check against onnxruntime before anyone uses them.

`build_variants` converts to ncnn-fp32 (float32 weights, fp16 storage and arithmetic off at
load time) and ncnn-fp16 (float16 weights, ncnn's fp16 storage and arithmetic on where the
CPU has them), as the profile's precisions ask, and loads each once. ncnn's blob names
(in0, out0, ...) are mapped to the ONNX names at build time and written next to the
variant in "<name>.ncnn.io.json", which `load` reads.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.backends._converters import (
    MAX_REASON_CHARS,
    check_inputs,
    converter_env,
    decode_output,
)
from workers.engine.backends._onnx_graph import concrete_inputs, load_graph, node_labels, nodes_by_op, walk_graphs
from workers.engine.backends.base import (
    Backend,
    BackendNotInstalled,
    Calibration,
    HardwareProfile,
    OpSupport,
    Partition,
    SupportReport,
    Variant,
    verdict_for,
)
from workers.engine.backends.published import load_published_list, report_from_published_list
from workers.engine.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    from onnx import ModelProto

DEFAULT_DOMAIN = "ai.onnx"
DEVICE = "CPU"
DEFAULT_CONVERTER_TIMEOUT_S = 600.0
CONVERTER_STEP = "pnnx-convert"  # Variant.pass_name of every variant built here
# pyncnn's and pnnx's marker for "this blob has no batch axis".
NO_BATCH = 233
IO_FORMAT = "slipway-ncnn-io"

# (variant name, precision, fp16 weights)
VARIANT_PLANS: tuple[tuple[str, str, bool], ...] = (
    ("ncnn-fp32", "fp32", False),
    ("ncnn-fp16", "fp16", True),
)

# ONNX element type -> pnnx's inputshape type suffix (pnnx reads ONNX input types itself;
# the suffix only has to be one it accepts).
_PNNX_TYPES = {1: "f32", 2: "u8", 3: "i8", 5: "i16", 6: "i32", 7: "i64", 9: "bool", 10: "f16", 11: "f64"}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What pnnx's environment keeps of this process's (see `converter_env`).
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR")
_TODO = re.compile(r"\btodo (\S+)")
_UNEXPECTED = re.compile(r"\bunexpected op_type (\S+)")
_NOT_REGISTERED = re.compile(r"(?:([\w.]+):)?(\w+)\(-?\d+\) is not a registered function/op")
_NO_OP_REGISTERED = re.compile(r"No Op registered for (\w+) with domain_version")
_IGNORED_PARAM = re.compile(r"\bignore (\S+) (\S+) param ([^=\s]+)=")
_PY_INPUT = re.compile(r'ex\.input\("(\w+)", ncnn\.Mat\(\w+\.numpy\(\), batch_index=(\d+)\)')
_PY_OUTPUT = re.compile(r'_, (\w+) = ex\.extract\("(\w+)"\)\s*\n\s*out\.append\(.*?\1\.numpy\(batch_index=(\d+)\)')
_BLOB_INDEX = re.compile(r"^(?:in|out)(\d+)$")
_MAX_LISTED = 10


@dataclass(frozen=True)
class InputShape:
    """One model input as pnnx converts it."""

    name: str
    shape: tuple[int, ...]
    elem_type: int

    def pnnx_arg(self) -> str:
        """The input as pnnx's inputshape argument takes it, e.g. "[1,3,224,224]f32"."""
        return f"[{','.join(str(dim) for dim in self.shape)}]{_PNNX_TYPES.get(self.elem_type, 'f32')}"


@dataclass(frozen=True)
class PnnxRun:
    """What one run of pnnx did, and where its ncnn files are."""

    returncode: int
    output: str
    param: Path
    bin: Path
    script: Path  # the pyncnn script pnnx writes; it names blobs and batch axes
    produced: bool  # pnnx exited cleanly and wrote the ncnn files
    timed_out: bool = False


@dataclass(frozen=True)
class Findings:
    """What a pnnx run says about the model's operators."""

    refused: dict[tuple[str, str], str]  # (domain, op_type) -> reason
    foreign_layers: tuple[str, ...]  # layer types ncnn lacks that are no op type of the model
    ignored_params: tuple[str, ...]  # "layer (param, ...)" pnnx could not carry into ncnn


@dataclass(frozen=True)
class BlobBinding:
    """An ONNX input or output and the ncnn blob that carries it."""

    name: str
    blob: str
    batch_index: int


class NcnnSession:
    """An ncnn model (.param + .bin) run with ONNX input and output names.

    ncnn runs one sample at a time: inputs with a batch axis larger than 1 are split into
    samples, and outputs stacked back along their batch axis.
    """

    def __init__(self, param_path: Path, *, threads: int | None = None) -> None:
        import ncnn

        io_path = param_path.with_suffix(".io.json")
        bin_path = param_path.with_suffix(".bin")
        if not io_path.exists():
            raise FileNotFoundError(
                f"{io_path.name} is missing next to {param_path.name}, so the model's input and output "
                "names are unknown. Build the ncnn variant with Slipway again."
            )
        io = json.loads(io_path.read_text())
        self._inputs = tuple(BlobBinding(item["name"], item["blob"], int(item["batch_index"])) for item in io["inputs"])
        self._outputs = tuple(
            BlobBinding(item["name"], item["blob"], int(item["batch_index"])) for item in io["outputs"]
        )
        self.input_names = tuple(binding.name for binding in self._inputs)
        self.output_names = tuple(binding.name for binding in self._outputs)
        self.precision = str(io.get("precision", "fp32"))

        net = ncnn.Net()
        if self.precision != "fp16":
            # ncnn turns on fp16/bf16 storage and arithmetic by default where the CPU has them.
            net.opt.use_fp16_packed = False
            net.opt.use_fp16_storage = False
            net.opt.use_fp16_arithmetic = False
            net.opt.use_bf16_storage = False
        if threads:
            net.opt.num_threads = threads
        if net.load_param(str(param_path)) != 0:
            raise RuntimeError(
                f"ncnn could not load {param_path.name}: it holds a layer ncnn does not have or is damaged. "
                "Rebuild the variant from the ONNX model."
            )
        if net.load_model(str(bin_path)) != 0:
            raise RuntimeError(
                f"ncnn could not load the weights {bin_path.name}: the file is missing or does not match "
                f"{param_path.name}. Rebuild the variant from the ONNX model."
            )
        self._net: Any = net

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on `inputs` (ONNX input name -> array); returns ONNX output name -> array."""
        import numpy as np

        if self._net is None:
            raise RuntimeError("This session is closed; load the model again to run it.")
        check_inputs(self.input_names, inputs)
        arrays = {binding.name: _ncnn_input(np.asarray(inputs[binding.name])) for binding in self._inputs}
        sizes = {
            arrays[binding.name].shape[binding.batch_index]
            for binding in self._inputs
            if binding.batch_index != NO_BATCH and arrays[binding.name].ndim > binding.batch_index
        }
        if len(sizes) > 1:
            raise ValueError(f"The inputs have different batch sizes ({sorted(sizes)}); give them all the same.")
        samples = sizes.pop() if sizes else 1
        if samples == 1:
            return self._run_one(arrays)
        if any(binding.batch_index == NO_BATCH for binding in self._outputs):
            raise ValueError(
                f"This ncnn model runs one sample at a time and has outputs without a batch axis, so a batch "
                f"of {samples} cannot be split; run the samples one by one."
            )
        parts = []
        for index in range(samples):
            sample = {
                binding.name: arrays[binding.name]
                if binding.batch_index == NO_BATCH
                else np.take(arrays[binding.name], [index], axis=binding.batch_index)
                for binding in self._inputs
            }
            parts.append(self._run_one(sample))
        return {
            binding.name: np.concatenate([part[binding.name] for part in parts], axis=binding.batch_index)
            for binding in self._outputs
        }

    def _run_one(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ncnn
        import numpy as np

        result = {}
        with self._net.create_extractor() as extractor:
            for binding in self._inputs:
                extractor.input(binding.blob, ncnn.Mat(arrays[binding.name], batch_index=binding.batch_index).clone())
            for binding in self._outputs:
                code, mat = extractor.extract(binding.blob)
                if code != 0:
                    raise RuntimeError(
                        f"ncnn failed to compute output '{binding.name}' (blob {binding.blob}, code {code})."
                    )
                result[binding.name] = np.array(mat.numpy(batch_index=binding.batch_index), copy=True)
        return result

    def close(self) -> None:
        """Free the model; `run` fails afterwards."""
        if self._net is not None:
            self._net.clear()
        self._net = None


def _ncnn_input(array: np.ndarray) -> np.ndarray:
    """The array in a type ncnn takes: it has no float64 or int64 (pnnx turns int64 inputs into int32)."""
    import numpy as np

    if array.dtype.kind == "f":
        return np.ascontiguousarray(array, dtype=np.float32)
    if array.dtype in (np.int64, np.uint64, np.bool_):
        return np.ascontiguousarray(array, dtype=np.int32)
    return np.ascontiguousarray(array)


class NcnnBackend(Backend):
    """Tencent ncnn on the CPU, fed through the pnnx converter."""

    name = "ncnn"
    thread_argument = "threads"
    serving_requirements = ("numpy", "ncnn")
    # pnnx comes apart from the extra, with --no-deps (see Makefile and worker-cpu.Dockerfile).
    install_extra = "runtimes-cpu"

    def __init__(
        self,
        threads: int | None = None,
        converter_timeout_s: float = DEFAULT_CONVERTER_TIMEOUT_S,
        input_shapes: Mapping[str, list[int]] | None = None,
        pnnx_path: Path | None = None,
    ) -> None:
        self.threads = threads
        self.converter_timeout_s = converter_timeout_s
        self.input_shapes = dict(input_shapes or {})
        self.pnnx_path = pnnx_path

    def not_installed_text(self) -> str:
        return (
            "ncnn and its converter pnnx are not both installed on this worker, so no ncnn variants can be "
            "built. Install the ncnn and pnnx packages on the worker (pip install 'slipway[runtimes-cpu]', "
            "then pip install --no-deps pnnx) or build on a worker that has them."
        )

    def runtime_version(self) -> str | None:
        """ncnn's version, or None when ncnn or the pnnx converter is missing (both are needed)."""
        if self._pnnx() is None:
            return None
        return _ncnn_version()

    def runs_here(self) -> bool:
        """ncnn alone runs its variants; pnnx is only needed to build them (and to check support)."""
        return _ncnn_version() is not None

    def _pnnx(self) -> Path | None:
        """The pnnx program: the one given, or the native binary inside the `pnnx` wheel."""
        if self.pnnx_path is not None:
            return self.pnnx_path if self.pnnx_path.is_file() else None
        try:
            spec = importlib.util.find_spec("pnnx")
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        binary = Path(next(iter(spec.submodule_search_locations))) / "pnnx"
        return binary if binary.is_file() and os.access(binary, os.X_OK) else None

    def _tool_versions(self) -> dict[str, str]:
        import onnx

        versions = {"ncnn": _ncnn_version() or "unknown", "onnx": str(onnx.__version__)}
        try:
            versions["pnnx"] = importlib.metadata.version("pnnx")
        except importlib.metadata.PackageNotFoundError:
            versions["pnnx"] = "unknown"
        return versions

    # --- operator support -----------------------------------------------------------

    def check_support(self, model_path: Path) -> SupportReport:
        """Which operators of the model pnnx converts into layers ncnn has, from one conversion.

        Without ncnn and pnnx on this worker, the answer comes from a published operator
        list when Slipway ships one. Raises ModelError "invalid_model" when the file cannot
        be parsed as ONNX.
        """
        version = self.runtime_version()
        if version is None:
            oplist = load_published_list(self.name)
            if oplist is None:
                return self.not_installed_report()
            return report_from_published_list(self.name, model_path, oplist)

        model = load_graph(model_path)
        nodes = nodes_by_op(model)
        pnnx_version = self._tool_versions()["pnnx"]
        notes = [
            f"Support comes from converting the model with pnnx {pnnx_version}: an operator counts as supported "
            "when pnnx turns it into layers ncnn has. That does not prove ncnn computes it correctly (pnnx has "
            "converted models that then compute something else), so every ncnn variant must pass a parity "
            "check against onnxruntime before use."
        ]
        try:
            shapes = _input_shapes(model, self.input_shapes)
        except ModelError as exc:
            return self.installed_report(version, "converter", "error", notes=notes, error=exc.message)
        notes.append(_shapes_note(shapes))

        with tempfile.TemporaryDirectory(prefix="slipway-ncnn-") as scratch:
            run = self._run_pnnx(model_path, Path(scratch), shapes, fp16=False)
            findings = _findings(run, nodes)

        if findings.ignored_params:
            notes.append(_ignored_note(findings.ignored_params))
        complete = run.produced and not findings.foreign_layers
        problem = ""
        if not complete:
            problem = _incomplete_text(run, findings, self.converter_timeout_s)
            if findings.refused:
                problem += " The model's other operators were not converted, so they are not listed."
        if not findings.refused and not complete:
            return self.installed_report(version, "converter", "error", notes=notes, error=problem)

        ops = []
        for (domain, op_type), names in nodes.items():
            reason = findings.refused.get((domain, op_type))
            if reason is not None:
                ops.append(OpSupport(op_type, domain, "unsupported", reason, tuple(names)))
            elif complete:
                ops.append(OpSupport(op_type, domain, "supported", "", tuple(names), DEVICE))
            # Otherwise pnnx stopped before this op: it stays out of the report, and `error`
            # says why, rather than claiming support nobody checked.
        verdict = verdict_for(len(nodes) - len(findings.refused), len(nodes))
        partitions: tuple[Partition, ...] = ()
        if verdict == "full":
            top = tuple(node_labels(model.graph))
            partitions = (Partition(DEVICE, len(top), top),)
        return self.installed_report(
            version, "converter", verdict, ops=tuple(ops), partitions=partitions, notes=notes, error=problem
        )

    # --- variants ---------------------------------------------------------------------

    def build(
        self,
        model_path: Path,
        profile: HardwareProfile,
        calibration: Calibration | None,
        out_dir: Path,
        notes: list[str],
    ) -> list[Variant]:
        """Convert the model to the ncnn variants the profile's precisions ask for.

        "fp32" gives ncnn-fp32, "fp16" gives ncnn-fp16. Each variant is "<name>.ncnn.param"
        (its path), "<name>.ncnn.bin" and "<name>.ncnn.io.json". `calibration` is not used.
        Raises ModelError "invalid_model" for a file that is not ONNX and ModelError
        "input_shape_unknown" / "invalid_input_shapes" when pnnx cannot be given concrete input
        shapes.
        """
        model = load_graph(model_path)
        shapes = _input_shapes(model, profile.options.get("input_shapes") or self.input_shapes)
        onnx_inputs = [shape.name for shape in shapes]
        onnx_outputs = [value.name for value in model.graph.output]
        versions = self._tool_versions()
        variants = []
        for name, precision, fp16 in VARIANT_PLANS:
            if precision not in profile.precisions:
                continue
            param = out_dir / f"{name}.ncnn.param"
            weights = out_dir / f"{name}.ncnn.bin"
            io_path = out_dir / f"{name}.ncnn.io.json"
            with tempfile.TemporaryDirectory(prefix=".ncnn-build-", dir=out_dir) as scratch:
                run = self._run_pnnx(model_path, Path(scratch), shapes, fp16=fp16)
                findings = _findings(run, nodes_by_op(model))
                if not run.produced or findings.refused or findings.foreign_layers:
                    notes.append(f"{name} was not built: {_incomplete_text(run, findings, self.converter_timeout_s)}")
                    continue
                try:
                    inputs, outputs = _bindings(run.script.read_text(), onnx_inputs, onnx_outputs)
                except ValueError as exc:
                    notes.append(f"{name} was not built: {exc}")
                    continue
                shutil.move(str(run.param), param)
                shutil.move(str(run.bin), weights)
            io = {
                "format": IO_FORMAT,
                "version": 1,
                "precision": precision,
                "inputs": [
                    {**_binding_dict(binding), "shape": list(shape.shape)}
                    for binding, shape in zip(inputs, shapes, strict=True)
                ],
                "outputs": [_binding_dict(binding) for binding in outputs],
            }
            io_path.write_text(json.dumps(io, indent=2))
            variants.append(
                Variant(
                    name=name,
                    backend=self.name,
                    path=param,
                    format="ncnn",
                    precision=precision,
                    pass_name=CONVERTER_STEP,
                    options={
                        "fp16_weights": fp16,
                        "fp16_storage_and_arithmetic": fp16,
                        "input_shapes": {shape.name: list(shape.shape) for shape in shapes},
                        "inputs": {binding.name: _binding_dict(binding) for binding in inputs},
                        "outputs": {binding.name: _binding_dict(binding) for binding in outputs},
                        "io_file": io_path.name,
                        **({"ignored_params": list(findings.ignored_params)} if findings.ignored_params else {}),
                    },
                    tool_versions=dict(versions),
                    files=(param, weights, io_path),
                )
            )
        return variants

    # --- running ----------------------------------------------------------------------

    def load(self, variant_path: Path) -> NcnnSession:
        """Load an ncnn variant (its .param file; the .bin and .io.json sit beside it)."""
        if _ncnn_version() is None:
            raise BackendNotInstalled(
                "ncnn is not installed on this worker, so ncnn variants cannot run here. "
                "Install the ncnn package on the worker or run the variant where ncnn is installed."
            )
        return NcnnSession(variant_path, threads=self.threads)

    # --- the converter ------------------------------------------------------------------

    def _run_pnnx(self, model_path: Path, workdir: Path, shapes: list[InputShape], fp16: bool) -> PnnxRun:
        """Convert with pnnx in `workdir`, where the model is placed (pnnx writes files beside its input)."""
        pnnx = self._pnnx()
        if pnnx is None:
            raise BackendNotInstalled("pnnx is not installed on this worker.")
        _place_model(model_path, workdir, shapes)
        files = {
            "pnnxparam": "model.pnnx.param",
            "pnnxbin": "model.pnnx.bin",
            "pnnxpy": "model_pnnx.py",
            "pnnxonnx": "model.pnnx.onnx",
            "ncnnparam": "model.ncnn.param",
            "ncnnbin": "model.ncnn.bin",
            "ncnnpy": "model_ncnn.py",
        }
        argv = [
            str(pnnx),
            "model.onnx",
            "inputshape=" + ",".join(shape.pnnx_arg() for shape in shapes),
            f"fp16={int(fp16)}",
            "device=cpu",
            *(f"{key}={value}" for key, value in files.items()),
        ]
        param, weights, script = (workdir / files[key] for key in ("ncnnparam", "ncnnbin", "ncnnpy"))
        try:
            completed = subprocess.run(
                argv,
                cwd=str(workdir),
                env=converter_env(workdir, _INHERITED_ENV),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self.converter_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return PnnxRun(-1, _decode(exc.stdout), param, weights, script, produced=False, timed_out=True)
        produced = completed.returncode == 0 and param.exists() and weights.exists() and script.exists()
        return PnnxRun(completed.returncode, _decode(completed.stdout), param, weights, script, produced)


# --- reading pnnx's output ------------------------------------------------------------------


def _findings(run: PnnxRun, nodes: Mapping[tuple[str, str], list[str]]) -> Findings:
    """Operators pnnx refused, ncnn layers that do not exist, and parameters pnnx dropped."""
    import ncnn

    by_type: dict[str, list[tuple[str, str]]] = {}
    for key in nodes:
        by_type.setdefault(key[1], []).append(key)
    refused: dict[tuple[str, str], str] = {}

    def refuse(op_type: str, reason: str, domain: str | None = None) -> None:
        for key in by_type.get(op_type, []):
            if domain is None or key[0] == (domain or DEFAULT_DOMAIN):
                refused.setdefault(key, reason)

    for op_type in _TODO.findall(run.output):
        refuse(op_type, f"pnnx has no conversion of {op_type} to ncnn (it printed 'todo {op_type}').")
    for op_type in _UNEXPECTED.findall(run.output):
        refuse(op_type, f"pnnx does not know {op_type} (it printed 'unexpected op_type {op_type}') and stops there.")
    for domain, op_type in _NOT_REGISTERED.findall(run.output):
        refuse(op_type, f"pnnx does not know {op_type}: it is not an operator of the ONNX standard.", domain or None)
    for op_type in _NO_OP_REGISTERED.findall(run.output):
        refuse(op_type, f"pnnx does not know {op_type} at this model's opset.")

    foreign: list[str] = []
    if run.param.exists():
        for layer_type in _layer_types(run.param.read_text(errors="replace")):
            if ncnn.create_layer(layer_type) is not None:
                continue
            if layer_type in by_type:
                refuse(layer_type, f"pnnx passed {layer_type} through as a layer that ncnn does not have.")
            elif layer_type not in foreign:
                foreign.append(layer_type)

    ignored: dict[str, list[str]] = {}
    for _, layer, param in _IGNORED_PARAM.findall(run.output):
        ignored.setdefault(layer, []).append(param)
    return Findings(
        refused=refused,
        foreign_layers=tuple(foreign),
        ignored_params=tuple(f"{layer} ({', '.join(params)})" for layer, params in ignored.items()),
    )


def _layer_types(param_text: str) -> Iterator[str]:
    """Layer types of an ncnn .param file (magic line, counts line, then one layer a line)."""
    for line in param_text.splitlines()[2:]:
        fields = line.split()
        if fields:
            yield fields[0]


def _incomplete_text(run: PnnxRun, findings: Findings, timeout_s: float) -> str:
    """Why the conversion gave no usable ncnn model, as a sentence."""
    if run.timed_out:
        return f"pnnx did not finish within {timeout_s:.0f} s and was stopped."
    parts = []
    if findings.refused:
        names = sorted({op_type for _, op_type in findings.refused})
        parts.append(f"pnnx cannot convert {', '.join(names)} for ncnn")
    if run.returncode < 0:
        parts.append(f"pnnx crashed (signal {-run.returncode}) before finishing the conversion")
    elif run.returncode > 0:
        parts.append(f"pnnx failed with exit code {run.returncode}: {_last_lines(run.output)}")
    elif not run.produced:
        parts.append("pnnx wrote no ncnn model")
    if findings.foreign_layers:
        parts.append(
            "the converted model holds layers ncnn does not have ("
            + ", ".join(findings.foreign_layers[:_MAX_LISTED])
            + "), and pnnx does not say which ONNX operators they came from"
        )
    text = "; ".join(parts) or "pnnx did not produce a usable ncnn model"
    if not text.startswith("pnnx"):  # pnnx's name is lower case; any other sentence starts upper case
        text = text[0].upper() + text[1:]
    return text[:MAX_REASON_CHARS] + "."


def _ignored_note(ignored: tuple[str, ...]) -> str:
    listed = "; ".join(ignored[:_MAX_LISTED]) + ("; ..." if len(ignored) > _MAX_LISTED else "")
    return (
        "pnnx could not carry these parameters into ncnn layers, so those layers may compute something "
        f"other than the ONNX model: {listed}."
    )


def _bindings(
    script: str, onnx_inputs: list[str], onnx_outputs: list[str]
) -> tuple[list[BlobBinding], list[BlobBinding]]:
    """ONNX name <-> ncnn blob, from the pyncnn script pnnx writes (in0 is the first ONNX input, ...)."""

    def bind(found: list[tuple[str, int]], names: list[str], what: str) -> list[BlobBinding]:
        bindings = []
        for blob, batch_index in found:
            match = _BLOB_INDEX.match(blob)
            if match is None or int(match.group(1)) >= len(names):
                raise ValueError(f"pnnx named an {what} blob '{blob}' that matches no ONNX {what}.")
            bindings.append(BlobBinding(names[int(match.group(1))], blob, batch_index))
        if sorted(binding.name for binding in bindings) != sorted(names):
            raise ValueError(
                f"pnnx kept {len(bindings)} of the model's {len(names)} {what}s (an unused {what} is dropped), "
                f"so ncnn's {what}s cannot be matched to the ONNX names."
            )
        return sorted(bindings, key=lambda binding: names.index(binding.name))

    inputs = [(blob, int(index)) for blob, index in _PY_INPUT.findall(script)]
    outputs = [(blob, int(index)) for _, blob, index in _PY_OUTPUT.findall(script)]
    return bind(inputs, onnx_inputs, "input"), bind(outputs, onnx_outputs, "output")


def _binding_dict(binding: BlobBinding) -> dict[str, Any]:
    return {"name": binding.name, "blob": binding.blob, "batch_index": binding.batch_index}


# --- helpers ------------------------------------------------------------------------------


def _ncnn_version() -> str | None:
    try:
        import ncnn
    except ImportError:
        return None
    return str(getattr(ncnn, "__version__", "unknown"))


def _input_shapes(model: ModelProto, overrides: Mapping[str, Any]) -> list[InputShape]:
    """Concrete shapes for the model's inputs: overrides first, else declared dims with symbols as 1."""
    return [InputShape(name, dims, elem_type) for name, dims, elem_type in concrete_inputs(model, overrides, "ncnn")]


def _shapes_note(shapes: list[InputShape]) -> str:
    listed = ", ".join(f"{shape.name} {list(shape.shape)}" for shape in shapes)
    return f"pnnx converted the model for the input shapes {listed} (symbolic dimensions set to 1)."


def _place_model(model_path: Path, workdir: Path, shapes: list[InputShape]) -> None:
    """Put the model in workdir as model.onnx, with links to any external weight files it names.

    pnnx checks the shapes it is given against the model's declared input shapes, so a
    model whose inputs lack a declared shape (or declare another one) is written out with
    the shapes given; otherwise model.onnx is a link to the original.
    """
    import onnx

    source = model_path.resolve()
    model = onnx.load(str(source), load_external_data=False)
    if _declares(model, shapes):
        (workdir / "model.onnx").symlink_to(source)
    else:
        by_name = {shape.name: shape for shape in shapes}
        for value in model.graph.input:
            if value.name in by_name:
                dims = value.type.tensor_type.shape.dim
                del dims[:]
                for size in by_name[value.name].shape:
                    dims.add().dim_value = size
        onnx.save_model(model, str(workdir / "model.onnx"))
    for graph in walk_graphs(model.graph):
        for tensor in graph.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
            relative = Path(location)
            if not location or relative.is_absolute() or ".." in relative.parts:
                continue  # not a file beside the model; pnnx will report it missing
            link = workdir / relative
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(source.parent / relative)


def _declares(model: ModelProto, shapes: list[InputShape]) -> bool:
    """Whether every input's declared shape agrees with the shape pnnx will be given."""
    declared = {value.name: value for value in model.graph.input}
    for shape in shapes:
        tensor_type = declared[shape.name].type.tensor_type
        if not tensor_type.HasField("shape") or len(tensor_type.shape.dim) != len(shape.shape):
            return False
        if any(0 < dim.dim_value != size for dim, size in zip(tensor_type.shape.dim, shape.shape, strict=True)):
            return False
    return True


def _decode(data: bytes | str | None) -> str:
    return _ANSI.sub("", decode_output(data))


def _last_lines(output: str, count: int = 3) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return "; ".join(lines[-count:])
