"""Accuracy parity: does an optimized variant still compute what the FP32 model computes?
It is over 600 lines because it is one verdict and reads best whole: the tolerance, the inputs
both sides run on, and every rule that turns two runs' outputs into sentences (per output, per
kind of output, per slice) must agree with one another, and the callers (the pipeline, the
mixed-precision search, Triton's smoke test) use them together.

Every variant of a model runs on the same inputs as the original (the reference), and
each output is compared: max abs error, max rel error, 99th-percentile abs error, cosine
similarity and, for classifier-shaped outputs, top-1 agreement; and each slice of an output
(each index of its last axis, and of its channel axis) on its own, so that a part with small
values (a detector's class scores beside its box coordinates in pixels) can't collapse behind
a whole-output statistic. `Tolerance` says how
close is close enough, and the verdict (`VariantParity`) carries one sentence per
problem, naming the output, the metric, the value and the limit, so that a user (and the
recommendation) can say why a variant was turned down.

The inputs are the user's validation set when there is one (`reference_inputs`), else
generated: that checks that the variant computes the same numbers as the original, not
that it is accurate on real data; only a validation set says that.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.errors import ModelError
from workers.engine.outputs import OutputSemantics

if TYPE_CHECKING:
    import numpy as np

    from workers.engine.backends.base import Session
    from workers.engine.inputs import InputDeclarations, TensorSpec

# Outputs with these words in their name are treated as scores over classes on their last
# axis whatever their rank (for example token logits [batch, sequence, vocabulary]).
CLASSIFIER_NAME_HINTS = ("logit", "prob", "score", "softmax", "class")

# The floor under |reference| in the relative error, so that reference values of zero do
# not divide by zero (the same floor as the import-time parity check).
_REL_ERROR_FLOOR = 1e-6

_MAX_ERROR_TEXT_CHARS = 500


@dataclass(frozen=True)
class Tolerance:
    """How close a variant's outputs must be to the reference's for the variant to pass.

    An output passes outright when every value is within `max_abs_error` of the
    reference: the variant computes the same numbers. Otherwise (quantized and FP16
    variants rarely stay that close) it passes when it keeps the model's behaviour:
    cosine similarity at least `min_cosine`, top-1 agreement at least
    `min_top1_agreement` (classifier-shaped outputs only), and, where set, the max
    relative error within `max_rel_error` and the 99th-percentile abs error within
    `p99_abs_error`. Cosine and top-1 ignore a uniform scale of the outputs; set
    `max_rel_error` or `p99_abs_error` to catch that too. NaN or inf values where the
    reference has none (or the other way round) always fail.

    Whatever the whole output's figures, every slice of it (each index of the last axis, and
    of axis 1 for outputs of rank 3 or more, on axes of 2 to 1024 entries) whose reference
    values vary by more than `max_abs_error` must keep a signal-to-noise ratio (the slice's
    own standard deviation over the RMS of the variant's error on it) of at least
    `min_slice_sqnr_db`: 6 dB means the error is at most half the slice's own variation, so a
    slice that went constant, or was rounded to a few levels, fails on its own.

    Outputs whose kind is known (declared at upload or proposed by inspection; see
    workers/engine/outputs.py) are also judged by what they mean, under the same rule: a
    detection head must still find at least `min_detection_recall` of the original's
    detections, and at least `min_detection_precision` of its detections must be the
    original's; a segmentation map's per-pixel class must agree on `min_top1_agreement` of
    the pixels; each row of an embedding must keep a cosine of `min_cosine`.
    """

    max_abs_error: float = 1e-3
    min_cosine: float = 0.99
    min_top1_agreement: float = 0.99
    max_rel_error: float | None = None
    p99_abs_error: float | None = None
    min_slice_sqnr_db: float = 6.0
    min_detection_recall: float = 0.9
    min_detection_precision: float = 0.9

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            optional = item.name in ("max_rel_error", "p99_abs_error")
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ModelError(
                    "invalid_tolerance",
                    f"The tolerance '{item.name}' must be a finite number{' or null' if optional else ''}, "
                    f"not {value!r}.",
                )
            low, high = (0.0, 1.0) if item.name.startswith("min_") else (0.0, math.inf)
            if item.name == "min_cosine":
                low = -1.0
            if item.name == "min_slice_sqnr_db":
                high = math.inf
            if not low <= value <= high:
                bounds = f"between {low:g} and {high:g}" if high < math.inf else "zero or more"
                raise ModelError("invalid_tolerance", f"The tolerance '{item.name}' must be {bounds}, not {value!r}.")

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Tolerance:
        """The tolerance from a hardware profile's options, then a model's overrides.

        `options` is the profile's whole options dict: its tolerance keys (max_abs_error,
        max_rel_error, min_cosine, min_top1_agreement, p99_abs_error) are read and the
        rest (batch sizes, concurrency ...) belong to other steps. `overrides` holds only
        tolerance keys, each replacing the profile's; null turns an optional limit off.
        Keys not given keep the defaults of `Tolerance`.

        Raises ModelError("invalid_tolerance") for an unknown key in `overrides` or a
        value that is not a number in range.
        """
        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in (options or {}).items() if key in known}
        unknown = sorted(str(key) for key in (overrides or {}) if key not in known)
        if unknown:
            listed = ", ".join(f"'{key}'" for key in unknown)
            raise ModelError(
                "invalid_tolerance",
                f"Unknown tolerance setting {listed}; the settings are {', '.join(sorted(known))}.",
            )
        values.update(overrides or {})
        return cls(**values)


@dataclass(frozen=True)
class OutputComparison:
    """How one output of a variant compares with the reference's, over all inputs.

    Metrics are None when they could not be computed (the output is missing or has
    another shape); `top1_agreement` is None for outputs that are not classifier-shaped.
    The errors and the cosine are computed over the values that are finite in both.
    """

    name: str
    passed: bool
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    p99_abs_error: float | None = None
    cosine: float | None = None
    top1_agreement: float | None = None
    nonfinite_mismatches: int = 0
    reasons: tuple[str, ...] = ()
    # The lowest signal-to-noise ratio (dB) of the slices judged on their own, and where it is.
    worst_slice_sqnr_db: float | None = None
    worst_slice: str | None = None
    # The whole output's signal-to-quantization-noise ratio (dB); None when the error is zero.
    sqnr_db: float | None = None
    # What the output is (outputs.OUTPUT_KINDS), and whether that was declared or proposed.
    kind: str | None = None
    kind_source: str | None = None
    topk_agreement: float | None = None  # classifiers: mean overlap of the top-k classes
    top_k: int | None = None
    detection: dict[str, Any] | None = None  # detection heads: detections.DetectionAgreement
    pixel_agreement: float | None = None  # segmentation maps: share of pixels with the same class
    min_row_cosine: float | None = None  # embeddings: the lowest cosine of one row
    # What could not be judged, and why (say, the original found no detections to match).
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class VariantParity:
    """A variant's verdict: `passed`, and one sentence in `reasons` per problem found."""

    passed: bool
    outputs: tuple[OutputComparison, ...]
    reasons: tuple[str, ...]
    samples: int
    tolerance: Tolerance
    error: str = ""  # what the variant raised, when it could not run

    def to_dict(self) -> dict[str, Any]:
        """The verdict as plain dicts, lists, strings and numbers, ready for JSON."""
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        data["outputs"] = [
            {**output, "reasons": list(output["reasons"]), "notes": list(output["notes"])} for output in data["outputs"]
        ]
        data["notes"] = [note for output in self.outputs for note in output.notes]
        return data


