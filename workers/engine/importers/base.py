"""The contract every framework importer implements, and the report it returns.

An importer turns one framework format into an ONNX model that passes the full ONNX
checker, records exactly how (framework, converter and their versions, the method and any
fallback with its reason, what it assumed about inputs), and proves it: the ONNX model is
run with onnxruntime against the original framework on the same inputs, and the per-output
errors are part of the report. A conversion whose outputs disagree beyond tolerance raises
`ModelError("parity_failed", ...)` with the numbers.

Importers run inside the sandbox (untrusted files), import their framework inside methods,
and never unpickle arbitrary data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.engine.inputs import InputDeclarations

ProgressCallback = Callable[[float, str], None]
Dim = int | str | None


@dataclass(frozen=True)
class InputSpec:
    """An input as the user declares it or the importer infers it. Strings are symbolic dims."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class ImportOptions:
    """What the user told Slipway at upload, plus tolerances for the parity check."""

    inputs: tuple[InputSpec, ...] = ()  # empty: infer from the model
    opset: int | None = None  # None: the converter's default (recorded)
    max_abs_error: float = 1e-4
    max_rel_error: float = 1e-3
    min_cosine: float = 0.9999
    parity_samples: int = 4
    parity_inputs: Path | None = None  # an .npz of user-given inputs, one array per input
    # What the inputs take (a scalar's values, a range, a kind): generated parity inputs follow it.
    declarations: InputDeclarations = field(default_factory=InputDeclarations)


@dataclass(frozen=True)
class ImportParity:
    """How one output of the ONNX model compares with the framework's."""

    name: str
    max_abs_error: float
    max_rel_error: float
    cosine: float
    passed: bool


@dataclass(frozen=True)
class ImportReport:
    """How a framework file became ONNX, and how close the result is to the original."""

    format: str  # e.g. "pytorch-torchscript"
    framework: str  # e.g. "pytorch"
    framework_version: str
    converter: str  # e.g. "torch.onnx (dynamo)", "tf2onnx", "skl2onnx"
    converter_version: str
    method: str  # what was used, e.g. "dynamo", "torchscript-exporter"
    onnx_path: Path  # main file; external data, if any, beside it
    files: tuple[Path, ...]  # every file of the ONNX model, onnx_path included
    opset: int
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    parity: tuple[ImportParity, ...]
    fallback_reason: str = ""  # why the preferred method was not used
    assumptions: tuple[str, ...] = ()  # what Slipway assumed that the user did not say
    notes: tuple[str, ...] = ()
    tool_versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["onnx_path"] = str(self.onnx_path)
        data["files"] = [str(p) for p in self.files]
        return data


class Importer(ABC):
    """Base class of framework importers. Subclasses set `format` and `framework`."""

    format: str = ""
    framework: str = ""
    # What to tell a user whose worker lacks the framework, e.g. "pip install '.[pytorch]'".
    install_hint: str = ""

    @abstractmethod
    def framework_version(self) -> str | None:
        """The framework's version, or None when it is not installed on this worker."""

    def available(self) -> bool:
        return self.framework_version() is not None

    @classmethod
    @abstractmethod
    def sniff(cls, path: Path) -> bool:
        """True when the file's content (not its name) is this format. Cheap: headers or zip listing."""

    @abstractmethod
    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Convert to ONNX in out_dir, check it, and run the parity check. Raises ModelError."""
