"""PyTorch importers: TorchScript archives (.pt) and torch.export programs (.pt2) to ONNX.
It is over 600 lines because an importer, like a runtime backend (docs/adr/0012), is one module
per framework, registered by one line in `importers.registry`, and this one holds both PyTorch
formats: sniffing, the dynamo and TorchScript exporters with their fallback and parity, and the
checks that refuse an unsafe torch.export archive before anything is loaded.

Both try the dynamo exporter (`torch.onnx.export(..., dynamo=True)`) first and fall back to
the TorchScript exporter (`dynamo=False`), recording why. Dims the user declares symbolic
(["batch", 3, 224, 224]) stay dynamic in the ONNX graph, under the user's names. Every result
passes the full ONNX checker and a parity check against the original module, at the
generated size of each symbolic dim and once more at a different size.

What is and isn't unpickled:

- TorchScript: `torch.jit.load` reads `data.pkl` and `constants.pkl` with TorchScript's own
  C++ unpickler, which builds tensors, containers and the TorchScript classes whose code is in
  the archive; it can't call arbitrary Python callables. The archive's code is TorchScript,
  compiled by TorchScript's own compiler, not Python, but running it still runs whatever torch
  operators it calls (file-reading ones such as `aten::from_file` included), so it belongs in
  the sandbox like any untrusted model.
- torch.export (.pt2): `torch.export.load` in torch 2.13 is NOT safe for untrusted files on its
  own. It `torch.load`s pickled weights and constants with `weights_only=False`, retries the
  sample inputs with `weights_only=False` when the safe load fails, `pickle.loads` "opaque"
  constants, loads AOTInductor shared libraries, parses the shape expressions in the graph
  JSON with `sympy.sympify` (which evaluates Python) and `exec`s the program's guard code
  when `module()` is called. `_check_pt2_archive` refuses all of these before anything is
  loaded (reading the zip listing and the JSON only), and the load itself runs with
  `TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`, which makes every `torch.load` inside it weights-only.
  Which Python functions the graph may call is checked by torch's own verifier, which every
  `ExportedProgram` runs when it is built (ATen operators and a fixed list of builtins).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import json
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.archive import MEMBER_PARSE_ERRORS, MEMBER_READ_ERRORS, zip_names
from workers.engine.backends._onnx_graph import default_opset
from workers.engine.errors import ModelError
from workers.engine.importers import parity
from workers.engine.importers.base import (
    Importer,
    ImportOptions,
    ImportParity,
    ImportReport,
    InputSpec,
    ProgressCallback,
)
from workers.engine.input_generation import values_hint

if TYPE_CHECKING:
    import numpy as np
    import torch

INSTALL_HINT = "Install PyTorch and onnxscript on this worker: pip install '.[pytorch]'."
ONNX_FILE_NAME = "model.onnx"
DYNAMO_CONVERTER = "torch.onnx (dynamo)"
TORCHSCRIPT_CONVERTER = "torch.onnx (torchscript)"
# The extra parity sample gives each symbolic dim this much more than its first size.
DYNAMIC_CHECK_STEP = 1
MAX_JSON_MEMBER_BYTES = 256 * 2**20
Feeds = dict[str, "np.ndarray"]

# --- sniffing -------------------------------------------------------------------------


def _inner_name(member: str) -> str:
    """A member's name below the archive's root folder (torch archives have one)."""
    return member.split("/", 1)[1] if "/" in member else member


def _is_pt2_member(member: str) -> bool:
    inner = _inner_name(member)
    return inner == "archive_format" or member.endswith("serialized_exported_program.json")


def _is_torchscript_listing(names: Sequence[str]) -> bool:
    if any(_is_pt2_member(name) for name in names):
        return False
    roots_with_data = {name.split("/")[0] for name in names if name.count("/") == 1 and name.endswith("/data.pkl")}
    for root in roots_with_data:
        if f"{root}/constants.pkl" in names or any(name.startswith(f"{root}/code/") for name in names):
            return True
    return False


def _is_pt2_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith("serialized_exported_program.json"):
                    return True
                if _inner_name(info.filename) == "archive_format" and info.file_size <= 64:
                    return archive.read(info).strip() == b"pt2"
    except MEMBER_PARSE_ERRORS:
        return False
    return False


# --- versions and small helpers ---------------------------------------------------------


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tool_versions() -> dict[str, str]:
    versions = {name: _package_version(name) for name in ("torch", "onnxscript", "onnx", "onnxruntime")}
    return {name: version for name, version in versions.items() if version}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TORCHSCRIPT_FAILED = "The following operation failed in the TorchScript interpreter"


def _first_line(exc: BaseException) -> str:
    """The first line of an error, plus torch.onnx's one-line summary of the cause when it has one."""
    text = _ANSI.sub("", str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith(_TORCHSCRIPT_FAILED):
        # The interpreter's first line says only that something failed; the module's own
        # exception ("sr must be 8000 or 16000") is the traceback's last line.
        return lines[-1].removeprefix("builtins.")[:500]
    first = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    if "## Exception summary" in lines:
        index = lines.index("## Exception summary")
        if index + 1 < len(lines):
            first += f" ({lines[index + 1]})"
    return first[:500]


def _symbolic_dim_name(input_name: str, index: int, dim: str | None) -> str:
    """A valid identifier for a symbolic dim: torch.export.Dim and ONNX dim_param both use it."""
    name = dim if dim else f"{input_name}_dim{index}"
    name = re.sub(r"\W", "_", name)
    return name if name and not name[0].isdigit() else f"d_{name}"


def _sized_specs(specs: Sequence[InputSpec], sizes: Mapping[str, int]) -> tuple[InputSpec, ...]:
    """The specs with every symbolic dim replaced by its size in `sizes` (or the generated size)."""
    return tuple(
        replace(
            spec,
            shape=tuple(
                d if isinstance(d, int) else sizes.get(_symbolic_dim_name(spec.name, i, d), parity.GENERATED_DIM)
                for i, d in enumerate(spec.shape)
            ),
        )
        for spec in specs
    )


def _symbolic_names(specs: Sequence[InputSpec]) -> list[str]:
    names: list[str] = []
    for spec in specs:
        for index, dim in enumerate(spec.shape):
            if not isinstance(dim, int):
                name = _symbolic_dim_name(spec.name, index, dim)
                if name not in names:
                    names.append(name)
    return names


def _describe(specs: Sequence[InputSpec]) -> str:
    return ", ".join(f"{spec.name} {list(spec.shape)} {spec.dtype}" for spec in specs)


def _load_parity_inputs(path: Path, specs: Sequence[InputSpec]) -> Feeds:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            feeds = {name: np.asarray(data[name]) for name in data.files}
    except MEMBER_PARSE_ERRORS as exc:
        raise ModelError(
            "invalid_parity_inputs",
            f"The parity inputs could not be read as a NumPy .npz ({exc}). Save them with "
            "numpy.savez(path, <input name>=array, ...), one array per model input.",
        ) from exc
    missing = [spec.name for spec in specs if spec.name not in feeds]
    if missing:
        raise ModelError(
            "invalid_parity_inputs",
            f"The parity inputs have no array for {', '.join(missing)}; they hold {', '.join(sorted(feeds))}. "
            "Give one array per model input, named like the input.",
        )
    return {spec.name: feeds[spec.name].astype(spec.dtype, copy=False) for spec in specs}


# --- what a conversion is made of ---------------------------------------------------------


@dataclass(frozen=True)
class _Exporter:
    method: str  # the report's `method`
    converter: str
    export: Callable[[Path], None]


@dataclass(frozen=True)
class _Sample:
    feeds: Feeds
    label: str
    optional: bool = False  # skipped, with a note, when the original model can't run it


@dataclass
class _Conversion:
    """Everything an importer works out before the shared export, check and parity steps."""

    format: str
    specs: tuple[InputSpec, ...]
    samples: list[_Sample]
    reference: Callable[[Feeds], list[np.ndarray]]
    output_names: tuple[str, ...]
    exporters: list[_Exporter]
    assumptions: list[str]
    notes: list[str]


# --- torch glue ---------------------------------------------------------------------------


def _torch_inputs(feeds: Feeds, specs: Sequence[InputSpec]) -> list[torch.Tensor]:
    import numpy as np
    import torch

    # A C-ordered copy that keeps a scalar a scalar (np.ascontiguousarray makes it [1], and the
    # export would then give the ONNX input rank 1 where users feed rank 0).
    return [torch.from_numpy(np.array(feeds[spec.name], order="C", copy=True)) for spec in specs]


def _flatten_outputs(output: Any) -> list[tuple[str, torch.Tensor]]:
    """The tensors of a module's output, each with a name from its place in the output."""
    import torch
    from torch.utils import _pytree as pytree

    leaves, _ = pytree.tree_flatten_with_path(output)
    tensors = [(path, leaf) for path, leaf in leaves if isinstance(leaf, torch.Tensor)]
    named: list[tuple[str, torch.Tensor]] = []
    for path, tensor in tensors:
        parts = [str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", "")))) for key in path]
        name = "_".join(parts) if parts else "output"
        if len(tensors) > 1 and (not parts or parts[0].isdigit()):
            name = f"output_{name}"
        name = re.sub(r"[^\w.\-]", "_", name)
        while name in {existing for existing, _ in named}:
            name += "_"
        named.append((name, tensor))
    return named


def _reference_runner(call: Callable[..., Any], specs: Sequence[InputSpec]) -> Callable[[Feeds], list[np.ndarray]]:
    def run(feeds: Feeds) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            output = call(*_torch_inputs(feeds, specs))
        return [tensor.detach().cpu().numpy() for _, tensor in _flatten_outputs(output)]

    return run


def _dynamic_shapes(specs: Sequence[InputSpec]) -> tuple[dict[int, Any], ...]:
    """torch.export Dims, one per symbolic name, so inputs that share a name share the Dim."""
    import torch

    dims = {name: torch.export.Dim(name) for name in _symbolic_names(specs)}
    return tuple(
        {i: dims[_symbolic_dim_name(spec.name, i, d)] for i, d in enumerate(spec.shape) if not isinstance(d, int)}
        for spec in specs
    )


def _dynamic_axes(specs: Sequence[InputSpec]) -> dict[str, dict[int, str]]:
    return {
        spec.name: {i: _symbolic_dim_name(spec.name, i, d) for i, d in enumerate(spec.shape) if not isinstance(d, int)}
        for spec in specs
        if any(not isinstance(d, int) for d in spec.shape)
    }


def _export_with_torchscript_exporter(
    module: Any, args: tuple[Any, ...], conversion: _Conversion, opset: int | None
) -> Callable[[Path], None]:
    def export(path: Path) -> None:
        import torch

        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=[spec.name for spec in conversion.specs],
            output_names=list(conversion.output_names),
            dynamic_axes=_dynamic_axes(conversion.specs),
            opset_version=opset,
        )

    return export


def _unregistered_forward(function: Callable[..., Any]) -> Any:
    """An nn.Module that calls `function` without registering it as a submodule.

    The TorchScript exporter calls `train(False)` on the model, which an exported program's
    module refuses; hiding that module from nn.Module keeps the call away from it.
    """
    import torch

    class Forward(torch.nn.Module):
        def forward(self, *args: Any) -> Any:
            return function(*args)

    return Forward()


# --- the shared export, check and parity steps ---------------------------------------------


def _remove_onnx_files(out_dir: Path) -> None:
    for path in (out_dir / ONNX_FILE_NAME, out_dir / f"{ONNX_FILE_NAME}.data"):
        path.unlink(missing_ok=True)


def _onnx_files(onnx_path: Path) -> tuple[Path, ...]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    locations: list[str] = []
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value not in locations:
                locations.append(entry.value)
    return (onnx_path, *(onnx_path.parent / location for location in locations))


def _onnx_signature(onnx_path: Path) -> tuple[tuple[InputSpec, ...], int]:
    """The ONNX model's inputs as InputSpecs (dim_param -> str), and its default-domain opset."""
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {tensor.name for tensor in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = tuple(
            dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None) for dim in tensor_type.shape.dim
        )
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        specs.append(InputSpec(value.name, shape, dtype))
    return tuple(specs), default_opset(model)


def _export_first_that_works(
    exporters: Sequence[_Exporter], out_dir: Path, progress: ProgressCallback
) -> tuple[_Exporter, str, float]:
    """Run the exporters in order until one writes a model the full ONNX checker accepts."""
    onnx_path = out_dir / ONNX_FILE_NAME
    failures: list[str] = []
    for exporter in exporters:
        progress(0.3, f"Exporting to ONNX with {exporter.converter}")
        _remove_onnx_files(out_dir)
        started = time.monotonic()
        try:
            exporter.export(onnx_path)
            if not onnx_path.exists():
                raise RuntimeError("the exporter wrote no ONNX file")
            parity.check_onnx(onnx_path)
        except ModelError as exc:  # the checker rejected what the exporter wrote
            failures.append(f"{exporter.converter}: {exc.message}")
            continue
        except Exception as exc:  # any exporter failure is a reason to try the next one
            failures.append(f"{exporter.converter}: {_first_line(exc)}")
            continue
        return exporter, "; ".join(failures), time.monotonic() - started
    raise ModelError(
        "conversion_failed",
        "Slipway could not convert the model to ONNX with any exporter. "
        + " ".join(f"{failure}." if not failure.endswith(".") else failure for failure in failures)
        + " Check that the model runs on the declared inputs, or export it to ONNX yourself and upload that.",
    )


def _check_parity(
    conversion: _Conversion, onnx_path: Path, options: ImportOptions, notes: list[str]
) -> tuple[ImportParity, ...]:
    worst: tuple[ImportParity, ...] | None = None
    for sample in conversion.samples:
        try:
            reference = conversion.reference(sample.feeds)
        except Exception as exc:
            if sample.optional:
                notes.append(f"Parity was not checked on {sample.label}: the original model fails on it ({exc}).")
                continue
            raise ModelError(
                "input_mismatch",
                f"The model fails on {sample.label}: {_first_line(exc)}. Check the input names, shapes and "
                f"dtypes given at upload ({_describe(conversion.specs)}).{values_hint([sample.feeds])}",
            ) from exc
        try:
            converted = parity.run_onnx(onnx_path, sample.feeds)
        except Exception as exc:
            raise ModelError(
                "parity_failed",
                f"onnxruntime fails to run the converted model on {sample.label} although the original runs: "
                f"{_first_line(exc)}. Try another opset or exporter.",
            ) from exc
        try:
            result = parity.compare(conversion.output_names, reference, converted, options)
        except ModelError as exc:
            raise ModelError(exc.code, f"On {sample.label}: {exc.message}") from exc
        worst = result if worst is None else tuple(parity.worse(a, b) for a, b in zip(worst, result, strict=True))
    if worst is None:
        raise ModelError("parity_failed", "No parity input could be run through the original model.")
    return worst


def _convert(
    conversion: _Conversion, out_dir: Path, options: ImportOptions, progress: ProgressCallback
) -> ImportReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter, fallback_reason, seconds = _export_first_that_works(conversion.exporters, out_dir, progress)
    onnx_path = out_dir / ONNX_FILE_NAME
    notes = list(conversion.notes)
    notes.append(f"Exported with {exporter.converter} in {seconds:.1f} s.")
    progress(0.8, "Comparing the ONNX model with the original on the same inputs")
    results = _check_parity(conversion, onnx_path, options, notes)
    inputs, opset = _onnx_signature(onnx_path)
    torch_version = _package_version("torch") or "unknown"
    progress(1.0, "Converted and checked")
    return ImportReport(
        format=conversion.format,
        framework="pytorch",
        framework_version=torch_version,
        converter=exporter.converter,
        converter_version=torch_version,
        method=exporter.method,
        onnx_path=onnx_path,
        files=_onnx_files(onnx_path),
        opset=opset,
        inputs=inputs,
        outputs=conversion.output_names,
        parity=results,
        fallback_reason=fallback_reason,
        assumptions=tuple(conversion.assumptions),
        notes=tuple(notes),
        tool_versions=_tool_versions(),
    )


def _samples(
    specs: Sequence[InputSpec],
    options: ImportOptions,
    sizes: Mapping[str, int],
    check_sizes: Mapping[str, int] | None,
) -> list[_Sample]:
    """Parity inputs: the user's .npz, or generated ones; plus one with every symbolic dim at a
    second size, which proves that the dims really are dynamic in the ONNX graph."""
    if options.parity_inputs is not None:
        return [_Sample(_load_parity_inputs(options.parity_inputs, specs), "the uploaded parity inputs")]
    sized = _sized_specs(specs, sizes)
    samples = [
        _Sample(
            parity.generate_inputs(sized, seed=seed, declarations=options.declarations),
            f"generated inputs ({_describe(sized)}, seed {seed})",
        )
        for seed in range(max(1, options.parity_samples))
    ]
    if check_sizes:
        resized = _sized_specs(specs, check_sizes)
        samples.append(
            _Sample(
                parity.generate_inputs(resized, seed=len(samples), declarations=options.declarations),
                f"generated inputs at a second size of the symbolic dims ({_describe(resized)})",
                optional=True,
            )
        )
    return samples


def _generated_assumption(specs: Sequence[InputSpec], sizes: Mapping[str, int]) -> str | None:
    names = _symbolic_names(specs)
    if not names:
        return None
    described = ", ".join(f"{name}={sizes.get(name, parity.GENERATED_DIM)}" for name in names)
    return f"Parity inputs were generated with symbolic dims set to {described}."


# --- TorchScript --------------------------------------------------------------------------

_MAX_READ_VERSION = re.compile(r"version (\d+), but the maximum supported version for reading is (\d+)")
_UNKNOWN_OP = re.compile(r"Unknown builtin op: ([\w:.]+)")


def _torchscript_format_version(path: Path) -> str | None:
    """The archive's `version` record: TorchScript's file format version, not a torch release."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if _inner_name(info.filename) == "version" and info.file_size <= 32:
                    return archive.read(info).decode("ascii", "replace").strip()
    except MEMBER_PARSE_ERRORS:
        return None
    return None


def _load_torchscript(path: Path) -> Any:
    import torch

    torch_version = _package_version("torch")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        text = str(exc)
        file_version = _torchscript_format_version(path)
        too_new = _MAX_READ_VERSION.search(text)
        if too_new:
            raise ModelError(
                "framework_too_new",
                f"This TorchScript file has format version {too_new.group(1)}, written by a newer PyTorch than "
                f"this worker's torch {torch_version}, which reads format versions up to {too_new.group(2)}. "
                f"Save it again with torch {torch_version} or older, or import it on a worker with a newer torch.",
            ) from exc
        unknown = _UNKNOWN_OP.search(text)
        if unknown and unknown.group(1).startswith("aten::"):
            version = f" (TorchScript format version {file_version})" if file_version else ""
            raise ModelError(
                "framework_too_new",
                f"This TorchScript file{version} uses the operator {unknown.group(1).rstrip('.')}, which this "
                f"worker's torch {torch_version} does not have, so it was most likely saved with a newer PyTorch. "
                f"Save it again with torch {torch_version} or older, or import it on a worker with a newer torch.",
            ) from exc
        if unknown:
            raise ModelError(
                "unsupported_operator",
                f"This TorchScript file uses the operator {unknown.group(1).rstrip('.')}, which comes from a "
                "library that is not part of PyTorch and is not installed here. Replace it with standard "
                "operators before saving, or export the model to ONNX yourself.",
            ) from exc
        raise ModelError(
            "invalid_model",
            f"PyTorch could not load this TorchScript file: {_first_line(exc)}. Save it with "
            "torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, inputs), path) and upload it again.",
        ) from exc


def _check_forward_arity(module: Any, specs: Sequence[InputSpec]) -> None:
    try:
        arguments = list(module.forward.schema.arguments)[1:]  # without self
    except (AttributeError, RuntimeError):
        return
    required = [argument.name for argument in arguments if not argument.has_default_value()]
    if not len(required) <= len(specs) <= len(arguments):
        raise ModelError(
            "input_mismatch",
            f"The TorchScript module's forward takes the inputs {', '.join(a.name for a in arguments)} "
            f"({len(required)} required) but {len(specs)} were declared ({', '.join(s.name for s in specs)}). "
            "Declare one input per forward argument, in order.",
        )


# --- torch.export archives ---------------------------------------------------------------

# Names a shape expression in a .pt2 may use: sympy's classes as `srepr` writes them, and the
# functions torch's deserializer adds. Anything else (builtins, attributes, dunders) is refused
# because torch parses these strings with `sympy.sympify`, which evaluates Python.
_SYMPY_NAMES = frozenset(
    """Symbol Dummy Integer Rational Float Add Mul Pow Mod Max Min Abs floor ceiling sqrt Eq Ne Lt Le Gt Ge
    Equality Unequality StrictLessThan StrictGreaterThan LessThan GreaterThan And Or Not Piecewise
    ExprCondPair ITE true false oo zoo nan Infinity NegativeInfinity NaN Zero One NegativeOne Half
    BooleanTrue BooleanFalse int_oo IntInfinity NegativeIntInfinity FloorDiv ModularIndexing Where PythonMod
    CleanDiv CeilToInt FloorToInt CeilDiv LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv
    IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat Identity""".split()  # noqa: SIM905
)
# Guard code is exec'd by `ExportedProgram.module()`: comparisons of input sizes such as
# "L['x'].size()[0] == L['y'].size()[0]" and nothing else.
_GUARD_NAMES = frozenset({"L", "math", "max", "min", "abs"})
_GUARD_ATTRIBUTES = frozenset({"size", "stride", "storage_offset", "dim", "isnan", "isinf", "inf", "floor", "ceil"})
_SYMBOL_NAME = re.compile(r"[a-z]+\d+")
_PLAIN_STRING = re.compile(r"[\w.\-]*")
_EXPRESSION_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.Call,
    ast.keyword,
    ast.Name,
    ast.Constant,
    ast.Load,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)
_GUARD_NODES = (*_EXPRESSION_NODES, ast.Subscript, ast.Attribute)


def _is_safe_expression(text: str, *, guard: bool) -> bool:
    """True when `text` is an arithmetic/comparison expression over allowed names only."""
    if len(text) > 20_000 or "__" in text:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    allowed_nodes = _GUARD_NODES if guard else _EXPRESSION_NODES
    names = _GUARD_NAMES if guard else _SYMPY_NAMES
    for node in ast.walk(tree):
        if not isinstance(node, allowed_nodes):
            return False
        if isinstance(node, ast.Name) and node.id not in names and (guard or not _SYMBOL_NAME.fullmatch(node.id)):
            return False
        if isinstance(node, ast.Attribute) and node.attr not in _GUARD_ATTRIBUTES:
            return False
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name | ast.Attribute):
            return False
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str) and not _PLAIN_STRING.fullmatch(value):
                return False
            if not isinstance(value, bool | int | float | str):
                return False
    return True


def _json_items(data: Any) -> Iterator[tuple[str, Any]]:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _unsafe(message: str) -> ModelError:
    return ModelError("unsafe_archive", f"{message} Slipway does not load it, because loading it could run code.")


@dataclass(frozen=True)
class _Pt2Facts:
    torch_version: str | None  # the torch that saved the program, when the archive says
    schema_major: int | None


def _check_pt2_archive(path: Path) -> _Pt2Facts:
    """Refuse what `torch.export.load` would unpickle, exec, eval or dlopen. Reads the zip
    listing and the archive's JSON only."""
    torch_version: str | None = None
    schema_major: int | None = None
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                inner = _inner_name(info.filename)
                if inner.startswith("data/aotinductor/"):
                    raise _unsafe(
                        "The .pt2 file contains AOTInductor-compiled native code (data/aotinductor/). "
                        "Upload the program saved with torch.export.save(program, path) instead."
                    )
                if not info.filename.endswith(".json"):
                    continue
                if info.file_size > MAX_JSON_MEMBER_BYTES:
                    raise ModelError(
                        "too_large",
                        f"The .pt2 member {info.filename} is {info.file_size} bytes of JSON, more than Slipway reads.",
                    )
                try:
                    data = json.loads(archive.read(info))
                except ValueError as exc:
                    raise ModelError(
                        "invalid_model",
                        f"The .pt2 member {info.filename} is not valid JSON. Save the program again with "
                        "torch.export.save and upload it.",
                    ) from exc
                if not isinstance(data, dict):
                    continue
                if inner.startswith(("data/weights/", "data/constants/")):
                    _check_payload_config(info.filename, data)
                if "graph_module" in data:
                    torch_version = data.get("torch_version") or torch_version
                    schema = data.get("schema_version")
                    if isinstance(schema, dict) and isinstance(schema.get("major"), int):
                        schema_major = schema["major"]
                    _check_program_json(info.filename, data)
    except MEMBER_READ_ERRORS as exc:
        raise ModelError(
            "not_a_model", "The .pt2 file is not a readable zip archive; it may be damaged or cut short."
        ) from exc
    return _Pt2Facts(torch_version if isinstance(torch_version, str) else None, schema_major)


def _check_payload_config(member: str, data: dict[str, Any]) -> None:
    config = data.get("config", {})
    if not isinstance(config, dict):
        return
    for fqn, payload in config.items():
        if not isinstance(payload, dict):
            continue
        path_name = str(payload.get("path_name", ""))
        if payload.get("use_pickle"):
            raise _unsafe(
                f"The .pt2 file stores '{fqn}' as a pickle (a tensor subclass or similar object) in {member}. "
                "Convert it to a plain tensor before torch.export.save and upload again."
            )
        if path_name.startswith(("opaque_obj_", "custom_obj_")):
            raise _unsafe(
                f"The .pt2 file stores the constant '{fqn}' as a serialized Python or TorchBind object. "
                "Use tensors only, or export the model to ONNX yourself."
            )


def _check_program_json(member: str, data: dict[str, Any]) -> None:
    guards = data.get("guards_code") or []
    if not isinstance(guards, list) or not all(
        isinstance(guard, str) and _is_safe_expression(guard, guard=True) for guard in guards
    ):
        raise _unsafe(f"The .pt2 file's guard code in {member} is not a plain comparison of input sizes.")
    for key, value in _json_items(data):
        if key == "expr_str" and not (isinstance(value, str) and _is_safe_expression(value, guard=False)):
            raise _unsafe(f"The .pt2 file's graph in {member} holds a shape expression that is not plain arithmetic.")


@contextlib.contextmanager
def _weights_only_torch_load() -> Iterator[None]:
    """Make every torch.load weights-only, even those that pass weights_only=False."""
    saved = {
        name: os.environ.pop(name, None)
        for name in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    }
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


def _load_exported_program(path: Path) -> Any:
    import torch

    facts = _check_pt2_archive(path)
    torch_version = _package_version("torch") or "unknown"
    saved_by = f"torch {facts.torch_version}" if facts.torch_version else "an unknown torch version"
    try:
        from torch._export.serde.schema import SCHEMA_VERSION

        our_schema_major: int | None = SCHEMA_VERSION[0]
    except ImportError:
        our_schema_major = None
    too_new = ModelError(
        "framework_too_new",
        f"This .pt2 file was saved by {saved_by}, newer than this worker's torch {torch_version}, and "
        f"its format can't be read here. Save it again with torch {torch_version} or import it on a worker "
        "with a newer torch.",
    )
    if facts.schema_major is not None and our_schema_major is not None and facts.schema_major > our_schema_major:
        raise too_new
    try:
        with _weights_only_torch_load(), path.open("rb") as stream:
            return torch.export.load(stream)
    except Exception as exc:
        if facts.torch_version and _is_newer(facts.torch_version, torch_version):
            raise too_new from exc
        raise ModelError(
            "invalid_model",
            f"PyTorch could not load this .pt2 file (saved by {saved_by}): {_first_line(exc)}. Save the "
            "program with torch.export.save(torch.export.export(model, args), path) and upload it again.",
        ) from exc


def _is_newer(theirs: str, ours: str) -> bool:
    def release(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])

    return release(theirs) > release(ours)