# --- inputs --------------------------------------------------------------------------


def reference_inputs(
    model_path: Path,
    validation: Path | None = None,
    samples: int = 8,
    seed: int = 0,
    *,
    symbolic_dims: Mapping[str, int] | None = None,
    declarations: InputDeclarations | None = None,
) -> list[dict[str, np.ndarray]]:
    """The feeds every variant and the reference run on: at most `samples` of them
    (`evidence_inputs(...).feeds`; see there)."""
    return evidence_inputs(
        model_path, validation, samples, seed, symbolic_dims=symbolic_dims, declarations=declarations
    ).feeds


@dataclass(frozen=True)
class EvidenceInputs:
    """The inputs parity rests on, and the sentence reports carry about them: "your
    validation set, 8 samples" or "generated: image-like 1x3x640x640 in [0, 1] from ..."."""

    feeds: list[dict[str, Any]]
    source: str  # "validation set" | "generated inputs"
    description: str
    assumptions: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """What the parity report says about its inputs."""
        return {
            "samples": len(self.feeds),
            "source": self.source,
            "description": self.description,
            "assumptions": list(self.assumptions),
        }


def evidence_inputs(
    model_path: Path,
    validation: Path | None = None,
    samples: int = 8,
    seed: int = 0,
    *,
    symbolic_dims: Mapping[str, int] | None = None,
    declarations: InputDeclarations | None = None,
) -> EvidenceInputs:
    """The feeds every variant and the reference run on (at most `samples`), and how they were made.

    With `validation` (an .npz holding one array per model input, named like the input,
    samples on each input's batch axis: `input_planning.batch_axes`, or the declared `batch_axis`),
    the feeds are its first samples: one sample per feed, or k per feed for a model with a
    fixed batch of k. The file is checked against the model's inputs like a calibration
    file, and never unpickled.

    Without it, the inputs are generated from `seed` by the engine's one generator
    (`input_planning.plan_inputs` then `input_generation.make_feeds`): image-like tensors in the range the
    model's normalisation expects, token ids within the embedding's vocabulary, masks,
    audio-like signals, zero states, the values a scalar input is compared with, and the
    user's `declarations` above all. Symbolic dims take `symbolic_dims`, else the plan's
    sizes (declared, or typical and a multiple of the network's stride).

    Raises ModelError "validation_mismatch" when an array is missing or has the wrong
    dtype, rank or dims (the sentence names the input and the expected and given
    shapes and dtypes), "validation_invalid" when the file is not a readable .npz of
    plain arrays, "unsupported_input" when an input cannot be generated, and
    "invalid_model" when the model is not ONNX.
    """
    from workers.engine.backends._onnx_graph import load_graph
    from workers.engine.input_generation import make_feeds
    from workers.engine.input_planning import plan_inputs
    from workers.engine.inspection import graph_input_specs

    if samples < 1:
        raise ValueError(f"samples must be at least 1, not {samples}")
    model = load_graph(model_path)
    specs = graph_input_specs(model.graph, numpy_dtypes_only=True)
    if validation is not None:
        feeds = _validation_feeds(validation, specs, samples, declarations)
        return EvidenceInputs(feeds, "validation set", f"your validation set, {len(feeds)} samples")
    plan = plan_inputs(model, specs, declarations)
    sizes = dict(symbolic_dims or {})
    # A size given for the batch dim is the batch, not a dim of the plan's.
    batches = {sizes.pop(symbol) for symbol in plan.batch_symbols if symbol in sizes}
    if len(batches) > 1:
        raise ValueError(f"the batch dims were given different sizes: {sorted(batches)}")
    batch = batches.pop() if batches else 1
    plan = plan.with_dims(sizes) if sizes else plan
    feeds = make_feeds(plan, samples=samples, seed=seed, batch=batch)
    return EvidenceInputs(feeds, "generated inputs", plan.describe(batch), plan.assumptions)


