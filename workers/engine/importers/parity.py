"""Shared pieces of every importer: generated inputs, the ONNX checker, and the parity check;
and what the tabular importers (scikit-learn, XGBoost, LightGBM) share besides."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.archive import MEMBER_PARSE_ERRORS
from workers.engine.errors import ModelError
from workers.engine.importers.base import Importer, ImportOptions, ImportParity, ImportReport, InputSpec
from workers.engine.input_generation import MAX_GENERATED_ELEMENTS, check_generated_size

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from workers.engine.inputs import InputDeclarations

__all__ = ["MAX_GENERATED_ELEMENTS", "check_generated_size", "concrete_shape", "generate_inputs"]

# Symbolic dims get this size in generated inputs (and the report says so).
GENERATED_DIM = 2
# The one input of a tabular model when the upload declares none.
DEFAULT_INPUT_NAME = "input"
# Rows per generated parity batch: tabular rows are cheap, and one row per batch would
# barely touch a tree ensemble's branches.
TABULAR_ROWS = 64
# Protobuf can't serialize 2 GiB; leave headroom for the graph around the weights.
_MAX_INLINE_ONNX_BYTES = 2**31 - 2**26


def concrete_shape(spec: InputSpec) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else GENERATED_DIM for d in spec.shape)


def generate_inputs(
    specs: Sequence[InputSpec], seed: int = 0, declarations: InputDeclarations | None = None
) -> dict[str, np.ndarray]:
    """One feed from the engine's one generator (`input_generation.make_feeds`), symbolic dims at
    GENERATED_DIM: what each input holds is read from its name, shape and dtype (images in
    [0, 1], zero states, masks ...) and from the user's `declarations` (a scalar's values)."""
    from dataclasses import replace

    from workers.engine.input_generation import make_feeds
    from workers.engine.input_planning import plan_inputs
    from workers.engine.inputs import InputPlan, TensorSpec

    concrete = [TensorSpec(spec.name, spec.dtype, concrete_shape(spec)) for spec in specs]
    plan = plan_inputs(None, concrete, declarations)
    # A framework importer's specs are already at their sizes: every dim is fixed here.
    recipes = tuple(
        replace(recipe, shape=spec.shape or ()) for recipe, spec in zip(plan.recipes, concrete, strict=True)
    )
    return make_feeds(InputPlan(recipes, {}), samples=1, seed=seed)[0]


def check_onnx(path: Path) -> None:
    """The full ONNX checker on the converted model; a failure is the converter's fault."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            "conversion_invalid",
            f"The converter produced an ONNX model that the ONNX checker rejects: {first}. "
            "Try another opset, or report the model to Slipway.",
        ) from exc


def run_onnx(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


def compare(
    names: Sequence[str],
    reference: Sequence[np.ndarray],
    converted: Sequence[np.ndarray],
    options: ImportOptions,
) -> tuple[ImportParity, ...]:
    """Per-output max abs/rel error and cosine; raises ModelError("parity_failed") when any
    output is beyond tolerance, with the numbers."""
    import numpy as np

    if len(reference) != len(converted):
        raise ModelError(
            "parity_failed",
            f"The framework model gives {len(reference)} outputs but the ONNX model gives {len(converted)}.",
        )
    results = []
    for name, ref, got in zip(names, reference, converted, strict=True):
        ref = np.asarray(ref)
        got = np.asarray(got)
        if ref.shape != got.shape:
            raise ModelError(
                "parity_failed",
                f"Output '{name}' has shape {list(got.shape)} in ONNX but {list(ref.shape)} in the framework.",
            )
        ref64, got64 = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
        diff = np.abs(ref64 - got64)
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(np.abs(ref64), 1e-6)).max()) if diff.size else 0.0
        norms = float(np.linalg.norm(ref64) * np.linalg.norm(got64))
        cosine = float(np.dot(ref64, got64) / norms) if norms > 0 else (1.0 if max_abs == 0 else 0.0)
        passed = max_abs <= options.max_abs_error or (max_rel <= options.max_rel_error and cosine >= options.min_cosine)
        results.append(ImportParity(name, max_abs, max_rel, cosine, passed))
    failed = [r for r in results if not r.passed]
    if failed:
        worst = failed[0]
        raise ModelError(
            "parity_failed",
            f"The ONNX conversion disagrees with the original on output '{worst.name}': max abs error "
            f"{worst.max_abs_error:.3g} (tolerance {options.max_abs_error:g}), max rel error "
            f"{worst.max_rel_error:.3g} (tolerance {options.max_rel_error:g}), cosine {worst.cosine:.6f} "
            f"(minimum {options.min_cosine:g}). Try another opset or exporter, or loosen the tolerance "
            "if this difference is acceptable.",
        )
    return tuple(results)


