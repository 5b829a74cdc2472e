"""The contract every runtime backend implements, and the data it returns.

A backend answers, for one runtime on this worker: is it installed (and which version),
which operators of a model it supports on which device (`check_support`), which optimized
variants it can build for a hardware profile (`build_variants`), and how to run one
(`load` -> `Session.run`). Heavy runtime libraries are imported inside methods, so listing
backends never imports them, and a runtime that is missing is reported, not raised.

Backends build their reports from the same pieces: `ops_by_outcome` groups nodes into
OpSupport entries, `device_runs` makes partitions, `verdict_for` names the verdict, and
`Backend.installed_report` / `Backend.report_from_statuses` put a report together.
"""

from __future__ import annotations

import logging
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, overload

if TYPE_CHECKING:
    # Only the Session protocol's annotations name numpy; importing the contract must not load it.
    import numpy as np

SupportStatus = Literal["supported", "unsupported", "fallback"]
Verdict = Literal["full", "partial", "none", "not_installed", "error"]
SupportMethod = Literal["runtime", "probe", "converter", "published_list"]


@dataclass(frozen=True)
class HardwareProfile:
    """Where variants will run: e.g. `x86-cpu` (cpu), `nvidia-gpu` (gpu), `arm-cpu-mnn`."""

    name: str
    device_kind: Literal["cpu", "gpu"]
    backends: tuple[str, ...]
    precisions: tuple[str, ...] = ("fp32",)
    queue: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OpSupport:
    """One operator type of the model on one backend, with the nodes it covers."""

    op_type: str
    domain: str
    status: SupportStatus
    reason: str = ""
    nodes: tuple[str, ...] = ()
    device: str = ""  # where it runs when supported, e.g. "CPUExecutionProvider", "CPU"


@dataclass(frozen=True)
class Partition:
    """A contiguous piece of the graph the runtime assigns to one device or provider."""

    device: str
    node_count: int
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SupportReport:
    """A backend's answer to "can you run this model, op by op?"."""

    backend: str
    runtime_version: str | None
    installed: bool
    method: SupportMethod
    verdict: Verdict
    ops: tuple[OpSupport, ...] = ()
    partitions: tuple[Partition, ...] = ()
    notes: tuple[str, ...] = ()
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ops_by_outcome(nodes: Iterable[tuple[str, str, str, SupportStatus, str, str]]) -> tuple[OpSupport, ...]:
    """One OpSupport per (domain, op_type, status, device, reason), with its nodes' labels in order.

    Each of `nodes` is (label, domain, op_type, status, device, reason).
    """
    groups: dict[tuple[str, str, SupportStatus, str, str], list[str]] = {}
    for label, domain, op_type, status, device, reason in nodes:
        groups.setdefault((domain, op_type, status, device, reason), []).append(label)
    return tuple(
        OpSupport(op_type=op_type, domain=domain, status=status, reason=reason, nodes=tuple(labels), device=device)
        for (domain, op_type, status, device, reason), labels in groups.items()
    )


def device_runs(placed: Iterable[tuple[str, str]]) -> list[Partition]:
    """One Partition per run of consecutive nodes on the same device, from (label, device) pairs in run order."""
    partitions: list[Partition] = []
    run: list[str] = []
    run_device = ""
    for label, device in placed:
        if run and device != run_device:
            partitions.append(Partition(run_device, len(run), tuple(run)))
            run = []
        run.append(label)
        run_device = device
    if run:
        partitions.append(Partition(run_device, len(run), tuple(run)))
    return partitions


def verdict_for(supported: int, total: int) -> Verdict:
    """ "full" when all `total` nodes (or ops) are supported, "none" when none is, else "partial"."""
    return "full" if supported == total else "none" if supported == 0 else "partial"


class ReportedNode(Protocol):
    """A node of the model as a support report names it."""

    @property
    def label(self) -> str: ...

    @property
    def domain(self) -> str: ...

    @property
    def op_type(self) -> str: ...

    @property
    def top_level(self) -> bool: ...


@dataclass(frozen=True)
class Calibration:
    """Representative inputs for static quantization: an .npz of arrays named like the model's inputs,
    each with the batch on axis 0. `per_channel` None: the CPU's recipe decides (see
    `workers.engine.quant_recipes`)."""

    path: Path
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool | None = None
    max_samples: int = 128
    # What each output is (inspection's `output_semantics`, name -> dict): a search that judges
    # quantized candidates on these samples (mixed precision) judges them as parity will.
    output_semantics: Mapping[str, Any] = field(default_factory=dict)
    # The inputs parity will judge the variants on (`parity.evidence_inputs`: the user's
    # validation set, or generated), as model feeds, and what they are in words. A search
    # judges its candidates on them beside the calibration samples, so a mix it picks passes
    # on the inputs the parity step uses, not only on the data its scales were fitted to.
    evidence: tuple[Mapping[str, Any], ...] = ()
    evidence_description: str = ""


