"""MNN: operator support from its converter, converted variants, and sessions.

Alibaba's MNN runs its own model format, so every answer here goes through MNN's ONNX
converter. The converter runs in a child process (`python -c`, calling the converter core
in MNN's `_tools` extension) with a time limit, so a converter crash cannot take the
caller down. The `mnnconvert` console script and its Python wrapper are never used: the
wrapper pip-installs a logging SDK and sends telemetry to a remote host.

`check_support` converts the model once and reads the converter's own report of the
operators it does not support ("These Op Not Support: ONNX::Foo | ONNX::Bar"); every other
operator of the model counts as supported. The converter matches operators by name only
and can accept a model it then computes wrongly (seen with an opset-18 ReduceL2 whose axes
are an input: MNN reduces over every axis), so converter acceptance proves nothing about
outputs: variants must pass a parity check against onnxruntime before anyone uses them.

`build_variants` converts to FP32, FP16 weights (`--fp16`) and 8-bit weights
(`--weightQuantBits 8`), as the profile's precisions ask; the base class's template loads each
one once, and a variant that fails either step is dropped and the reason noted.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.backends._converters import (
    MAX_REASON_CHARS,
    check_inputs,
    converter_env,
    decode_output,
)
from workers.engine.backends._onnx_graph import load_graph, node_labels, nodes_by_op
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
    verdict_for,
)
from workers.engine.backends.published import load_published_list, report_from_published_list

if TYPE_CHECKING:
    import numpy as np

DEFAULT_DOMAIN = "ai.onnx"
# Domains whose operators MNN's converter knows by name; in any other domain a name match
# is a coincidence (MNN ignores the domain).
_STANDARD_DOMAINS = frozenset({DEFAULT_DOMAIN, "ai.onnx.ml"})
DEVICE = "CPU"
BIZ_CODE = "slipway"
DEFAULT_CONVERTER_TIMEOUT_S = 600.0
CONVERTER_STEP = "mnn-convert"  # Variant.pass_name of every variant built here

# (variant name, precision, converter flags)
VARIANT_PLANS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("mnn-fp32", "fp32", ()),
    ("mnn-fp16", "fp16", ("--fp16",)),
    ("mnn-int8-weights", "int8-weights", ("--weightQuantBits", "8")),
)

# The converter core, called the way the MNNConvert binary is (argv[0] is the program name).
_CONVERTER_SCRIPT = "import sys, _tools; _tools.mnnconvert(['MNNConvert', *sys.argv[1:]])"
# The converter child's environment (see `converter_env`) also keeps Python from reading the
# user's site-packages or writing bytecode. The converter core does no networking of its own;
# the dead proxy makes sure nothing in the child reaches a remote host through the usual
# client libraries either.
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "TMPDIR")
_PYTHON_ENV = {"PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}

_UNSUPPORTED_LINE = re.compile(r"These Op Not Support:\s*(.*)")
_SUCCESS_LINE = "Converted Success!"

_SUPPORT_METHOD_NOTE = (
    "Support comes from MNN's converter: an operator counts as supported when the converter accepts "
    "it. That does not prove MNN computes it correctly (the converter has accepted models it then "
    "computes wrongly), so every MNN variant must pass a parity check against onnxruntime before use."
)


@dataclass(frozen=True)
class ConverterRun:
    """What one run of MNN's converter did."""

    returncode: int
    output: str  # stdout and stderr together
    produced: bool  # the converter said it succeeded and the output file exists
    timed_out: bool = False


class MnnSession:
    """An .mnn model loaded with MNN's Module API, run with ONNX input and output names."""

    def __init__(self, model_path: Path, *, threads: int = 1) -> None:
        import MNN

        try:
            self._module: Any = MNN.nn.load_module_from_file(str(model_path), [], [], thread_num=threads)
        except Exception as exc:  # MNN raises SystemError with its own message chained
            raise RuntimeError(
                f"MNN could not load {model_path.name}: {exc.__cause__ or exc}. "
                "Rebuild the variant from the ONNX model."
            ) from None
        info = self._module.get_info()
        # The converter keeps the ONNX graph's input and output names.
        self.input_names = tuple(str(name) for name in info["inputNames"])
        self.output_names = tuple(str(name) for name in info["outputNames"])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on `inputs` (ONNX input name -> array); returns ONNX output name -> array."""
        import MNN.expr as F
        import numpy as np

        if self._module is None:
            raise RuntimeError("This session is closed; load the model again to run it.")
        check_inputs(self.input_names, inputs)
        feeds = []
        for name in self.input_names:
            array, dtype = _mnn_input(np.asarray(inputs[name]), F)
            feeds.append(F.const(array, list(array.shape), F.NCHW, dtype))
        outputs = self._module.onForward(feeds)
        if len(outputs) != len(self.output_names):
            raise RuntimeError(
                f"MNN returned {len(outputs)} output(s) for a model that declares {len(self.output_names)} "
                f"({', '.join(self.output_names)}): its converter dropped some of the graph"
            )
        result = {}
        for name, value in zip(self.output_names, outputs, strict=True):
            if value.data_format == F.NC4HW4:
                value = F.convert(value, F.NCHW)
            result[name] = np.array(value.read(), copy=True).reshape(value.shape)
        return result

    def close(self) -> None:
        """Free the model; `run` fails afterwards."""
        self._module = None


def _mnn_input(array: np.ndarray, F: Any) -> tuple[np.ndarray, Any]:
    """The array in a type MNN takes, with MNN's dtype: MNN runs int64 as int32 and has no float64."""
    import numpy as np

    kind = array.dtype
    if kind == np.float32 or kind.kind == "f":
        return np.ascontiguousarray(array, dtype=np.float32), F.float
    if kind == np.uint8:
        return np.ascontiguousarray(array), F.uint8
    if kind == np.int8:
        # MNN's Python `const` has no int8, and an int8 tensor cast inside MNN crashes its int8
        # kernels (seen with Add and Neg): say so instead of failing with MNN's SystemError.
        raise RuntimeError("MNN's Python API cannot feed int8 inputs; run this model with another backend")
    return np.ascontiguousarray(array, dtype=np.int32), F.int