def check_parity(
    specs: Sequence[InputSpec],
    onnx_path: Path,
    outputs: Sequence[str],
    reference: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]] | None,
    options: ImportOptions,
    *,
    reference_all: Callable[[list[dict[str, np.ndarray]]], Sequence[Mapping[str, np.ndarray]]] | None = None,
) -> tuple[tuple[ImportParity, ...], tuple[str, ...]]:
    """Run the original (`reference`, one feed set to its outputs by name; or `reference_all`,
    every set at once, where starting the framework costs more than running it) and the ONNX
    model on the same inputs and compare every output: the user's parity inputs when given, else
    `options.parity_samples` generated sets that follow the inputs' names and the user's
    declarations. The worst numbers over all sets are reported. Raises ModelError("parity_failed")."""
    if options.parity_inputs is not None:
        feed_sets = [load_parity_inputs(options.parity_inputs, specs)]
        assumptions: tuple[str, ...] = ()
    else:
        count = max(1, options.parity_samples)
        feed_sets = [generate_inputs(specs, seed=seed, declarations=options.declarations) for seed in range(count)]
        assumptions = (
            f"No parity inputs were uploaded, so the parity check used {count} generated input set(s), each input "
            "filled as its name, shape and declarations suggest (images in [0, 1], token ids, masks ...).",
        )
    if reference_all is not None:
        expected_sets = reference_all(feed_sets)
    else:
        assert reference is not None, "check_parity needs reference or reference_all"
        expected_sets = [reference(feeds) for feeds in feed_sets]
    worst: dict[str, ImportParity] = {}
    for feeds, expected in zip(feed_sets, expected_sets, strict=True):
        missing = [name for name in outputs if name not in expected]
        if missing:
            raise ModelError(
                "parity_failed",
                f"The ONNX model has output(s) {', '.join(missing)} that the original model does not give "
                f"(it gives {', '.join(expected) or 'none'}). Report the model to Slipway.",
            )
        got = run_onnx(onnx_path, feeds)
        for result in compare(outputs, [expected[name] for name in outputs], got, options):
            before = worst.get(result.name)
            worst[result.name] = result if before is None else worse(before, result)
    return tuple(worst[name] for name in outputs), assumptions


def worse(a: ImportParity, b: ImportParity) -> ImportParity:
    """The worst of two comparisons of one output."""
    return ImportParity(
        name=a.name,
        max_abs_error=max(a.max_abs_error, b.max_abs_error),
        max_rel_error=max(a.max_rel_error, b.max_rel_error),
        cosine=min(a.cosine, b.cosine),
        passed=a.passed and b.passed,
    )


