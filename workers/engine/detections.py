"""Detections decoded from a detection head and matched between the original and a variant.

A detector is the same model when it finds the same objects, not when its raw tensor has a
high cosine. So each image's candidates are decoded the way a deployment would (best class
score at or above a threshold, class-aware non-maximum suppression), and the variant's
detections are matched to the original's (same class, boxes overlapping by at least an IoU):
recall is the share of the original's detections the variant still finds, precision the share
of the variant's detections that the original also made, and the matched pairs give the
score error and the boxes' overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from workers.engine.outputs import DetectionLayout


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes [n, 4] as x1, y1, x2, y2, scores [n], classes [n]."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class DetectionAgreement:
    """How the variant's detections compare with the original's, over all evidence images."""

    images: int
    reference_detections: int
    variant_detections: int
    matched: int
    recall: float | None  # None when the original made no detections: nothing to find
    precision: float | None  # None when the variant made none
    mean_score_error: float | None
    mean_matched_iou: float | None
    score_threshold: float
    match_iou: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def decode(output: np.ndarray, layout: DetectionLayout) -> list[Detections]:
    """The detections in a head's output, one entry per batch item (axis 0)."""
    import numpy as np

    array = np.asarray(output, dtype=np.float64)
    features = array.shape[layout.axis]
    rows = np.moveaxis(array, layout.axis, -1).reshape(array.shape[0], -1, features)
    return [_decode_rows(item, layout) for item in rows]


def _decode_rows(rows: np.ndarray, layout: DetectionLayout) -> Detections:
    import numpy as np

    finite = np.isfinite(rows).all(axis=1)
    rows = rows[finite]
    scores = rows[:, layout.scores[0] : layout.scores[1]]
    if layout.objectness is not None:
        scores = scores * rows[:, layout.objectness : layout.objectness + 1]
    best = scores.max(axis=1) if scores.size else np.zeros(len(rows))
    classes = scores.argmax(axis=1) if scores.size else np.zeros(len(rows), dtype=np.int64)
    keep = best >= layout.score_threshold
    boxes = _to_xyxy(rows[keep, layout.boxes[0] : layout.boxes[1]], layout.box_format)
    best, classes = best[keep], classes[keep]
    order = np.argsort(-best, kind="stable")[: max(layout.max_detections * 4, layout.max_detections)]
    boxes, best, classes = boxes[order], best[order], classes[order]
    kept = _nms(boxes, best, classes, layout.iou_threshold)[: layout.max_detections]
    return Detections(boxes[kept], best[kept], classes[kept])


def _to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    import numpy as np

    if box_format == "xyxy":
        return boxes
    if box_format == "xywh":
        return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    centre, size = boxes[:, :2], boxes[:, 2:] / 2
    return np.concatenate([centre - size, centre + size], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` with every box in `b` (xyxy)."""
    import numpy as np

    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy class-aware suppression; `boxes` are sorted by descending score. Kept indices."""
    import numpy as np

    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    overlaps = iou_matrix(boxes, boxes)
    same_class = classes[:, None] == classes[None, :]
    suppressed = np.zeros(len(boxes), dtype=bool)
    kept = []
    for index in range(len(boxes)):
        if suppressed[index]:
            continue
        kept.append(index)
        suppressed |= same_class[index] & (overlaps[index] > threshold)
    return np.asarray(kept, dtype=np.int64)


def match(
    reference: Sequence[Detections], variant: Sequence[Detections], layout: DetectionLayout
) -> DetectionAgreement:
    """Match each image's variant detections to the original's, greedily from the highest
    original score: same class, the unmatched variant box of highest IoU at or above
    `layout.match_iou`."""
    import numpy as np

    matched = 0
    score_errors: list[float] = []
    ious: list[float] = []
    for ref, got in zip(reference, variant, strict=True):
        if not len(ref.scores) or not len(got.scores):
            continue
        overlaps = iou_matrix(ref.boxes, got.boxes)
        overlaps[ref.classes[:, None] != got.classes[None, :]] = 0.0
        taken = np.zeros(len(got.scores), dtype=bool)
        for index in np.argsort(-ref.scores, kind="stable"):
            candidates = np.where(taken, -1.0, overlaps[index])
            best = int(np.argmax(candidates))
            if candidates[best] >= layout.match_iou:
                taken[best] = True
                matched += 1
                score_errors.append(abs(float(ref.scores[index]) - float(got.scores[best])))
                ious.append(float(candidates[best]))
    reference_count = sum(len(r.scores) for r in reference)
    variant_count = sum(len(g.scores) for g in variant)
    return DetectionAgreement(
        images=len(reference),
        reference_detections=reference_count,
        variant_detections=variant_count,
        matched=matched,
        recall=matched / reference_count if reference_count else None,
        precision=matched / variant_count if variant_count else None,
        mean_score_error=float(np.mean(score_errors)) if score_errors else None,
        mean_matched_iou=float(np.mean(ious)) if ious else None,
        score_threshold=layout.score_threshold,
        match_iou=layout.match_iou,
    )