@dataclass(frozen=True)
class _ProgramInput:
    name: str
    shape: tuple[int | str, ...]  # str: the program's symbol, e.g. "s77"
    dtype: str
    ranges: dict[str, tuple[int, int | None]]  # symbol -> (min, max); max None = unbounded


def _program_inputs(program: Any) -> list[_ProgramInput]:
    """The user inputs of an exported program, from its graph's placeholders."""
    import torch

    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    ranges: dict[str, tuple[int, int | None]] = {}
    for symbol, value_range in program.range_constraints.items():
        # int_oo (torch's integer infinity) says is_finite, so ask for a sympy Integer instead
        lower, upper = value_range.lower, value_range.upper
        ranges[str(symbol)] = (int(lower) if lower.is_Integer else 0, int(upper) if upper.is_Integer else None)
    inputs = []
    for name in program.graph_signature.user_inputs:
        value = placeholders[name].meta.get("val") if name in placeholders else None
        if not isinstance(value, torch.Tensor):
            raise ModelError(
                "unsupported_input",
                f"The exported program takes '{name}', which is not a tensor; ONNX models take tensors only. "
                "Export a wrapper whose inputs are all tensors.",
            )
        shape: list[int | str] = []
        for dim in value.shape:
            if isinstance(dim, int):
                shape.append(dim)
                continue
            expr = dim.node.expr
            if not expr.is_Symbol:
                raise ModelError(
                    "inputs_required",
                    f"Dim of input '{name}' is the expression {expr} in the exported program; declare the "
                    "inputs (names, shapes with symbolic dims, dtypes) at upload.",
                )
            shape.append(str(expr))
        dtype = str(value.dtype).removeprefix("torch.")
        inputs.append(_ProgramInput(name, tuple(shape), dtype, ranges))
    return inputs


