"""Serving settings from a benchmark sweep: batch sizes, queue delay and instance count.

The benchmark measured the variant at each (batch size, concurrency) point. From those:

- preferred batch: the knee of the throughput curve at the lowest concurrency, the smallest
  batch size reaching `knee_fraction` (90%) of the peak throughput. Larger batches buy
  little throughput for much latency.
- max_batch_size: the largest measured batch size (within the p99 budget, when one is
  given) and at least the knee; Triton forms batches up to it under heavy load.
- queue delay: how long the batcher may wait to fill a batch, half the knee batch's p50
  latency: waiting longer than about one batch's compute time gains nothing. Within a
  p99 budget, never more than the budget's slack at the knee.
- instance count: how concurrency scales at the knee batch (or the nearest measured one):
  the smallest concurrency reaching `knee_fraction` of the best throughput over
  concurrencies. Flat scaling gives 1 instance; each instance serves one request at once.

Overrides the user set win, field by field, and every choice comes with a sentence saying
why, for the deployment's record. Points are `PointResult`s or their JSON, with the keys
of either the benchmark (batch_size, p50_ms, p99_ms) or the recommendation ("batch", "p50",
"p99"), plus concurrency and throughput (inferences per second).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from workers.engine.reports import BenchmarkPoint
from workers.engine.targets.base import DeploymentSpec, DynamicBatching, InstanceGroup, InstanceKind, TargetError
from workers.engine.typed import read

KNEE_FRACTION = 0.9
MAX_INSTANCES = 8


@dataclass(frozen=True)
class SweepPoint:
    """One measured (batch size, concurrency) point."""

    batch_size: int
    concurrency: int
    p50_ms: float
    p99_ms: float
    throughput: float


@dataclass(frozen=True)
class ServingOverrides:
    """Settings the user chose; None leaves the choice to the benchmark."""

    max_batch_size: int | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None
    max_queue_delay_microseconds: int | None = None
    instance_count: int | None = None
    instance_kind: InstanceKind | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> ServingOverrides:
        """Overrides from JSON; TargetError("invalid_overrides") names unknown keys."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(str(key) for key in (data or {}) if key not in known)
        if unknown:
            raise TargetError(
                "invalid_overrides",
                f"Unknown serving setting {', '.join(repr(key) for key in unknown)}; the settings are "
                f"{', '.join(sorted(known))}.",
            )
        values = dict(data or {})
        if values.get("preferred_batch_sizes") is not None:
            values["preferred_batch_sizes"] = tuple(int(size) for size in values["preferred_batch_sizes"])
        return cls(**values)


@dataclass(frozen=True)
class ServingSettings:
    """Batching and instances for a deployment, with one sentence per choice in `reasons`."""

    max_batch_size: int
    dynamic_batching: DynamicBatching | None
    instance_group: InstanceGroup
    reasons: tuple[str, ...]

    def apply(self, spec: DeploymentSpec) -> DeploymentSpec:
        """`spec` with these settings."""
        return replace(
            spec,
            max_batch_size=self.max_batch_size,
            dynamic_batching=self.dynamic_batching,
            instance_group=self.instance_group,
        )


def points_from(items: Iterable[Any]) -> list[SweepPoint]:
    """Sweep points from `PointResult`s, `BenchmarkPoint`s or their stored JSON; points without
    numbers (failed, or not shaped like a point) are left out.

    A point measured with too few samples for a p99 (the benchmark then stores None, with a
    note) keeps its place in the sweep: its slowest request stands in for the p99, which can
    only overstate it. Leaving such points out made the largest batches vanish whenever a busy
    machine timed fewer requests, and the server was configured never to batch."""
    points = []
    for item in items:
        if isinstance(item, Mapping):  # stored JSON; `PointResult`s and `BenchmarkPoint`s read as they are
            item = read(BenchmarkPoint, item)
        if item is None or getattr(item, "error", None):
            continue
        p99 = item.p99_ms if item.p99_ms is not None else item.max_ms
        values = (item.batch_size, item.concurrency, item.p50_ms, p99, item.throughput)
        if any(not isinstance(value, int | float) or not math.isfinite(value) for value in values):
            continue
        batch, concurrency, p50, p99, throughput = values
        if batch >= 1 and concurrency >= 1 and throughput > 0:
            points.append(SweepPoint(int(batch), int(concurrency), float(p50), float(p99), float(throughput)))
    return points