def _validation_feeds(
    path: Path, specs: Sequence[TensorSpec], samples: int, declarations: InputDeclarations | None = None
) -> list[dict[str, np.ndarray]]:
    from workers.engine.calibration import calibration_feeds, load_calibration
    from workers.engine.input_planning import batch_axes

    axes = batch_axes(specs, declarations)
    try:
        arrays = load_calibration(path, specs, axes=axes)
    except ModelError as exc:
        # The same checks as for calibration data; only the file's name for the user differs.
        code = "validation_invalid" if exc.code == "calibration_invalid" else "validation_mismatch"
        raise ModelError(code, exc.message.replace("calibration", "validation")) from None
    return list(itertools.islice(calibration_feeds(arrays, specs, axes), samples))


# --- comparison ----------------------------------------------------------------------


def is_classifier_output(name: str, shape: Sequence[int], dtype: Any) -> bool:
    """Whether an output holds scores over classes on its last axis, so top-1 agreement applies.

    Float outputs only, with at least 2 classes on the last axis, and either of rank 2
    ([batch, classes]) or with a name that says so (containing logit, prob, score,
    softmax or class; for example [batch, sequence, vocabulary] "logits").
    """
    import numpy as np

    if np.dtype(dtype).kind != "f" or len(shape) < 2 or shape[-1] < 2:
        return False
    return len(shape) == 2 or any(hint in name.lower() for hint in CLASSIFIER_NAME_HINTS)