def _program_specs(
    program_inputs: Sequence[_ProgramInput], declared: Sequence[InputSpec], assumptions: list[str], notes: list[str]
) -> tuple[tuple[InputSpec, ...], dict[str, str]]:
    """The specs to convert with, and a map from the program's symbols to the dims' names."""
    if not declared:
        specs = tuple(InputSpec(item.name, item.shape, item.dtype) for item in program_inputs)
        assumptions.append(
            f"Input names, shapes and dtypes were taken from the exported program's signature: {_describe(specs)}."
        )
        dims = sorted({d for item in program_inputs for d in item.shape if isinstance(d, str)})
        if dims:
            assumptions.append(f"Dims {', '.join(dims)} are dynamic, as in the program's range constraints.")
        return specs, {name: name for name in dims}
    if len(declared) != len(program_inputs):
        raise ModelError(
            "input_mismatch",
            f"The exported program takes {len(program_inputs)} inputs "
            f"({', '.join(item.name for item in program_inputs)}) but {len(declared)} were declared. "
            "Declare one input per program input, in order.",
        )
    renames: dict[str, str] = {}
    for spec, item in zip(declared, program_inputs, strict=True):
        where = f"Input '{spec.name}' (the program's '{item.name}')"
        if spec.dtype != item.dtype:
            raise ModelError("input_mismatch", f"{where} is declared {spec.dtype} but the program takes {item.dtype}.")
        if len(spec.shape) != len(item.shape):
            raise ModelError(
                "input_mismatch",
                f"{where} is declared with shape {list(spec.shape)} but the program takes {list(item.shape)}.",
            )
        for index, (want, have) in enumerate(zip(spec.shape, item.shape, strict=True)):
            if isinstance(have, int) and not isinstance(want, int):
                raise ModelError(
                    "input_mismatch",
                    f"{where}: dim {index} is declared symbolic ({want!r}) but the exported program fixes it at "
                    f"{have}. Export with dynamic_shapes (torch.export.Dim) for that dim, or declare {have}.",
                )
            if isinstance(have, int) and isinstance(want, int) and have != want:
                raise ModelError(
                    "input_mismatch",
                    f"{where}: dim {index} is declared {want} but the exported program fixes it at {have}.",
                )
            if isinstance(have, str) and isinstance(want, int):
                notes.append(f"{where}: dim {index} is declared {want} but stays dynamic, as in the exported program.")
            if isinstance(have, str) and not isinstance(want, int):
                renames.setdefault(have, _symbolic_dim_name(spec.name, index, want))
    return tuple(declared), renames


