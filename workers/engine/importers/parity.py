"""Shared pieces of every importer: generated inputs, the ONNX checker, and the parity check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workers.engine.errors import ModelError
from workers.engine.importers.base import ImportOptions, InputSpec, OutputParity

if TYPE_CHECKING:
    import numpy as np

# Symbolic dims get this size in generated inputs (and the report says so).
GENERATED_DIM = 2


def concrete_shape(spec: InputSpec) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else GENERATED_DIM for d in spec.shape)


def generate_inputs(specs: Sequence[InputSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs in a valid range for each dtype: standard normal floats, small non-negative ints
    (valid as indices for embeddings and gathers), random booleans."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = concrete_shape(spec)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 8, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise ModelError(
                "unsupported_input",
                f"Input '{spec.name}' has dtype {spec.dtype}, for which Slipway can't generate test inputs. "
                "Upload parity inputs (.npz) for it.",
            )
    return feeds


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
) -> tuple[OutputParity, ...]:
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
        results.append(OutputParity(name, max_abs, max_rel, cosine, passed))
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
