"""What a deployment's serving target reports about its traffic: sampling the counters (on the
worker, with the periodic health check), keeping them for a bounded time, and turning them
into rates and mean latencies between samples for the API.

A server's counters add up from its start (Triton's nv_inference_*), so a number means
something only as the difference between two readings: requests/s is the success counter's
difference over the seconds between them, the mean latency the duration counter's difference
over the requests'. These are means over each interval, not percentiles. A counter that went
down means the server (or the model version) restarted in between: that interval counts what
the new counters hold, from zero, as Prometheus' rate() does, so a restart never makes a
negative rate.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.deployments.models import Deployment, DeploymentStatus, ServingTarget, TargetMetricSample
from apps.deployments.services import target_settings

# Samples older than this go, and beyond this many per target the oldest go.
RETENTION = timedelta(days=7)
MAX_SAMPLES_PER_TARGET = 100_000
# At most this many points in an answer: longer windows merge neighbouring intervals.
MAX_POINTS = 360
DEFAULT_WINDOW_SECONDS = 3600
METHOD = "means between samples, not percentiles"

# The counters kept, in TargetMetricSample and engine ModelCounters alike.
COUNTERS = (
    "request_success",
    "request_failure",
    "inference_count",
    "execution_count",
    "request_duration_us",
    "queue_duration_us",
    "compute_input_duration_us",
    "compute_infer_duration_us",
    "compute_output_duration_us",
)
# A drop in any of these means the counters started again.
_RESET_SIGNS = ("request_success", "request_failure", "request_duration_us")


def sampling_interval_seconds() -> int:
    """How often targets are checked, and so sampled (SLIPWAY_TARGET_HEALTH_INTERVAL_SECONDS)."""
    return int(settings.TARGET_HEALTH_INTERVAL_SECONDS)


# ---- the worker's side ------------------------------------------------------------------------


def live_series(target: ServingTarget) -> set[tuple[str, str]]:
    """(model name, version) of what is live on the target: the series worth keeping."""
    rows = Deployment.objects.filter(target=target, status=DeploymentStatus.LIVE)
    return {(name, str(version)) for name, version in rows.values_list("triton_model", "triton_version")}


def record_sample(target: ServingTarget, reading: Any, wanted: set[tuple[str, str]]) -> int:
    """Store a driver's `ServingMetrics` reading: one sample per wanted model version it
    reports, the reading's source and error on the target, then the retention. Returns the
    number of samples stored."""
    now = timezone.now()
    rows = [
        TargetMetricSample(
            target=target,
            model_name=counters.model_name[:100],
            model_version=counters.model_version[:20],
            sampled_at=now,
            request_quantiles_us={f"{q:g}": value for q, value in counters.request_quantiles_us},
            **{name: getattr(counters, name) for name in COUNTERS},
        )
        for counters in reading.models
        if (counters.model_name, counters.model_version) in wanted
    ]
    detail = reading.error
    if not detail and not rows and wanted:
        listed = ", ".join(f"{name} v{version}" for name, version in sorted(wanted))
        detail = f"{reading.source} reports no counters for {listed}; the server may not have loaded it."
    with transaction.atomic():
        TargetMetricSample.objects.bulk_create(rows)
        ServingTarget.objects.filter(pk=target.pk).update(
            metrics_sampled_at=now, metrics_source=reading.source[:2000], metrics_detail=detail[:5000]
        )
    prune(target, now)
    return len(rows)


def record_no_metrics(target: ServingTarget, source: str, detail: str) -> None:
    """Say why the target's metrics could not be read this time (nothing is stored)."""
    ServingTarget.objects.filter(pk=target.pk).update(
        metrics_sampled_at=timezone.now(), metrics_source=source[:2000], metrics_detail=detail[:5000]
    )