def compare_variant(
    reference_outputs: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    variant_outputs: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
    tolerance: Tolerance,
    semantics: Mapping[str, OutputSemantics] | None = None,
) -> VariantParity:
    """Compare a variant's outputs with the reference's, output by output, under `tolerance`.

    `semantics` says what outputs are (by name): an output with a kind is also judged by the
    metrics of its kind (see `Tolerance`). One without is judged as a raw tensor, with top-1
    agreement where its shape or name says it holds class scores.

    Each argument is one run's outputs (name -> array) or a list of them, one per input
    feed, in the same order. Every output of the reference must be among the variant's
    (extra ones are ignored) with the same shape; values are compared as float64.
    Matching NaNs (and infinities of the same sign) count as equal; a NaN or inf where
    the reference has a finite number, or the other way round, fails the output. A
    missing output or another shape fails the output with a reason; nothing is raised.
    """
    reference_runs = _as_runs(reference_outputs)
    variant_runs = _as_runs(variant_outputs)
    if len(reference_runs) != len(variant_runs):
        reason = f"The variant gave {len(variant_runs)} results for {len(reference_runs)} inputs."
        return VariantParity(False, (), (reason,), len(reference_runs), tolerance)
    names = list(reference_runs[0]) if reference_runs else []
    outputs = tuple(
        _compare_output(
            name,
            [run[name] for run in reference_runs],
            [run.get(name) for run in variant_runs],
            tolerance,
            (semantics or {}).get(name),
        )
        for name in names
    )
    reasons = tuple(reason for output in outputs for reason in output.reasons)
    return VariantParity(not reasons, outputs, reasons, len(reference_runs), tolerance)


