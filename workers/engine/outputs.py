"""What each output of a model is, so that parity judges it by metrics that fit it.

A whole-output statistic can hide a part that collapsed: a detector's class scores in [0, 1]
beside box coordinates in pixels keep a cosine of 0.999 when every score went to zero. So each
output has a kind (`OUTPUT_KINDS`) and, for a detection head, a layout saying which columns are
boxes and which are scores. The kind comes from the upload (`parse_output_declarations`:
declared) or, where nothing was declared, from the graph (`propose_output_semantics`:
proposed, with the reason), and parity (workers/engine/parity.py) judges each output by it:
top-k for classifiers, decoded and matched detections for detection heads, per-row cosine for
embeddings, per-pixel class agreement for segmentation maps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from workers.engine.errors import ModelError

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto

OUTPUT_KINDS = ("classifier", "detection", "embedding", "segmentation", "regression", "raw")
BOX_FORMATS = ("cxcywh", "xyxy", "xywh")

# Ops that move or rename values without computing new ones: a proposal looks through them.
_PASS_THROUGH = {"Identity", "Cast", "Flatten", "Squeeze", "Unsqueeze", "Reshape", "Transpose"}


@dataclass(frozen=True)
class DetectionLayout:
    """Where a detection head keeps its boxes and scores along `axis` (the feature axis; the
    others but the batch axis 0 enumerate candidate detections).

    Columns are half-open ranges [start, stop). `objectness` is the column of a YOLOv5-style
    object score that multiplies the class scores, if any. Decoding keeps candidates whose best
    class score reaches `score_threshold`, then suppresses overlaps above `iou_threshold` per
    class (NMS); a variant's detection matches the original's when the class is the same and
    the boxes overlap by at least `match_iou`.
    """

    axis: int = -1
    boxes: tuple[int, int] = (0, 4)
    scores: tuple[int, int] = (4, 5)
    box_format: str = "cxcywh"
    objectness: int | None = None
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    match_iou: float = 0.5
    max_detections: int = 300

    def part_of(self, column: int) -> str:
        """The name of the part a column belongs to, as a sentence says it."""
        if self.boxes[0] <= column < self.boxes[1]:
            return "box"
        if self.objectness is not None and column == self.objectness:
            return "objectness"
        if self.scores[0] <= column < self.scores[1]:
            return "class-score"
        return "other"


@dataclass(frozen=True)
class OutputSemantics:
    """What one output is (`kind`), where that came from (`source`: declared at upload,
    proposed by inspection, or assumed), why, and the kind's layout."""

    name: str
    kind: str
    source: str = "declared"
    why: str = ""
    axis: int = -1  # the class axis of a classifier or segmentation map, the feature axis of an embedding
    top_k: int = 5
    detection: DetectionLayout | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.detection is None:
            data.pop("detection")
        return data


@dataclass(frozen=True)
class _Field:
    kinds: tuple[str, ...]
    check: Any = None
    help: str = ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _column_range(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(_is_int(v) and v >= 0 for v in value)
        and value[0] < value[1]
    )