def prune(target: ServingTarget, now: datetime | None = None) -> int:
    """Delete the target's samples older than RETENTION, and the oldest beyond MAX_SAMPLES_PER_TARGET."""
    now = now or timezone.now()
    samples = TargetMetricSample.objects.filter(target=target)
    deleted, _ = samples.filter(sampled_at__lt=now - RETENTION).delete()
    cutoff = samples.order_by("-sampled_at", "-id").values_list("id", flat=True)[MAX_SAMPLES_PER_TARGET:][:1]
    oldest_kept = list(cutoff)
    if oldest_kept:
        more, _ = samples.filter(id__lte=oldest_kept[0]).delete()
        deleted += more
    return deleted


# ---- from counters to rates --------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One sample's counters at a moment (None: not exported)."""

    at: datetime
    counters: dict[str, float | None]
    quantiles_us: dict[str, float]

    @classmethod
    def of(cls, sample: TargetMetricSample) -> Reading:
        return cls(
            sample.sampled_at,
            {name: getattr(sample, name) for name in COUNTERS},
            dict(sample.request_quantiles_us or {}),
        )


@dataclass(frozen=True)
class Interval:
    """What the server did between two readings: counter differences and `seconds`; `reset`
    when its counters started again in between (then the differences are the new counts)."""

    start: datetime
    end: datetime
    seconds: float
    deltas: dict[str, float | None]
    reset: bool

    def merged(self, later: Interval) -> Interval:
        """This interval and the one right after it, as one."""
        deltas = {
            name: None if value is None or later.deltas[name] is None else value + later.deltas[name]  # type: ignore[operator]
            for name, value in self.deltas.items()
        }
        return Interval(self.start, later.end, self.seconds + later.seconds, deltas, self.reset or later.reset)

    def figures(self) -> dict[str, Any]:
        """The interval as the API shows it: rates per second, error rate, mean milliseconds."""
        d = self.deltas
        success, failure = d["request_success"], d["request_failure"]
        requests = None if success is None else success + (failure or 0.0)
        parts = [d[f"compute_{step}_duration_us"] for step in ("input", "infer", "output")]
        compute = None if any(part is None for part in parts) else sum(part or 0.0 for part in parts)
        return {
            "start": self.start,
            "end": self.end,
            "seconds": round(self.seconds, 3),
            "requests": requests,
            "failures": failure,
            "requests_per_second": _per(requests, self.seconds),
            "failures_per_second": _per(failure, self.seconds),
            "error_rate": _ratio(failure, requests),
            "mean_latency_ms": _ms_per(d["request_duration_us"], success),
            "mean_queue_ms": _ms_per(d["queue_duration_us"], success),
            "mean_compute_ms": _ms_per(compute, success),
            "counter_reset": self.reset,
        }


def _per(value: float | None, seconds: float) -> float | None:
    return None if value is None or seconds <= 0 else value / seconds