@dataclass(frozen=True)
class Variant:
    """An optimized model file a backend built, with how it was made."""

    name: str  # unique within a version, e.g. "ort-int8-static-qdq"
    backend: str
    path: Path  # main file; companions (weights, .bin) live beside it
    format: str  # "onnx", "openvino-ir", "mnn", "ncnn", "tensorrt-plan"
    precision: str  # "fp32", "fp16", "int8", "int8-weights"
    pass_name: str
    options: dict[str, Any] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=dict)
    files: tuple[Path, ...] = ()  # every file that belongs to the variant, path included

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["files"] = [str(p) for p in self.files]
        return data


@dataclass(frozen=True)
class Builds(Sequence[Variant]):
    """What one `build_variants` call made: the variants, and why others were skipped, dropped or
    built differently (no calibration data, a conversion that failed, a variant that does not
    load). It is a sequence of its variants; `notes` go into the optimize report as they are."""

    variants: tuple[Variant, ...] = ()
    notes: tuple[str, ...] = ()

    @overload
    def __getitem__(self, index: int) -> Variant: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Variant]: ...

    def __getitem__(self, index: int | slice) -> Variant | Sequence[Variant]:
        return self.variants[index]

    def __len__(self) -> int:
        return len(self.variants)

    def __iter__(self) -> Iterator[Variant]:
        return iter(self.variants)


@dataclass(frozen=True)
class TritonNative:
    """How Triton serves a variant format without Slipway's engine."""

    platform: str  # Triton's `platform`, or "" when `backend` names it
    backend: str
    model_file: str  # the file name Triton looks for in a version folder
    # How companions are renamed along with the main file: "keep" (ONNX external data is
    # found by the name written in the model), or "stem" (same stem, new name "model").
    companions: Literal["keep", "stem"]
    gpu_only: bool = False


class Session(Protocol):
    """A loaded model ready to run."""

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class BackendNotInstalled(RuntimeError):
    """Raised by `load`/`build_variants` when the runtime is not installed on this worker."""