class MnnBackend(Backend):
    """Alibaba MNN on the CPU, fed through its ONNX converter."""

    name = "mnn"
    thread_argument = "threads"
    serving_requirements = ("numpy", "MNN")
    install_extra = "runtimes-cpu"

    def __init__(self, threads: int = 1, converter_timeout_s: float = DEFAULT_CONVERTER_TIMEOUT_S) -> None:
        self.threads = threads
        self.converter_timeout_s = converter_timeout_s

    def not_installed_text(self) -> str:
        return (
            "MNN is not installed on this worker, so no MNN variants can be built. Install it with "
            "pip install 'slipway[runtimes-cpu]' on the worker or build on a worker that has it."
        )

    def runtime_version(self) -> str | None:
        """MNN's version, or None when MNN or its converter core (`_tools`) cannot be imported."""
        try:
            import _tools  # noqa: F401  (the converter core; only its presence matters here)
            import MNN
        except ImportError:
            return None
        version = MNN.version() if hasattr(MNN, "version") else getattr(MNN, "__version__", "unknown")
        return str(version)

    # --- operator support -----------------------------------------------------------

    def check_support(self, model_path: Path) -> SupportReport:
        """Which operators of the model MNN's converter accepts, from one conversion.

        Without MNN on this worker, the answer comes from MNN's published operator list.
        Raises ModelError "invalid_model" when the file cannot be parsed as ONNX.
        """
        version = self.runtime_version()
        if version is None:
            oplist = load_published_list(self.name)
            if oplist is None:
                return self.not_installed_report()
            return report_from_published_list(self.name, model_path, oplist)

        model = load_graph(model_path)
        nodes = nodes_by_op(model)
        with tempfile.TemporaryDirectory(prefix="slipway-mnn-") as scratch:
            run = self._convert(model_path, Path(scratch) / "probe.mnn", (), Path(scratch))
        refused = _unsupported_op_types(run.output)
        notes = [_SUPPORT_METHOD_NOTE]

        if not run.produced and not refused:
            return self.installed_report(
                version, "converter", "error", notes=notes, error=_failure_text(run, self.converter_timeout_s)
            )

        ops = []
        for (domain, op_type), names in nodes.items():
            status: SupportStatus = "unsupported" if op_type in refused else "supported"
            if status == "unsupported":
                reason = f"MNN's converter (MNN {version}) reports that it does not support {op_type}."
            elif domain not in _STANDARD_DOMAINS:
                reason = (
                    f"MNN matches operators by name and ignores the domain, so this {domain} operator "
                    f"runs as MNN's own {op_type}; only a parity check shows whether that is right."
                )
            else:
                reason = ""
            ops.append(
                OpSupport(
                    op_type=op_type,
                    domain=domain,
                    status=status,
                    reason=reason,
                    nodes=tuple(names),
                    device=DEVICE if status == "supported" else "",
                )
            )
        unknown = sorted(refused - {op_type for _, op_type in nodes})
        if unknown:
            notes.append(
                "The converter also named operators that are not nodes of the model itself (from "
                f"functions it expanded): {', '.join(unknown)}."
            )
        supported = sum(1 for op in ops if op.status == "supported")
        verdict = verdict_for(supported, len(ops))
        if verdict == "full" and not run.produced:
            # Only operators inside expanded functions were refused: no node of the model to blame.
            error = f"MNN's converter does not support {', '.join(unknown)}, used inside the model's functions."
            return self.installed_report(version, "converter", "error", notes=notes, error=error)
        partitions: tuple[Partition, ...] = ()
        if verdict == "full":
            top = tuple(node_labels(model.graph))
            partitions = (Partition(DEVICE, len(top), top),)
        return self.installed_report(version, "converter", verdict, ops=tuple(ops), partitions=partitions, notes=notes)

    # --- variants ---------------------------------------------------------------------

    def build(
        self,
        model_path: Path,
        profile: HardwareProfile,
        calibration: Calibration | None,
        out_dir: Path,
        notes: list[str],
    ) -> list[Variant]:
        """Convert the model to the MNN variants the profile's precisions ask for.

        "fp32" gives mnn-fp32, "fp16" gives mnn-fp16 (weights stored as float16) and
        "int8-weights" gives mnn-int8-weights (weights stored as 8-bit integers, computed in
        float). MNN needs no calibration for these, so `calibration` is not used. Raises
        ModelError "invalid_model" for a file that is not ONNX.
        """
        import onnx

        load_graph(model_path)  # a file that is not ONNX is the user's to fix, before anything runs
        versions = {"mnn": str(self.runtime_version()), "onnx": str(onnx.__version__)}
        variants = []
        for name, precision, flags in VARIANT_PLANS:
            if precision not in profile.precisions:
                continue
            target = out_dir / f"{name}.mnn"
            with tempfile.TemporaryDirectory(prefix=".mnn-build-", dir=out_dir) as scratch:
                run = self._convert(model_path, target, flags, Path(scratch))
            if not run.produced:
                target.unlink(missing_ok=True)
                refused = _unsupported_op_types(run.output)
                why = (
                    f"MNN does not support {', '.join(sorted(refused))}"
                    if refused
                    else _failure_text(run, self.converter_timeout_s)
                )
                notes.append(f"{name} was not built: {why}")
                continue
            variants.append(
                Variant(
                    name=name,
                    backend=self.name,
                    path=target,
                    format="mnn",
                    precision=precision,
                    pass_name=CONVERTER_STEP,
                    options={"converter_flags": list(flags), "biz_code": BIZ_CODE},
                    tool_versions=dict(versions),
                    files=(target,),
                )
            )
        return variants

    # --- running ----------------------------------------------------------------------

    def load(self, variant_path: Path) -> MnnSession:
        """Load an .mnn variant for inference on the CPU."""
        if self.runtime_version() is None:
            raise BackendNotInstalled(
                "MNN is not installed on this worker, so MNN variants cannot run here. "
                "Install the MNN package on the worker or run the variant where MNN is installed."
            )
        return MnnSession(variant_path, threads=self.threads)

    # --- the converter ------------------------------------------------------------------

    def _convert(self, model_path: Path, target: Path, flags: tuple[str, ...], workdir: Path) -> ConverterRun:
        """Run MNN's converter on the model in a child process with a time limit."""
        argv = [
            "-f",
            "ONNX",
            "--modelFile",
            str(model_path.resolve()),
            "--MNNModel",
            str(target.resolve()),
            "--bizCode",
            BIZ_CODE,
            *flags,
        ]
        try:
            completed = subprocess.run(
                [sys.executable, "-c", _CONVERTER_SCRIPT, *argv],
                cwd=str(workdir),
                env=converter_env(workdir, _INHERITED_ENV, **_PYTHON_ENV),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self.converter_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return ConverterRun(returncode=-1, output=decode_output(exc.stdout), produced=False, timed_out=True)
        output = decode_output(completed.stdout)
        produced = _SUCCESS_LINE in output and target.exists() and target.stat().st_size > 0
        return ConverterRun(returncode=completed.returncode, output=output, produced=produced)


# --- helpers ------------------------------------------------------------------------------


def _unsupported_op_types(output: str) -> set[str]:
    """Op types from the converter's "These Op Not Support: ONNX::Foo | ONNX::Bar" lines."""
    found: set[str] = set()
    for match in _UNSUPPORTED_LINE.finditer(output):
        for item in match.group(1).split("|"):
            op_type = item.strip().rpartition("::")[2].strip()
            if op_type:
                found.add(op_type)
    return found


def _failure_text(run: ConverterRun, timeout_s: float) -> str:
    if run.timed_out:
        return f"MNN's converter did not finish within {timeout_s:.0f} s and was stopped."
    if run.returncode < 0:
        return f"MNN's converter crashed (signal {-run.returncode})."
    lines = [line.strip() for line in run.output.splitlines() if line.strip()]
    # The converter's own error lines, without its banner and timestamps.
    useful = [
        re.sub(r"^\[[\d:]+\]\s*:?\d*:?\s*", "", line)
        for line in lines
        if "device supports" not in line and not line.startswith(("Start to", "inputTensors", "outputTensors"))
    ]
    detail = "; ".join(useful[-3:]) if useful else f"exit code {run.returncode}"
    return f"MNN's converter did not produce a model: {detail}"[:MAX_REASON_CHARS]