def _ratio(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole


def _ms_per(duration_us: float | None, requests: float | None) -> float | None:
    return None if duration_us is None or not requests else duration_us / requests / 1000.0


def intervals(readings: Sequence[Reading]) -> list[Interval]:
    """The intervals between consecutive readings (in time order); a counter that went down
    starts the interval's count again from zero, never a negative difference."""
    out: list[Interval] = []
    for before, after in itertools.pairwise(readings):
        seconds = (after.at - before.at).total_seconds()
        if seconds <= 0:
            continue
        reset = any(
            before.counters[name] is not None
            and after.counters[name] is not None
            and after.counters[name] < before.counters[name]  # type: ignore[operator]
            for name in _RESET_SIGNS
        )
        deltas: dict[str, float | None] = {}
        for name in COUNTERS:
            old, new = before.counters[name], after.counters[name]
            if new is None:
                deltas[name] = None
            elif reset or (old is not None and new < old):
                deltas[name] = new  # since the restart the counter holds only what came after it
            else:
                deltas[name] = None if old is None else new - old
        out.append(Interval(before.at, after.at, seconds, deltas, reset))
    return out


def thinned(series: list[Interval], most: int = MAX_POINTS) -> list[Interval]:
    """At most `most` intervals: neighbours merged in equal groups (sums of their differences)."""
    if len(series) <= most:
        return series
    group = -(-len(series) // most)
    out = []
    for start in range(0, len(series), group):
        merged = series[start]
        for later in series[start + 1 : start + group]:
            merged = merged.merged(later)
        out.append(merged)
    return out


# ---- the API's answer --------------------------------------------------------------------------


def target_health(target: ServingTarget) -> dict[str, Any]:
    """The target's last health check, as deployments show it beside "Live"."""
    return {
        "healthy": target.healthy,
        "ready": target.health_ready,
        "checked_at": target.health_checked_at,
        "since": target.health_changed_at,
        "detail": target.health_detail or ("Not checked yet." if target.health_checked_at is None else ""),
    }


def _endpoint(target: ServingTarget) -> tuple[bool, str]:
    """Whether the target's kind reports metrics, and where it reads them ("" when off)."""
    from workers.engine.targets.base import TargetError
    from workers.engine.targets.registry import DRIVERS

    driver = DRIVERS.get(target.kind)
    endpoint = getattr(driver, "metrics_endpoint", None)
    if driver is None or endpoint is None:
        return False, ""
    try:
        return True, str(endpoint(target_settings(target)))
    except TargetError:
        return True, ""


def deployment_metrics(deployment: Deployment, window_seconds: int = DEFAULT_WINDOW_SECONDS) -> dict[str, Any]:
    """The deployment's traffic, errors and latency on its target over the last `window_seconds`,
    with how they were obtained and the target's last health."""
    target = deployment.target
    name, version = deployment.triton_model, str(deployment.triton_version)
    now = timezone.now()
    since = now - timedelta(seconds=window_seconds)
    reports, endpoint = _endpoint(target)
    samples = list(
        TargetMetricSample.objects.filter(
            target=target, model_name=name, model_version=version, sampled_at__gte=since
        ).order_by("sampled_at", "id")
    )
    readings = [Reading.of(sample) for sample in samples]
    series = intervals(readings)
    total = None
    if series:
        total = series[0]
        for later in series[1:]:
            total = total.merged(later)
    interval = sampling_interval_seconds()
    detail = _why_empty(target, reports, endpoint, len(readings), interval)
    source = target.metrics_source or endpoint
    quantiles = readings[-1].quantiles_us if readings else {}
    return {
        "deployment": deployment.pk,
        "model_name": name,
        "model_version": version,
        "available": reports,
        "detail": detail,
        "intervals": [item.figures() for item in thinned(series)],
        "totals": total.figures() if total is not None else None,
        "latest_quantiles_ms": {key: value / 1000.0 for key, value in sorted(quantiles.items())},
        "provenance": {
            "source": f"Triton metrics endpoint {source}" if reports and source else "",
            "sampling_interval_seconds": interval,
            "samples": len(readings),
            "method": METHOD,
            "window_seconds": window_seconds,
            "first_sample_at": readings[0].at if readings else None,
            "last_sample_at": readings[-1].at if readings else None,
            "last_attempt_at": target.metrics_sampled_at,
            "last_error": target.metrics_detail,
            "quantiles": "The server's own latency quantiles over its recent requests, at the last sample."
            if quantiles
            else "",
        },
        "target_health": target_health(target),
    }


def _why_empty(target: ServingTarget, reports: bool, endpoint: str, count: int, interval: int) -> str:
    """A sentence on why there is no number to show yet ("" when there are intervals)."""
    if not reports:
        return "This kind of target reports no metrics."
    if not endpoint:
        return "Reading metrics is off for this target (its metrics_url option is off)."
    if count >= 2:
        return ""
    if target.metrics_detail:
        return f"The last reading of the metrics failed: {target.metrics_detail}"
    if count == 1:
        return f"One sample so far; rates appear after the next health check, in about {interval} s."
    return f"No samples yet: metrics appear after the next health checks, every {interval} s."