def _program_sizes(
    program_inputs: Sequence[_ProgramInput], specs: Sequence[InputSpec], step: int
) -> dict[str, int] | None:
    """A size for each symbolic dim of `specs`, distinct per dim and inside the program's
    range; None when `step` takes one out of its range."""
    sizes: dict[str, int] = {}
    for spec, item in zip(specs, program_inputs, strict=True):
        for index, (want, have) in enumerate(zip(spec.shape, item.shape, strict=True)):
            name = _symbolic_dim_name(spec.name, index, want if isinstance(want, str) else None)
            if isinstance(want, int) or not isinstance(have, str) or name in sizes:
                continue
            low, high = item.ranges.get(have, (0, None))
            size = max(parity.GENERATED_DIM + len(sizes), low) + step
            if high is not None and size > high:
                return None
            sizes[name] = size
    return sizes


def _program_caller(module: Any, in_spec: Any) -> Callable[..., Any]:
    """Call an exported program's module with its user inputs as flat tensors, in order."""

    def call(*tensors: Any) -> Any:
        from torch.utils import _pytree as pytree

        args, kwargs = pytree.tree_unflatten(list(tensors), in_spec) if in_spec is not None else (tensors, {})
        return module(*args, **kwargs)

    return call


def _example_sample(program: Any, specs: Sequence[InputSpec]) -> _Sample | None:
    """The program's own example inputs, when it saved them and they fit the specs."""
    import torch
    from torch.utils import _pytree as pytree

    example = getattr(program, "example_inputs", None)
    if not example:
        return None
    leaves = pytree.tree_leaves(example)
    if len(leaves) != len(specs) or not all(isinstance(leaf, torch.Tensor) for leaf in leaves):
        return None
    feeds = {spec.name: leaf.detach().cpu().numpy() for spec, leaf in zip(specs, leaves, strict=True)}
    if any(str(feeds[spec.name].dtype) != spec.dtype for spec in specs):
        return None
    return _Sample(feeds, "the exported program's example inputs", optional=True)