class Backend(ABC):
    """Base class of runtime backends. Subclasses set `name` and implement the methods.

    A backend is one module of this package: the registry finds it there, and everything the
    rest of Slipway needs to know about its runtime is declared below, on the class.
    """

    name: str = ""
    # --- what the plug-in declares about its runtime; nothing else names backends ------------
    # The CPU architectures (`hardware.canonical_arch` names) its runtime ships for: a hardware
    # profile naming this backend can only require one of these.
    architectures: ClassVar[tuple[str, ...]] = ("x86_64", "aarch64")
    # Whether its variants must be built on the hardware they run on (a TensorRT engine is
    # tuned to the GPU that builds it). False: its files are portable (an MNN or ncnn file, an
    # OpenVINO IR, a quantized ONNX model), so a profile's optimize step may run on any worker
    # that has the converter, and only validate, parity and benchmark need the hardware.
    builds_on_target: ClassVar[bool] = False
    # Whether its op support and parity come from a simulator that runs where its variants are
    # built (RKNN-Toolkit2's), so a profile of only such backends validates and checks parity
    # on the cluster's workers and sends only the benchmark to its hardware.
    simulated_on_builders: ClassVar[bool] = False
    # The optional-dependency group of Slipway's pyproject that installs the runtime on a
    # worker (`pip install 'slipway[<extra>]'`), or None where it comes with Slipway itself or
    # with the worker's image (TensorRT, CUDA PyTorch).
    install_extra: ClassVar[str | None] = None
    # The variant formats Triton serves natively (without Slipway's engine in its python
    # backend), as this backend writes them.
    triton_native: ClassVar[Mapping[str, TritonNative]] = {}
    # The constructor's keyword for the intra-op thread count (the benchmark sets it), or None
    # for a runtime that takes none.
    thread_argument: ClassVar[str | None] = None
    # Whether one of its sessions may be called from several threads at once; the benchmark
    # gives every thread its own session otherwise.
    thread_safe_sessions: ClassVar[bool] = False
    # The pip packages that load and run its variants (Slipway's engine aside): what a serving
    # image's Python needs to run them in Triton's python mode.
    serving_requirements: ClassVar[tuple[str, ...]] = ()
    # How a variant that was built but fails its check (`verify`) is said to fail.
    verify_failure: ClassVar[str] = "does not load"
    # Told how a search inside `build_variants` (mixed precision) spends its budget, as
    # (fraction, message), where the caller shows progress; the build doesn't depend on it.
    search_progress: Callable[[float, str], None] | None = None

    @abstractmethod
    def runtime_version(self) -> str | None:
        """The runtime's version, or None when it is not installed here."""

    def runs_here(self) -> bool:
        """Whether this machine can load and run the backend's variants (what a device that
        only measures needs); by default, whether the backend is installed."""
        return self.available()

    def available(self) -> bool:
        return self.runtime_version() is not None

    def installed_report(
        self,
        version: str,
        method: SupportMethod,
        verdict: Verdict,
        *,
        ops: tuple[OpSupport, ...] = (),
        partitions: tuple[Partition, ...] = (),
        notes: Sequence[str] = (),
        error: str = "",
    ) -> SupportReport:
        """A report of this backend, installed here in `version`."""
        return SupportReport(
            backend=self.name,
            runtime_version=version,
            installed=True,
            method=method,
            verdict=verdict,
            ops=ops,
            partitions=partitions,
            notes=tuple(notes),
            error=error,
        )

    def report_from_statuses(
        self,
        version: str,
        method: SupportMethod,
        nodes: Sequence[ReportedNode],
        statuses: Mapping[str, tuple[SupportStatus, str, str]],
        notes: Sequence[str],
        *,
        refused_partitions: bool,
    ) -> SupportReport:
        """The report of a runtime that judged every node: `statuses` maps each node's label
        to its (status, device, reason).

        Partitions are the runs of top-level nodes (subgraph nodes run inside their
        If/Loop/Scan node), in the order of `nodes`, on one device; a run of nodes the runtime
        refuses is a partition with device "" when `refused_partitions`, else in no partition.
        """
        ops = ops_by_outcome((node.label, node.domain, node.op_type, *statuses[node.label]) for node in nodes)
        supported = sum(1 for node in nodes if statuses[node.label][0] == "supported")
        top = [(node.label, *statuses[node.label][:2]) for node in nodes if node.top_level]
        runs = device_runs((label, device if status == "supported" else "") for label, status, device in top)
        partitions = tuple(run for run in runs if refused_partitions or run.device)
        verdict = verdict_for(supported, len(nodes))
        return self.installed_report(version, method, verdict, ops=ops, partitions=partitions, notes=notes)

    def not_installed_report(self) -> SupportReport:
        return SupportReport(
            backend=self.name,
            runtime_version=None,
            installed=False,
            method="runtime",
            verdict="not_installed",
            notes=(f"{self.name} is not installed on this worker.",),
        )

    @abstractmethod
    def check_support(self, model_path: Path) -> SupportReport:
        """Which operators of the model this runtime supports, and where they run."""

    def not_installed_text(self) -> str:
        """Why nothing can be built or loaded here, and how to change that."""
        where = (
            f"install it with pip install 'slipway[{self.install_extra}]'"
            if self.install_extra
            else "install it on the worker"
        )
        return f"{self.name} is not installed on this worker: {where}, or build on a worker that has it."

    def build_variants(
        self, model_path: Path, profile: HardwareProfile, calibration: Calibration | None, out_dir: Path
    ) -> Builds:
        """This backend's optimized variants for the profile, built into `out_dir`: the one
        template every backend follows.

        Nothing is built without the runtime (BackendNotInstalled). `build` makes the variants
        the profile asks for and notes what it skips; each variant it returns is then checked
        (`verify`: loaded once, by default) and one that fails is deleted and noted, never
        returned. The notes are logged and returned with the variants. ModelErrors (a file that
        is not ONNX, calibration data that does not fit) are the user's to fix and propagate.
        """
        if not self.available():
            raise BackendNotInstalled(self.not_installed_text())
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        notes: list[str] = []
        try:
            built = self.build(model_path, profile, calibration, out_dir, notes)
        except BaseException:
            if created:  # nothing half-written is left behind for a build that raised
                shutil.rmtree(out_dir, ignore_errors=True)
            raise
        kept: list[Variant] = []
        for variant in built:
            try:
                self.verify(variant, profile)
            except Exception as exc:  # every runtime raises its own types; any means the variant is unusable
                for path in variant.files or (variant.path,):
                    path.unlink(missing_ok=True)
                notes.append(
                    f"{variant.name} was built but {self.verify_failure}, so it was dropped: {self.error_text(exc)}"
                )
                continue
            kept.append(variant)
        for note in notes:
            logging.getLogger(type(self).__module__).warning("%s", note)
        return Builds(tuple(kept), tuple(notes))

    @abstractmethod
    def build(
        self,
        model_path: Path,
        profile: HardwareProfile,
        calibration: Calibration | None,
        out_dir: Path,
        notes: list[str],
    ) -> list[Variant]:
        """Build the variants the profile asks for into `out_dir` (which exists), appending to
        `notes` a sentence for each variant skipped or built differently; called by
        `build_variants` with the runtime installed."""

    def verify(self, variant: Variant, profile: HardwareProfile) -> None:
        """Raise when a built variant is unusable on `profile`'s hardware; by default, load it once."""
        self.load(variant.path).close()

    def usable(self, variant: Variant, profile: HardwareProfile) -> bool:
        """Whether `verify` accepts the variant: for a build that goes on from a variant it made
        (a mixed-precision search starts from the full INT8 one) before the template checks it."""
        try:
            self.verify(variant, profile)
        except Exception:  # whatever the runtime raises; the template reports it when it verifies
            return False
        return True

    def error_text(self, exc: BaseException) -> str:
        """A runtime's exception as one readable line."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return lines[0] if lines else type(exc).__name__

    @abstractmethod
    def load(self, variant_path: Path) -> Session:
        """Load a variant (or the original ONNX model) for inference."""