_FIELDS: dict[str, _Field] = {
    "kind": _Field(OUTPUT_KINDS),
    "axis": _Field(OUTPUT_KINDS, _is_int, "an integer axis (negative counts from the end)"),
    "top_k": _Field(("classifier",), lambda v: _is_int(v) and v >= 1, "a whole number of 1 or more"),
    "boxes": _Field(("detection",), _column_range, "[start, stop] columns, e.g. [0, 4]"),
    "scores": _Field(("detection",), _column_range, "[start, stop] columns, e.g. [4, 84]"),
    "box_format": _Field(("detection",), lambda v: v in BOX_FORMATS, f"one of {', '.join(BOX_FORMATS)}"),
    "objectness": _Field(("detection",), lambda v: v is None or (_is_int(v) and v >= 0), "a column number or null"),
    "score_threshold": _Field(("detection",), lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "iou_threshold": _Field(("detection",), lambda v: _is_number(v) and 0 < v <= 1, "a number above 0, up to 1"),
    "match_iou": _Field(("detection",), lambda v: _is_number(v) and 0 < v <= 1, "a number above 0, up to 1"),
}

_EXAMPLE = (
    '{"output0": {"kind": "detection", "boxes": [0, 4], "scores": [4, 84], "box_format": "cxcywh"}, '
    '"logits": {"kind": "classifier"}}'
)


def parse_output_declarations(data: Any) -> dict[str, OutputSemantics]:
    """Output declarations as given at upload: {output name: {"kind": ..., layout...}}.

    Raises ModelError("invalid_output_declarations") with a sentence naming the output and the
    field for anything that is not a known kind, field or value. Whether a layout fits the
    output's shape is checked against the model by `check_declarations_fit`.
    """

    def bad(problem: str) -> ModelError:
        return ModelError("invalid_output_declarations", f"{problem} Declare outputs like {_EXAMPLE}.")

    if data in (None, "", {}):
        return {}
    if not isinstance(data, Mapping):
        raise bad("The output declarations must be a JSON object keyed by output name.")
    declared: dict[str, OutputSemantics] = {}
    for name, spec in data.items():
        if not isinstance(spec, Mapping):
            raise bad(f"The declaration of output '{name}' must be an object with a \"kind\".")
        kind = spec.get("kind")
        if kind not in OUTPUT_KINDS:
            raise bad(f"Output '{name}' has kind {kind!r}; the kinds are {', '.join(OUTPUT_KINDS)}.")
        for key, value in spec.items():
            rule = _FIELDS.get(key)
            if rule is None or kind not in rule.kinds:
                allowed = sorted(k for k, r in _FIELDS.items() if kind in r.kinds)
                raise bad(f"Output '{name}' ({kind}) has no setting '{key}'; its settings are {', '.join(allowed)}.")
            if rule.check is not None and not rule.check(value):
                raise bad(f"Output '{name}' has {key} = {value!r}; it must be {rule.help}.")
        detection = None
        if kind == "detection":
            if "scores" not in spec:
                raise bad(
                    f"Output '{name}' is declared a detection head without \"scores\": say which columns hold them."
                )
            detection = DetectionLayout(
                axis=int(spec.get("axis", -1)),
                boxes=tuple(spec.get("boxes", (0, 4))),
                scores=tuple(spec["scores"]),
                box_format=str(spec.get("box_format", "cxcywh")),
                objectness=spec.get("objectness"),
                score_threshold=float(spec.get("score_threshold", 0.25)),
                iou_threshold=float(spec.get("iou_threshold", 0.45)),
                match_iou=float(spec.get("match_iou", 0.5)),
            )
            _check_layout(name, detection, bad)
        declared[str(name)] = OutputSemantics(
            name=str(name),
            kind=kind,
            source="declared",
            why="declared at upload",
            axis=int(spec.get("axis", 1 if kind == "segmentation" else -1)),
            top_k=int(spec.get("top_k", 5)),
            detection=detection,
        )
    return declared


def _check_layout(name: str, layout: DetectionLayout, bad: Any) -> None:
    if layout.boxes[1] - layout.boxes[0] != 4:
        raise bad(f"Output '{name}' declares boxes in columns {list(layout.boxes)}: a box takes exactly 4 columns.")
    taken = [set(range(*layout.boxes)), set(range(*layout.scores))]
    if layout.objectness is not None:
        taken.append({layout.objectness})
    for i, a in enumerate(taken):
        for b in taken[i + 1 :]:
            if a & b:
                raise bad(f"Output '{name}' declares boxes, scores and objectness in overlapping columns.")


def check_declarations_fit(
    declared: Mapping[str, OutputSemantics], outputs: Sequence[tuple[str, Sequence[Any] | None]]
) -> None:
    """Check declarations against the model's outputs ((name, shape) pairs, dims ints or
    symbolic names): every declared output exists, its axis is within its rank, and a
    detection layout's columns fit the feature axis.

    Raises ModelError("output_declaration_mismatch") naming the output, its shape and what to
    change.
    """
    shapes = {name: shape for name, shape in outputs}
    for name, semantics in declared.items():
        if name not in shapes:
            raise ModelError(
                "output_declaration_mismatch",
                f"Output '{name}' is declared but the model has no such output; its outputs are "
                f"{', '.join(repr(n) for n in shapes) or 'none'}. Declare outputs by these names.",
            )
        shape = shapes[name]
        if shape is None or semantics.kind in ("raw", "regression"):
            continue
        rank = len(shape)
        axis = semantics.detection.axis if semantics.detection else semantics.axis
        if not -rank <= axis < rank or (axis % rank == 0 and semantics.kind != "embedding" and rank > 1):
            raise ModelError(
                "output_declaration_mismatch",
                f"Output '{name}' has shape {list(shape)}, so axis {axis} can't be its "
                f"{'feature' if semantics.detection else 'class'} axis: choose one of 1 to {rank - 1} "
                "(axis 0 is the batch).",
            )
        if semantics.detection is None:
            continue
        size = shape[axis % rank]
        layout = semantics.detection
        last = max(layout.boxes[1], layout.scores[1], (layout.objectness or 0) + 1)
        if isinstance(size, int) and size > 0 and last > size:
            raise ModelError(
                "output_declaration_mismatch",
                f"The declared layout of output '{name}' doesn't fit its shape {list(shape)}: it names columns up to "
                f"{last - 1} but axis {axis % rank} has {size} entries (0 to {size - 1}). Declare boxes, scores and "
                "objectness within those columns, or the axis that holds them.",
            )
        if rank < 2:
            raise ModelError(
                "output_declaration_mismatch",
                f"Output '{name}' has shape {list(shape)}: a detection head needs candidates on one axis and "
                "box and score columns on another.",
            )


def resolve_semantics(
    declared: Mapping[str, OutputSemantics], proposed: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, OutputSemantics]:
    """Declarations win; proposals from inspection (as stored in its report) fill the rest."""
    resolved = semantics_map(proposed)
    resolved.update(declared)
    return resolved


def semantics_map(data: Mapping[str, Any] | None) -> dict[str, OutputSemantics]:
    """Output semantics by name from a report or payload (name -> `OutputSemantics.to_dict()`)."""
    return {name: semantics_from_dict(item) for name, item in (data or {}).items() if isinstance(item, Mapping)}


def semantics_from_dict(data: Mapping[str, Any]) -> OutputSemantics:
    """The inverse of `OutputSemantics.to_dict` (as reports and payloads carry it)."""
    detection = data.get("detection")
    layout = None
    if detection:
        layout = DetectionLayout(
            **{
                **detection,
                "boxes": tuple(detection["boxes"]),
                "scores": tuple(detection["scores"]),
            }
        )
    return OutputSemantics(
        name=str(data["name"]),
        kind=str(data["kind"]),
        source=str(data.get("source", "declared")),
        why=str(data.get("why", "")),
        axis=int(data.get("axis", -1)),
        top_k=int(data.get("top_k", 5)),
        detection=layout,
    )


# --- proposals from the graph ----------------------------------------------------------


@dataclass
class _Graph:
    producers: dict[str, NodeProto] = field(default_factory=dict)
    shapes: dict[str, list[int | str | None]] = field(default_factory=dict)


def propose_output_semantics(model: ModelProto) -> dict[str, OutputSemantics]:
    """What each output of a model (with inferred shapes) looks like it is, and why.

    A Concat whose first 4 columns are one or two box pieces and whose other pieces end in a
    Sigmoid or Softmax is a detection head; an output made by Softmax, or of shape [batch, C],
    is a classifier; [batch, C, H, W] at an input's height and width is a segmentation map; an
    L2-normalised output is an embedding; the rest are raw. A proposal is a guess from the
    graph: the report shows it, and a declaration at upload replaces it.
    """
    graph = _Graph()
    for node in model.graph.node:
        for output in node.output:
            graph.producers[output] = node
    for value in (*model.graph.value_info, *model.graph.output, *model.graph.input):
        graph.shapes[value.name] = _shape_of(value)
    input_spatial = {
        tuple(shape[-2:])
        for value in model.graph.input
        if len(shape := graph.shapes.get(value.name) or []) == 4 and all(isinstance(d, int) for d in shape[-2:])
    }
    proposals: dict[str, OutputSemantics] = {}
    for output in model.graph.output:
        proposals[output.name] = _propose_one(output.name, graph.shapes.get(output.name), graph, input_spatial)
    return proposals


def _shape_of(value: Any) -> list[int | str | None]:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return []
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def _propose_one(
    name: str, shape: list[int | str | None] | None, graph: _Graph, input_spatial: set[tuple[Any, ...]]
) -> OutputSemantics:
    rank = len(shape or [])
    detection = _detection_head(name, graph)
    if detection is not None:
        layout, why = detection
        return OutputSemantics(name, "detection", "proposed", why, axis=layout.axis, detection=layout)
    producer, _ = _producer(name, graph)
    op = producer.op_type if producer is not None else ""
    if op in ("Softmax", "LogSoftmax") and rank >= 2:
        return OutputSemantics(name, "classifier", "proposed", f"made by {op} over its last axis")
    if op == "LpNormalization" or any(word in name.lower() for word in ("embed", "feature_vector")):
        why = "made by LpNormalization" if op == "LpNormalization" else "its name says so"
        return OutputSemantics(name, "embedding", "proposed", why)
    if (
        rank == 4
        and shape is not None
        and tuple(shape[-2:]) in input_spatial
        and isinstance(shape[1], int)
        and 2 <= shape[1] <= 1024
    ):
        return OutputSemantics(
            name, "segmentation", "proposed", f"{shape[1]} channels at the input's height and width", axis=1
        )
    if rank == 2 and shape is not None and isinstance(shape[1], int) and shape[1] >= 2:
        return OutputSemantics(name, "classifier", "proposed", f"shape [batch, {shape[1]}]: scores over classes")
    return OutputSemantics(name, "raw", "proposed", "nothing in the graph says what it is")


def _producer(name: str, graph: _Graph) -> tuple[NodeProto | None, list[NodeProto]]:
    """The node that computes `name`, looking through ops that only move values."""
    chain: list[NodeProto] = []
    node = graph.producers.get(name)
    while node is not None and node.op_type in _PASS_THROUGH and len(chain) < 16:
        chain.append(node)
        node = graph.producers.get(node.input[0]) if node.input else None
    return node, chain


def _detection_head(name: str, graph: _Graph) -> tuple[DetectionLayout, str] | None:
    """A Concat of box pieces (4 columns) and scored pieces (ending in Sigmoid/Softmax), seen
    through Transpose (axes followed) and Identity/Cast."""
    node = graph.producers.get(name)
    perms: list[list[int]] = []
    while node is not None and node.op_type in ("Identity", "Cast", "Transpose") and len(perms) < 8:
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm is None:
                return None
            perms.append(perm)
        node = graph.producers.get(node.input[0]) if node.input else None
    if node is None or node.op_type != "Concat":
        return None
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    rank = len(graph.shapes.get(node.output[0]) or [])
    if rank < 2:
        return None
    axis %= rank
    widths = []
    for piece in node.input:
        shape = graph.shapes.get(piece) or []
        width = shape[axis] if len(shape) == rank else None
        if not isinstance(width, int):
            return None
        widths.append(width)
    scored = [_ends_in_score(piece, graph) for piece in node.input]
    # Leading pieces that add up to the 4 box coordinates, then score pieces.
    total, boxes_end = 0, 0
    while boxes_end < len(widths) and total < 4:
        total += widths[boxes_end]
        boxes_end += 1
    if total != 4 or boxes_end == len(widths) or not all(scored[boxes_end:]):
        return None
    objectness = None
    score_start = 4
    rest = widths[boxes_end:]
    if len(rest) >= 2 and rest[0] == 1:
        objectness, score_start = 4, 5
    score_stop = 4 + sum(rest)
    # Follow the concat axis through the transposes to the output's axis.
    out_axis = axis
    for perm in reversed(perms):
        out_axis = perm.index(out_axis)
    layout = DetectionLayout(axis=out_axis, boxes=(0, 4), scores=(score_start, score_stop), objectness=objectness)
    classes = score_stop - score_start
    why = (
        f"a Concat on axis {out_axis} of 4 box columns"
        + (" and an object score" if objectness is not None else "")
        + f" and {classes} score column{'s' if classes != 1 else ''} that end in a Sigmoid or Softmax"
    )
    return layout, why


def _ends_in_score(name: str, graph: _Graph) -> bool:
    node, _ = _producer(name, graph)
    return node is not None and node.op_type in ("Sigmoid", "Softmax", "HardSigmoid")
