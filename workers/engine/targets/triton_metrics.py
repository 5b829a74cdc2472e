"""Triton's Prometheus metrics, read per model version: where the endpoint is, and which of its
counters Slipway keeps.

Triton serves them at http://<host>:8002/metrics by default (--allow-metrics, --metrics-port),
one series per model and version, labelled model="..." and version="..."; failures are also
split by a `reason` label in newer releases (summed here). The counters
(https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/user_guide/metrics.html):

    nv_inference_request_success / _failure   requests answered / failed
    nv_inference_count, nv_inference_exec_count   inferences (batch items) / model executions
    nv_inference_request_duration_us   cumulative end-to-end time
    nv_inference_queue_duration_us   cumulative time waiting in the scheduler
    nv_inference_compute_{input,infer,output}_duration_us   cumulative compute time

and, with --metrics-config summary_latencies=true, the summary nv_inference_request_summary_us,
whose quantiles cover the server's recent requests.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from workers.engine.targets.base import METRICS_OFF, ModelCounters, ServingMetrics
from workers.engine.targets.prometheus import Exposition, finite, scrape

DEFAULT_METRICS_PORT = 8002

# Triton's metric -> ModelCounters' field.
COUNTERS = {
    "nv_inference_request_success": "request_success",
    "nv_inference_request_failure": "request_failure",
    "nv_inference_count": "inference_count",
    "nv_inference_exec_count": "execution_count",
    "nv_inference_request_duration_us": "request_duration_us",
    "nv_inference_queue_duration_us": "queue_duration_us",
    "nv_inference_compute_input_duration_us": "compute_input_duration_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_duration_us",
    "nv_inference_compute_output_duration_us": "compute_output_duration_us",
}
REQUEST_SUMMARY = "nv_inference_request_summary_us"


def metrics_endpoint(server_url: str, metrics_url: str) -> str:
    """The metrics URL of a Triton server at `server_url`: `metrics_url` when given, "" when it
    is "off", else the server's scheme and host with port 8002 and path /metrics."""
    given = metrics_url.strip()
    if given.lower() == METRICS_OFF:
        return ""
    if given:
        return given
    parts = urlsplit(server_url.strip())
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme or 'http'}://{host}:{DEFAULT_METRICS_PORT}/metrics"


def model_counters(exposition: Exposition) -> tuple[ModelCounters, ...]:
    """Every model version the exposition has Triton counters for, sorted by name and version."""
    values: dict[tuple[str, str], dict[str, float | None]] = {}
    quantiles: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for sample in exposition.samples:
        key = (sample.label("model"), sample.label("version"))
        if not key[0]:
            continue
        field = COUNTERS.get(sample.name)
        if field is not None:
            fields = values.setdefault(key, {})
            value = finite(sample.value)
            if field in fields:
                # several series for one version (failures by reason): their sum; unknown if any is
                before = fields[field]
                fields[field] = None if before is None or value is None else before + value
            else:
                fields[field] = value
        elif sample.name == REQUEST_SUMMARY and sample.label("quantile"):
            try:
                quantile = float(sample.label("quantile"))
            except ValueError:
                continue
            value = finite(sample.value)
            if value is not None:
                quantiles.setdefault(key, []).append((quantile, value))
    return tuple(
        ModelCounters(
            model_name=name,
            model_version=version,
            request_quantiles_us=tuple(sorted(quantiles.get((name, version), ()))),
            **values[(name, version)],
        )
        for name, version in sorted(values)
    )


def read_metrics(url: str, *, headers: dict[str, str], timeout: float) -> ServingMetrics:
    """Fetch and read a Triton metrics endpoint; never raises (`ServingMetrics.error` says what failed)."""
    if not url:
        return ServingMetrics(source="", error="Reading metrics is off for this target (its metrics_url is off).")
    answer = scrape(url, headers=headers, timeout=timeout)
    if answer.exposition is None:
        return ServingMetrics(source=url, error=answer.error)
    notes = tuple(answer.exposition.errors)
    if answer.exposition.skipped > len(notes):
        notes += (f"{answer.exposition.skipped - len(notes)} more lines were skipped.",)
    models = model_counters(answer.exposition)
    if not models and not any(sample.name.startswith("nv_") for sample in answer.exposition.samples):
        return ServingMetrics(
            source=url,
            error=f"{url} answers Prometheus text but without Triton's nv_ metrics; check the target's metrics_url.",
            notes=notes,
        )
    return ServingMetrics(source=url, models=models, notes=notes)