def serving_settings(
    points: Iterable[Any],
    *,
    batchable: bool = True,
    device_kind: InstanceKind = "CPU",
    overrides: ServingOverrides | None = None,
    p99_budget_ms: float | None = None,
    knee_fraction: float = KNEE_FRACTION,
    max_instances: int = MAX_INSTANCES,
) -> ServingSettings:
    """Batching and instance settings for a variant from its benchmark sweep (see the module doc).

    `batchable` is False for a model without a free batch dimension (no batching then).
    Without usable points the defaults stand: no batching, one instance, and a reason
    saying so.
    """
    overrides = overrides or ServingOverrides()
    sweep = points_from(points)
    reasons: list[str] = []
    admissible = [point for point in sweep if p99_budget_ms is None or point.p99_ms <= p99_budget_ms]
    if sweep and not admissible:
        reasons.append(
            f"No measured point keeps p99 within {p99_budget_ms:g} ms; the settings follow the fastest points anyway."
        )
        admissible = sweep
    base = min((point.concurrency for point in admissible), default=1)
    curve = _by_batch([point for point in admissible if point.concurrency == base])

    knee: SweepPoint | None = None
    if batchable and curve:
        peak = max(curve.values(), key=lambda point: point.throughput)
        knee = min(
            (point for point in curve.values() if point.throughput >= knee_fraction * peak.throughput),
            key=lambda point: point.batch_size,
        )
        reasons.append(
            f"Batch {knee.batch_size} reaches {knee.throughput / peak.throughput:.0%} of the peak throughput "
            f"({peak.throughput:.0f}/s at batch {peak.batch_size}, concurrency {base}), so it is the preferred batch."
        )

    # Batching.
    max_batch = 0
    if not batchable:
        reasons.append("The model has no free batch dimension, so the server does not batch requests.")
    elif overrides.max_batch_size is not None:
        max_batch = overrides.max_batch_size
        reasons.append(f"max_batch_size {max_batch} is your setting.")
    elif knee is not None:
        max_batch = max(max(curve), knee.batch_size)
        reasons.append(f"max_batch_size {max_batch} is the largest measured batch size.")
    else:
        reasons.append("The benchmark has no usable points, so the server does not batch requests.")

    batching: DynamicBatching | None = None
    if max_batch > 0:
        if overrides.preferred_batch_sizes is not None:
            preferred = tuple(overrides.preferred_batch_sizes)
            reasons.append(f"Preferred batch sizes {list(preferred)} are your setting.")
        else:
            preferred = (knee.batch_size,) if knee is not None and 1 < knee.batch_size <= max_batch else ()
        if overrides.max_queue_delay_microseconds is not None:
            delay = overrides.max_queue_delay_microseconds
            reasons.append(f"The queue delay of {delay} us is your setting.")
        elif knee is not None:
            delay = round(knee.p50_ms * 1000 / 2)
            why = f"half the p50 latency at batch {knee.batch_size}"
            if p99_budget_ms is not None:
                slack = max(0, round((p99_budget_ms - knee.p99_ms) * 1000))
                if slack < delay:
                    delay, why = slack, f"what the {p99_budget_ms:g} ms p99 budget leaves at batch {knee.batch_size}"
            reasons.append(f"The queue delay is {delay} us, {why}.")
        else:
            delay = 0
        batching = DynamicBatching(preferred, delay)

    # Instances.
    kind: InstanceKind = overrides.instance_kind or device_kind
    if overrides.instance_count is not None:
        count = overrides.instance_count
        reasons.append(f"{count} instance(s) is your setting.")
    else:
        count = _instance_count(admissible, knee, knee_fraction, max_instances, reasons)
    return ServingSettings(max_batch, batching, InstanceGroup(count=count, kind=kind), tuple(reasons))


def _by_batch(points: Iterable[SweepPoint]) -> dict[int, SweepPoint]:
    """The best-throughput point per batch size, in batch order."""
    best: dict[int, SweepPoint] = {}
    for point in points:
        if point.batch_size not in best or point.throughput > best[point.batch_size].throughput:
            best[point.batch_size] = point
    return dict(sorted(best.items()))


def _instance_count(
    points: list[SweepPoint],
    knee: SweepPoint | None,
    knee_fraction: float,
    max_instances: int,
    reasons: list[str],
) -> int:
    batches = sorted({point.batch_size for point in points if point.concurrency > 1})
    if not batches:
        reasons.append("1 instance: the benchmark measured no concurrency above 1.")
        return 1
    target = knee.batch_size if knee is not None else 1
    batch = min(batches, key=lambda size: (abs(size - target), size))
    scaling = {point.concurrency: point for point in points if point.batch_size == batch}
    best = max(scaling.values(), key=lambda point: point.throughput)
    enough = min(
        (point for point in scaling.values() if point.throughput >= knee_fraction * best.throughput),
        key=lambda point: point.concurrency,
    )
    count = max(1, min(enough.concurrency, max_instances))
    base = scaling[min(scaling)]
    gain = best.throughput / base.throughput if base.throughput else 1.0
    if count == 1:
        reasons.append(
            f"1 instance: at batch {batch}, more concurrency gains little ({gain:.2f}x at best), so one instance "
            "keeps the cores for the batch."
        )
    else:
        reasons.append(
            f"{count} instances: at batch {batch}, concurrency {enough.concurrency} reaches "
            f"{enough.throughput / best.throughput:.0%} of the best throughput ({best.throughput:.0f}/s)."
            + (f" Capped at {max_instances}." if enough.concurrency > max_instances else "")
        )
    return count