def run_session(session: Session, inputs: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Run `session` on every feed in `inputs`; the outputs, one dict per feed. A session that
    runs feeds together (`run_many`: a simulator that builds the model again for each call)
    gets them all at once."""
    run_many = getattr(session, "run_many", None)
    if run_many is not None:
        return list(run_many(list(inputs)))
    return [session.run(dict(feed)) for feed in inputs]


def run_parity(
    reference_session: Session,
    variant_session: Session,
    inputs: Sequence[Mapping[str, np.ndarray]],
    tolerance: Tolerance,
) -> VariantParity:
    """Run the reference and the variant on `inputs` and compare them (`compare_variant`).

    A variant whose run raises fails, with the error's text as its reason. The
    reference's errors are raised: they are not the variant's fault. To check many
    variants, run the reference once with `run_session` and call `compare_variant`.
    """
    reference = run_session(reference_session, inputs)
    try:
        outputs = run_session(variant_session, inputs)
    except Exception as exc:  # any runtime's error means the variant does not run
        text = (str(exc).strip() or type(exc).__name__)[:_MAX_ERROR_TEXT_CHARS]
        reason = f"The variant failed to run on the parity inputs: {text}"
        return VariantParity(False, (), (reason,), len(inputs), tolerance, error=text)
    return compare_variant(reference, outputs, tolerance)


def _as_runs(outputs: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]) -> list[Mapping[str, Any]]:
    return [outputs] if isinstance(outputs, Mapping) else list(outputs)


def _compare_output(
    name: str,
    references: Sequence[Any],
    variants: Sequence[Any],
    tolerance: Tolerance,
    semantics: OutputSemantics | None = None,
) -> OutputComparison:
    import numpy as np

    refs = [np.asarray(ref) for ref in references]
    if any(got is None for got in variants):
        return OutputComparison(name, False, reasons=(f"Output '{name}' is missing from the variant's outputs.",))
    gots = [np.asarray(got) for got in variants]
    for ref, got in zip(refs, gots, strict=True):
        if ref.shape != got.shape:
            reason = (
                f"Output '{name}' has shape {list(got.shape)} in the variant but {list(ref.shape)} in the reference."
            )
            return OutputComparison(name, False, reasons=(reason,))
    if any(array.dtype.kind not in "biuf" for array in (*refs, *gots)):
        return _compare_exactly(name, refs, gots)

    ref_all = np.concatenate([ref.astype(np.float64).ravel() for ref in refs]) if refs else np.zeros(0)
    got_all = np.concatenate([got.astype(np.float64).ravel() for got in gots]) if gots else np.zeros(0)
    both_finite = np.isfinite(ref_all) & np.isfinite(got_all)
    # NaN == NaN and inf == inf (same sign) count as agreeing; anything else non-finite does not.
    same_nonfinite = ~both_finite & ((ref_all == got_all) | (np.isnan(ref_all) & np.isnan(got_all)))
    variant_nonfinite = int(np.count_nonzero(np.isfinite(ref_all) & ~np.isfinite(got_all)))
    other_mismatches = int(np.count_nonzero(~both_finite & ~same_nonfinite)) - variant_nonfinite

    ref_values, got_values = ref_all[both_finite], got_all[both_finite]
    diff = np.abs(ref_values - got_values)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(ref_values), _REL_ERROR_FLOOR)).max()) if diff.size else 0.0
    p99_abs = float(np.percentile(diff, 99)) if diff.size else 0.0
    cosine = _cosine(ref_values, got_values, max_abs)
    noise = float(np.sum((ref_values - got_values) ** 2))
    sqnr = 10 * math.log10(max(float(np.sum(ref_values**2)), 1e-300) / noise) if noise > 0 else None
    kind = _judge_kind(name, refs, gots, tolerance, semantics)
    top1 = kind.top1

    reasons = []
    if variant_nonfinite:
        reasons.append(
            f"Output '{name}' has NaN or inf at {variant_nonfinite} of {ref_all.size} values where "
            "the reference has finite numbers."
        )
    if other_mismatches:
        reasons.append(
            f"Output '{name}' differs from the reference at {other_mismatches} of {ref_all.size} values "
            "where the reference has NaN or inf."
        )
    slices = _SliceVerdict()
    if max_abs > tolerance.max_abs_error:
        # Not the same numbers: then the output must keep the model's behaviour, as a whole
        # and in each of its parts.
        behaviour = _behaviour_problems(name, tolerance, top1, cosine, p99_abs, max_rel)
        behaviour.extend(kind.reasons)
        slices = _judge_slices(name, refs, gots, tolerance, cosine, semantics)
        behaviour.extend(slices.reasons)
        if behaviour:
            reasons.extend(behaviour)
            reasons.append(f"Max abs error on '{name}' is {max_abs:.3g}, above the limit {tolerance.max_abs_error:g}.")
    return OutputComparison(
        name,
        not reasons,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        p99_abs_error=p99_abs,
        cosine=cosine,
        top1_agreement=top1,
        nonfinite_mismatches=variant_nonfinite + other_mismatches,
        reasons=tuple(reasons),
        worst_slice_sqnr_db=slices.worst_sqnr_db,
        worst_slice=slices.worst,
        sqnr_db=round(sqnr, 2) if sqnr is not None else None,
        kind=semantics.kind if semantics else None,
        kind_source=semantics.source if semantics else None,
        topk_agreement=kind.topk,
        top_k=kind.top_k,
        detection=kind.detection,
        pixel_agreement=kind.pixel_agreement,
        min_row_cosine=kind.min_row_cosine,
        notes=kind.notes,
    )


@dataclass(frozen=True)
class _KindVerdict:
    """An output judged by what it is: the figures of its kind and the problems they show."""

    top1: float | None = None
    topk: float | None = None
    top_k: int | None = None
    detection: dict[str, Any] | None = None
    pixel_agreement: float | None = None
    min_row_cosine: float | None = None
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _judge_kind(
    name: str,
    refs: Sequence[np.ndarray],
    gots: Sequence[np.ndarray],
    tolerance: Tolerance,
    semantics: OutputSemantics | None,
) -> _KindVerdict:
    """The metrics that fit the output's kind. Their problems count only when the output is
    not within `max_abs_error` (the caller decides); the figures are always reported."""
    import numpy as np

    if not refs:
        return _KindVerdict()
    kind = semantics.kind if semantics else None
    if kind is None:
        if is_classifier_output(name, refs[0].shape, refs[0].dtype):
            return _KindVerdict(top1=_top1_agreement(refs, gots))
        return _KindVerdict()
    assert semantics is not None
    rank = refs[0].ndim
    if kind == "classifier" and rank >= 1 and refs[0].shape[semantics.axis % rank] >= 2:
        ref_rows, got_rows = _rows(refs, semantics.axis), _rows(gots, semantics.axis)
        top_k = min(semantics.top_k, ref_rows.shape[1])
        return _KindVerdict(
            top1=_top1_agreement([ref_rows], [got_rows]),
            topk=_topk_overlap(ref_rows, got_rows, top_k),
            top_k=top_k,
        )
    if kind == "detection" and semantics.detection is not None:
        return _judge_detections(name, refs, gots, tolerance, semantics)
    if kind == "segmentation" and rank >= 2:
        ref_rows, got_rows = _rows(refs, semantics.axis), _rows(gots, semantics.axis)
        agreement = _top1_agreement([ref_rows], [got_rows])
        reasons: tuple[str, ...] = ()
        if agreement < tolerance.min_top1_agreement:
            reasons = (
                f"The segmentation map '{name}' gives the same class on {agreement:.1%} of the pixels, "
                f"below the minimum {tolerance.min_top1_agreement:.1%}.",
            )
        return _KindVerdict(pixel_agreement=agreement, reasons=reasons)
    if kind == "embedding" and rank >= 1:
        ref_rows, got_rows = _rows(refs, semantics.axis), _rows(gots, semantics.axis)
        norms = np.linalg.norm(ref_rows, axis=1) * np.linalg.norm(got_rows, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cosines = np.where(norms > 0, (ref_rows * got_rows).sum(axis=1) / norms, 1.0)
        finite = np.isfinite(cosines)
        lowest = float(np.clip(cosines[finite], -1, 1).min()) if finite.any() else 1.0
        reasons = ()
        if lowest < tolerance.min_cosine:
            reasons = (
                f"One embedding of '{name}' keeps a cosine of only {lowest:.6g} with the original's, below "
                f"the minimum {tolerance.min_cosine:g} (each vector is judged on its own).",
            )
        return _KindVerdict(min_row_cosine=lowest, reasons=reasons)
    return _KindVerdict()


def _rows(arrays: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """Every position of the arrays as a row over `axis` (classes, channels, features)."""
    import numpy as np

    size = arrays[0].shape[axis]
    return np.concatenate([np.moveaxis(a.astype(np.float64), axis, -1).reshape(-1, size) for a in arrays])


def _topk_overlap(ref_rows: np.ndarray, got_rows: np.ndarray, k: int) -> float:
    """The mean share of the original's top-k classes that are in the variant's top-k."""
    import numpy as np

    finite = np.isfinite(ref_rows).all(axis=1) & np.isfinite(got_rows).all(axis=1)
    if not finite.any():
        return 1.0
    top_ref = np.argsort(-ref_rows[finite], axis=1, kind="stable")[:, :k]
    top_got = np.argsort(-got_rows[finite], axis=1, kind="stable")[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_ref.tolist(), top_got.tolist(), strict=True)]
    return float(np.mean(overlap))


def _judge_detections(
    name: str, refs: Sequence[np.ndarray], gots: Sequence[np.ndarray], tolerance: Tolerance, semantics: OutputSemantics
) -> _KindVerdict:
    from workers.engine.detections import decode, match

    layout = semantics.detection
    assert layout is not None
    reference = [d for ref in refs for d in decode(ref, layout)]
    variant = [d for got in gots for d in decode(got, layout)]
    agreement = match(reference, variant, layout)
    figures = agreement.to_dict()
    if agreement.reference_detections == 0:
        note = (
            f"The original model made no detections on '{name}' (score at least {layout.score_threshold:g}) on the "
            f"{agreement.images} evidence images, so detection matching could not judge this variant: upload a "
            "validation set of real images to check that it still finds the same objects."
        )
        return _KindVerdict(detection=figures, notes=(note,))
    reasons = []
    recall, precision = agreement.recall or 0.0, agreement.precision or 0.0
    if recall < tolerance.min_detection_recall:
        reasons.append(
            f"The variant finds {agreement.matched} of the original's {agreement.reference_detections} detections on "
            f"'{name}' (recall {recall:.1%}, below the minimum {tolerance.min_detection_recall:.1%}; a match is the "
            f"same class at IoU {layout.match_iou:g} or more)."
        )
    if agreement.variant_detections and precision < tolerance.min_detection_precision:
        extra = agreement.variant_detections - agreement.matched
        reasons.append(
            f"{extra} of the variant's {agreement.variant_detections} detections on '{name}' are not the "
            f"original's (precision {precision:.1%}, below the minimum {tolerance.min_detection_precision:.1%})."
        )
    return _KindVerdict(detection=figures, reasons=tuple(reasons))


# Axes judged slice by slice: the last one (columns, classes) and, from rank 3, axis 1
# (channels), when they hold 2 to this many entries.
_SLICED_AXIS_MAX = 1024


@dataclass(frozen=True)
class _SliceVerdict:
    reasons: tuple[str, ...] = ()
    worst_sqnr_db: float | None = None
    worst: str | None = None


def _judge_slices(
    name: str,
    refs: Sequence[np.ndarray],
    gots: Sequence[np.ndarray],
    tolerance: Tolerance,
    cosine: float,
    semantics: OutputSemantics | None = None,
) -> _SliceVerdict:
    """Each slice of the output on its own: a part whose error is as large as its own
    variation fails, however well the whole output agrees. The slices of a detection head's
    feature axis are named by the part they belong to (box, objectness, class-score)."""
    import numpy as np

    shape = refs[0].shape
    rank = len(shape)
    axes = ([rank - 1] + ([1] if rank >= 3 else [])) if rank >= 2 else []
    layout = semantics.detection if semantics is not None else None
    feature_axis = layout.axis % rank if layout is not None and rank else None
    if feature_axis is not None and feature_axis not in axes:
        axes.append(feature_axis)
    reasons: list[str] = []
    worst: tuple[float, str] | None = None
    for axis in axes:
        size = shape[axis]
        if not 2 <= size <= _SLICED_AXIS_MAX:
            continue
        ref = np.concatenate([np.moveaxis(r.astype(np.float64), axis, -1).reshape(-1, size) for r in refs])
        got = np.concatenate([np.moveaxis(g.astype(np.float64), axis, -1).reshape(-1, size) for g in gots])
        rows = np.isfinite(ref).all(axis=1) & np.isfinite(got).all(axis=1)
        ref, got = ref[rows], got[rows]
        if len(ref) < 2:
            continue
        spread = ref.std(axis=0)
        noise = np.sqrt(((got - ref) ** 2).mean(axis=0))
        judged = spread > tolerance.max_abs_error
        if not judged.any():
            continue
        with np.errstate(divide="ignore"):
            sqnr = np.where(noise > 0, 20 * np.log10(spread / np.maximum(noise, 1e-300)), np.inf)
        sqnr = np.where(judged, sqnr, np.inf)
        index = int(np.argmin(sqnr))
        if worst is None or sqnr[index] < worst[0]:
            worst = (float(sqnr[index]), f"axis {axis}, index {index}")
        failing = np.flatnonzero(sqnr < tolerance.min_slice_sqnr_db)
        if failing.size:
            collapsed = int(np.count_nonzero(got.std(axis=0)[failing] <= 0.1 * spread[failing]))
            how = f"; {collapsed} of them went (nearly) constant" if collapsed else ""
            parts = ""
            if layout is not None and axis == feature_axis:
                named: dict[str, list[int]] = {}
                for column in failing:
                    named.setdefault(layout.part_of(int(column)), []).append(int(column))
                parts = ": " + "; ".join(
                    f"{len(columns)} {part} column{'s' if len(columns) != 1 else ''}" for part, columns in named.items()
                )
            reasons.append(
                f"Output '{name}' lost {failing.size} of its {size} slices on axis {axis} "
                f"(index {_index_ranges(failing)}{parts}){how}: their signal-to-noise ratio is down to "
                f"{float(sqnr[failing].min()):.1f} dB, below the minimum {tolerance.min_slice_sqnr_db:g} dB, "
                f"although the whole output's cosine is {cosine:.6g}."
            )
    if worst is None:
        return _SliceVerdict()
    return _SliceVerdict(tuple(reasons), round(worst[0], 2) if math.isfinite(worst[0]) else None, worst[1])


def _index_ranges(indices: Any) -> str:
    """[4, 5, 6, 9] -> "4-6, 9" (at most six ranges, then "...")."""
    ranges: list[str] = []
    for _, group in itertools.groupby(enumerate(int(i) for i in indices), lambda pair: pair[1] - pair[0]):
        members = [value for _, value in group]
        ranges.append(str(members[0]) if len(members) == 1 else f"{members[0]}-{members[-1]}")
    return ", ".join(ranges[:6]) + (", ..." if len(ranges) > 6 else "")


def _compare_exactly(name: str, refs: Sequence[np.ndarray], gots: Sequence[np.ndarray]) -> OutputComparison:
    """Strings, labels held as objects and the like: each value must be the reference's."""
    import numpy as np

    total = sum(ref.size for ref in refs)
    differing = sum(int(np.count_nonzero(ref != got)) for ref, got in zip(refs, gots, strict=True))
    if not differing:
        return OutputComparison(name, True)
    reason = f"Output '{name}' differs from the reference at {differing} of {total} values (compared exactly)."
    return OutputComparison(name, False, reasons=(reason,))


def _behaviour_problems(
    name: str, tolerance: Tolerance, top1: float | None, cosine: float, p99_abs: float, max_rel: float
) -> list[str]:
    problems = []
    if top1 is not None and top1 < tolerance.min_top1_agreement:
        problems.append(
            f"Top-1 agreement on '{name}' is {top1:.1%}, below the minimum {tolerance.min_top1_agreement:.1%}."
        )
    if cosine < tolerance.min_cosine:
        problems.append(f"Cosine similarity on '{name}' is {cosine:.6g}, below the minimum {tolerance.min_cosine:g}.")
    if tolerance.p99_abs_error is not None and p99_abs > tolerance.p99_abs_error:
        problems.append(
            f"The 99th-percentile abs error on '{name}' is {p99_abs:.3g}, above the limit {tolerance.p99_abs_error:g}."
        )
    if tolerance.max_rel_error is not None and max_rel > tolerance.max_rel_error:
        problems.append(f"Max rel error on '{name}' is {max_rel:.3g}, above the limit {tolerance.max_rel_error:g}.")
    return problems


def _cosine(reference: np.ndarray, variant: np.ndarray, max_abs: float) -> float:
    import numpy as np

    norms = float(np.linalg.norm(reference) * np.linalg.norm(variant))
    if norms > 0:
        # Rounding can push the ratio a hair past 1.
        return float(min(1.0, max(-1.0, float(np.dot(reference, variant)) / norms)))
    return 1.0 if max_abs == 0 else 0.0


def _top1_agreement(references: Sequence[np.ndarray], variants: Sequence[np.ndarray]) -> float:
    """The share of rows (every position but the last axis) whose argmax agrees.

    Rows with NaN or inf on either side are left out: the non-finite check reports them.
    """
    import numpy as np

    classes = references[0].shape[-1]
    ref_rows = np.concatenate([ref.reshape(-1, classes).astype(np.float64) for ref in references])
    got_rows = np.concatenate([got.reshape(-1, classes).astype(np.float64) for got in variants])
    finite = np.isfinite(ref_rows).all(axis=1) & np.isfinite(got_rows).all(axis=1)
    if not finite.any():
        return 1.0
    agree = ref_rows[finite].argmax(axis=1) == got_rows[finite].argmax(axis=1)
    return float(agree.mean())