# --- the importers ------------------------------------------------------------------------


class _PyTorchImporter(Importer):
    framework = "pytorch"
    install_hint = INSTALL_HINT

    def framework_version(self) -> str | None:
        return _package_version("torch")


class TorchScriptImporter(_PyTorchImporter):
    """TorchScript archives written by `torch.jit.save` (a zip with `<root>/data.pkl` and code)."""

    format = "pytorch-torchscript"

    @classmethod
    def sniff(cls, path: Path) -> bool:
        return _is_torchscript_listing(zip_names(path) or [])

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Load with torch.jit.load (TorchScript's restricted unpickler), convert with the dynamo
        exporter (via torch.export) or else the TorchScript exporter, check, and compare."""
        specs = tuple(options.inputs)
        if not specs:
            raise ModelError(
                "inputs_required",
                "A TorchScript file does not record its input shapes, so Slipway needs them: give each input's "
                'name, shape and dtype at upload, with names for the dims that vary, for example {"name": '
                '"image", "shape": ["batch", 3, 224, 224], "dtype": "float32"}.',
            )
        progress(0.05, "Loading the TorchScript module")
        module = _load_torchscript(source)
        module.eval()
        _check_forward_arity(module, specs)
        assumptions: list[str] = []
        notes = [
            "Loaded with torch.jit.load, whose unpickler only rebuilds tensors and TorchScript objects; "
            "the module's TorchScript code runs in the sandbox."
        ]
        # distinct sizes: torch.export gives dims of equal size one symbol ("duck sizing")
        sizes = {name: parity.GENERATED_DIM + i for i, name in enumerate(_symbolic_names(specs))}
        check_sizes = {name: size + DYNAMIC_CHECK_STEP for name, size in sizes.items()}
        samples = _samples(specs, options, sizes, check_sizes)
        if assumption := _generated_assumption(specs, sizes):
            assumptions.append(assumption)
        reference = _reference_runner(module, specs)
        output_names = self._output_names(module, samples[0], specs)
        conversion = _Conversion(self.format, specs, samples, reference, output_names, [], assumptions, notes)
        args = tuple(_torch_inputs(samples[0].feeds, specs))
        conversion.exporters = [
            _Exporter("dynamo", DYNAMO_CONVERTER, self._dynamo_export(module, args, conversion, options.opset)),
            _Exporter(
                "torchscript-exporter",
                TORCHSCRIPT_CONVERTER,
                _export_with_torchscript_exporter(module, args, conversion, options.opset),
            ),
        ]
        return _convert(conversion, out_dir, options, progress)

    @staticmethod
    def _output_names(module: Any, sample: _Sample, specs: Sequence[InputSpec]) -> tuple[str, ...]:
        import torch

        try:
            with torch.no_grad():
                output = module(*_torch_inputs(sample.feeds, specs))
        except Exception as exc:
            raise ModelError(
                "input_mismatch",
                f"The TorchScript module fails on {sample.label}: {_first_line(exc)}. Check the input names, "
                f"shapes and dtypes given at upload.{values_hint([sample.feeds])}",
            ) from exc
        return tuple(name for name, _ in _flatten_outputs(output))

    @staticmethod
    def _dynamo_export(
        module: Any, args: tuple[Any, ...], conversion: _Conversion, opset: int | None
    ) -> Callable[[Path], None]:
        def export(path: Path) -> None:
            import torch
            from torch._export.converter import TS2EPConverter

            # torch.onnx's dynamo path refuses ScriptModules; torch's own converter turns the
            # TorchScript graph into an ExportedProgram, whose module is re-exported with the
            # user's dims so that they stay dynamic under the user's names.
            program = TS2EPConverter(module, args).convert()
            torch.onnx.export(
                program.module(),
                args,
                str(path),
                dynamo=True,
                dynamic_shapes=_dynamic_shapes(conversion.specs),
                input_names=[spec.name for spec in conversion.specs],
                output_names=list(conversion.output_names),
                opset_version=opset,
                verbose=False,
            )

        return export


class ExportedProgramImporter(_PyTorchImporter):
    """torch.export programs written by `torch.export.save` (.pt2)."""

    format = "pytorch-exported"

    @classmethod
    def sniff(cls, path: Path) -> bool:
        return _is_pt2_archive(path)

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Vet the archive, load it weights-only, export the program with the dynamo exporter (or
        else its module with the TorchScript exporter), check, and compare."""
        import torch

        progress(0.05, "Checking and loading the exported program")
        program = _load_exported_program(source)
        assumptions: list[str] = []
        notes = [
            "The archive was checked for pickled objects, native code and non-arithmetic expressions before "
            "loading, and loaded with every torch.load forced weights-only."
        ]
        program_inputs = _program_inputs(program)
        specs, renames = _program_specs(program_inputs, options.inputs, assumptions, notes)
        sizes = _program_sizes(program_inputs, specs, 0) or {}
        check_sizes = _program_sizes(program_inputs, specs, DYNAMIC_CHECK_STEP)
        samples = _samples(specs, options, sizes, check_sizes)
        if options.parity_inputs is None and (example := _example_sample(program, specs)):
            samples.insert(1, example)
        if assumption := _generated_assumption(specs, sizes):
            assumptions.append(assumption)

        call = _program_caller(program.module(), program.call_spec.in_spec)
        reference = _reference_runner(call, specs)
        try:
            with torch.no_grad():
                first = call(*_torch_inputs(samples[0].feeds, specs))
        except Exception as exc:
            raise ModelError(
                "input_mismatch",
                f"The exported program fails on {samples[0].label}: {_first_line(exc)}. Check the input names, "
                "shapes and dtypes given at upload.",
            ) from exc
        output_names = tuple(name for name, _ in _flatten_outputs(first))
        conversion = _Conversion(self.format, specs, samples, reference, output_names, [], assumptions, notes)
        args = tuple(_torch_inputs(samples[0].feeds, specs))
        dynamic_names = tuple(
            {
                i: renames.get(str(have), str(have))
                for i, have in enumerate(item.shape)
                if isinstance(have, str) and not isinstance(spec.shape[i], int)
            }
            for spec, item in zip(specs, program_inputs, strict=True)
        )

        def export_program(path: Path) -> None:
            torch.onnx.export(
                program,
                args,
                str(path),
                dynamo=True,
                # for an ExportedProgram, dims are already decided; the strings only name them
                dynamic_shapes=dynamic_names,
                input_names=[spec.name for spec in specs],
                output_names=list(output_names),
                opset_version=options.opset,
                verbose=False,
            )

        fallback_module = program.module()
        for parameter in fallback_module.parameters():
            parameter.requires_grad_(False)  # the TorchScript exporter turns them into constants
        fallback_call = _program_caller(fallback_module, program.call_spec.in_spec)
        conversion.exporters = [
            _Exporter("dynamo", DYNAMO_CONVERTER, export_program),
            _Exporter(
                "torchscript-exporter",
                TORCHSCRIPT_CONVERTER,
                _export_with_torchscript_exporter(
                    _unregistered_forward(fallback_call), args, conversion, options.opset
                ),
            ),
        ]
        return _convert(conversion, out_dir, options, progress)