def shape_text(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("None" if dim is None else str(dim) for dim in shape) + "]"


def load_parity_inputs(path: Path, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """One array per input from the user's .npz, refusing pickled objects."""
    import numpy as np

    how_to = "Save one array per model input, named after it: numpy.savez(path, <input name>=array, ...)."
    feeds: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [spec.name for spec in specs if spec.name not in data.files]
            if missing:
                raise ModelError(
                    "invalid_parity_inputs",
                    f"The parity inputs file has no array for input(s) {', '.join(missing)} (it holds "
                    f"{', '.join(data.files) or 'nothing'}). {how_to}",
                )
            for spec in specs:
                value = np.asarray(data[spec.name])
                if value.ndim != len(spec.shape) or any(
                    isinstance(dim, int) and dim != size for dim, size in zip(spec.shape, value.shape, strict=True)
                ):
                    raise ModelError(
                        "invalid_parity_inputs",
                        f"The parity array for input '{spec.name}' has shape {list(value.shape)}, which does not "
                        f"fit the input's {shape_text(spec.shape)}. {how_to}",
                    )
                if not np.can_cast(value.dtype, spec.dtype, casting="same_kind"):
                    raise ModelError(
                        "invalid_parity_inputs",
                        f"The parity array for input '{spec.name}' is {value.dtype}, but the input is {spec.dtype}. "
                        f"{how_to}",
                    )
                feeds[spec.name] = value.astype(spec.dtype, copy=False)
    except MEMBER_PARSE_ERRORS as exc:
        raise ModelError(
            "invalid_parity_inputs", f"The parity inputs file could not be read ({_first_line(exc)}). {how_to}"
        ) from exc
    return feeds


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- Tabular importers (scikit-learn, XGBoost, LightGBM) -----------------------------------


def tabular_parity_inputs(specs: Sequence[InputSpec], options: ImportOptions, notes: list[str]) -> dict[str, Any]:
    """Parity feeds: the user's .npz if given, else `parity_samples` generated batches of rows."""
    import numpy as np

    if options.parity_inputs is not None:
        feeds = _load_tabular_parity_inputs(options.parity_inputs, specs)
        notes.append(f"Parity checked on {len(next(iter(feeds.values())))} rows from the uploaded parity inputs.")
        return feeds
    batch_specs = [
        InputSpec(spec.name, (TABULAR_ROWS, *spec.shape[1:]), spec.dtype)
        if spec.shape and not (isinstance(spec.shape[0], int) and spec.shape[0] > 0)
        else spec
        for spec in specs
    ]
    batches = [generate_inputs(batch_specs, seed=seed) for seed in range(max(1, options.parity_samples))]
    feeds = {spec.name: np.concatenate([batch[spec.name] for batch in batches]) for spec in specs}
    rows = len(next(iter(feeds.values())))
    notes.append(
        f"Parity checked on {rows} generated rows (standard normal features); trees may leave branches untested "
        "on such data, so upload parity inputs from real data for a stronger check."
    )
    return feeds


def _load_tabular_parity_inputs(path: Path, specs: Sequence[InputSpec]) -> dict[str, Any]:
    import numpy as np

    how_to = "Save them with numpy.savez(path, <input name>=array, ...), one 2-D array per model input."
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except MEMBER_PARSE_ERRORS as exc:
        raise ModelError(
            "invalid_parity_inputs", f"The parity inputs are not a readable .npz ({exc}). {how_to}"
        ) from exc
    feeds: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in arrays:
            raise ModelError(
                "invalid_parity_inputs",
                f"The parity inputs have no array named '{spec.name}' (found: {', '.join(sorted(arrays)) or 'none'}). "
                f"{how_to}",
            )
        array = arrays[spec.name]
        text = spec.dtype in ("string", "str")
        fits = array.ndim == len(spec.shape) and all(
            not isinstance(want, int) or want <= 0 or want == got
            for want, got in zip(spec.shape, array.shape, strict=True)
        )
        if not fits or (text and array.dtype.kind not in "US"):
            raise ModelError(
                "invalid_parity_inputs",
                f"Parity input '{spec.name}' is {array.dtype} {list(array.shape)}, but the input is declared "
                f"{spec.dtype} {list(spec.shape)}. {how_to}",
            )
        feeds[spec.name] = array.astype(str) if text else array.astype(spec.dtype)
    rows = {len(array) for array in feeds.values()}
    if 0 in rows or len(rows) > 1:
        raise ModelError(
            "invalid_parity_inputs",
            f"The parity inputs must have the same number of rows, at least one, in every array (found "
            f"{', '.join(str(count) for count in sorted(rows))}). {how_to}",
        )
    return feeds


def compare_labels(name: str, reference: Any, converted: Any) -> ImportParity:
    """Predicted labels must be identical; raises ModelError("parity_failed") with the count that differ."""
    import numpy as np

    ref, got = np.asarray(reference).ravel(), np.asarray(converted).ravel()
    if ref.shape != got.shape:
        raise ModelError(
            "parity_failed",
            f"Output '{name}' has {got.size} labels in ONNX but {ref.size} in the framework.",
        )
    numeric = ref.dtype.kind in "biuf" and got.dtype.kind in "biuf"
    same = ref == got if numeric else ref.astype(str) == got.astype(str)
    mismatches = int((~same).sum())
    if mismatches:
        first = int(np.argmin(same))
        raise ModelError(
            "parity_failed",
            f"The ONNX model predicts a different label than the original for {mismatches} of {ref.size} test rows "
            f"(first at row {first}: {got[first]!r} instead of {ref[first]!r}). Try another opset, or report the "
            "model to Slipway.",
        )
    return ImportParity(name, 0.0, 0.0, 1.0, True)


def align_output(reference: Any, converted: Any) -> tuple[Any, Any]:
    """Bring a framework result to the ONNX output's layout: [n] vs [n, 1], or a binary
    classifier's positive-class column when the framework gives only that."""
    import numpy as np

    ref, got = np.asarray(reference), np.asarray(converted)
    if ref.shape != got.shape and ref.size == got.size:
        return ref.reshape(got.shape), got
    if ref.ndim == 1 and got.ndim == 2 and got.shape == (ref.shape[0], 2):
        return ref, got[:, 1]
    return ref, got


def save_onnx(proto: onnx.ModelProto, out_dir: Path) -> tuple[Path, tuple[Path, ...]]:
    """Write model.onnx in out_dir (weights beside it when protobuf can't hold them)."""
    import onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "model.onnx"
    if proto.ByteSize() < _MAX_INLINE_ONNX_BYTES:
        onnx.save_model(proto, str(onnx_path))
        return onnx_path, (onnx_path,)
    data_path = out_dir / "model.onnx.data"
    onnx.save_model(proto, str(onnx_path), save_as_external_data=True, location=data_path.name)
    return onnx_path, (onnx_path, data_path)


def default_opset(proto: onnx.ModelProto) -> int:
    """The model's ai.onnx opset (converters sometimes list it twice)."""
    versions = [entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")]
    return max(versions) if versions else 0


def tabular_report(
    importer: Importer,
    *,
    framework_version: str,
    converter: str,
    converter_version: str,
    method: str,
    proto: onnx.ModelProto,
    onnx_path: Path,
    files: tuple[Path, ...],
    specs: Sequence[InputSpec],
    parity: tuple[ImportParity, ...],
    assumptions: Sequence[str],
    notes: Sequence[str],
    extra_versions: Mapping[str, str] | None = None,
) -> ImportReport:
    """The report of a tabular import; its opset and output names are those of `proto`."""
    import onnx
    import onnxruntime

    return ImportReport(
        format=importer.format,
        framework=importer.framework,
        framework_version=framework_version,
        converter=converter,
        converter_version=converter_version,
        method=method,
        onnx_path=onnx_path,
        files=files,
        opset=default_opset(proto),
        inputs=tuple(specs),
        outputs=tuple(output.name for output in proto.graph.output),
        parity=parity,
        assumptions=tuple(assumptions),
        notes=tuple(notes),
        tool_versions={
            "onnx": str(onnx.__version__),
            "onnxruntime": str(onnxruntime.__version__),
            **(extra_versions or {}),
        },
    )
