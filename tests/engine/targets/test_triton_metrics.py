"""A real Triton server's metrics (python backend, CPU, metrics on a second loopback port): the
counters Slipway reads move with the requests sent, and the platform's health check turns two
samples into the rates the API answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.engine.targets.conftest import make_mlp, mlp_feeds, mlp_spec
from tests.engine.targets.test_triton_server import _infer
from tests.triton_server import TritonServer, running_triton_server, triton_skip_reason
from workers.engine.targets.base import ModelCounters, TargetSettings
from workers.engine.targets.triton import TritonTarget

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def metered_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A tritonserver with its metrics endpoint on (and Triton's latency summaries)."""
    reason = triton_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("triton-metrics")
    repository = root / "repository"
    repository.mkdir()
    with running_triton_server(
        repository, root / "server", metrics=True, extra_args=["--metrics-config=summary_latencies=true"]
    ) as server:
        yield server


@pytest.fixture(scope="module")
def metered(metered_server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> TargetSettings:
    """The server's settings, with "metered" version 1 deployed (its smoke tests sent 2 requests)."""
    settings = TargetSettings(
        name="metered-triton",
        url=metered_server.url,
        repository=str(metered_server.repository),
        backend_mode="python",
        request_timeout_seconds=30,
        load_timeout_seconds=60,
        metrics_url=metered_server.metrics_url,
    )
    model = make_mlp(tmp_path_factory.mktemp("metered") / "mlp.onnx")
    TritonTarget(settings).deploy(mlp_spec(model, 1, name="metered"))
    return settings


def _counters(settings: TargetSettings) -> ModelCounters:
    reading = TritonTarget(settings).metrics()
    assert reading.error == "" and reading.source == settings.metrics_url
    found = [c for c in reading.models if (c.model_name, c.model_version) == ("metered", "1")]
    assert found, f"no counters for metered v1 in {reading.models}"
    return found[0]


def test_the_counters_move_with_the_requests_sent(metered: TargetSettings) -> None:
    from apps.deployments.metrics import COUNTERS, Reading, intervals

    before = _counters(metered)
    assert before.request_success is not None and before.request_success >= 2  # the live smoke test
    for feed in mlp_feeds(count=5, batch=2):
        _infer(metered.url, "metered", feed["x"])
    after = _counters(metered)

    assert after.request_success == before.request_success + 5
    assert after.request_failure == before.request_failure == 0
    assert after.inference_count == (before.inference_count or 0) + 10  # 5 requests of batch 2
    assert 1 <= (after.execution_count or 0) - (before.execution_count or 0) <= 5
    assert (after.request_duration_us or 0) > (before.request_duration_us or 0)
    assert dict(after.request_quantiles_us).keys() >= {0.5, 0.99}

    # ten seconds apart, as two health checks would have read them
    now = timezone.now()
    readings = [
        Reading(at, {name: getattr(counters, name) for name in COUNTERS}, {})
        for at, counters in ((now - timedelta(seconds=10), before), (now, after))
    ]
    (interval,) = intervals(readings)
    figures = interval.figures()
    assert figures["requests"] == 5 and figures["failures"] == 0 and figures["error_rate"] == 0
    assert figures["requests_per_second"] == pytest.approx(0.5)
    # each request took some time on this CPU, and nothing like seconds
    assert 0 < figures["mean_latency_ms"] < 5000
    assert 0 <= figures["mean_queue_ms"] <= figures["mean_latency_ms"]
    assert 0 < figures["mean_compute_ms"] <= figures["mean_latency_ms"]


@pytest.mark.django_db
def test_the_health_check_samples_a_live_deployment_and_the_api_answers_its_rates(
    metered: TargetSettings, metered_server: TritonServer, personas: Any
) -> None:
    from apps.deployments import targets
    from apps.deployments.models import Deployment, DeploymentStatus, TargetMetricSample
    from tests.conftest import client_for
    from tests.finished import finished_version
    from workers.tasks import deployments as tasks

    target = targets.create_target(
        team=personas.team,
        user=personas.admin,
        name="Metered",
        profile="x86-cpu",
        url=metered_server.url,
        repository=str(metered_server.repository),
        backend_mode="python",
        options={"metrics_url": metered_server.metrics_url},
        allow_private=True,
    )
    version = finished_version(team=personas.team, uploader=personas.owner)
    deployment = Deployment.objects.create(
        target=target,
        version=version,
        model=version.model,
        profile=target.profile,
        variant="original",
        triton_model="metered",
        triton_version=1,
        requested_by=personas.admin,
        status=DeploymentStatus.LIVE,
    )

    assert tasks.check_target(target.pk) == "healthy"
    assert TargetMetricSample.objects.filter(target=target).count() == 1
    for feed in mlp_feeds(count=3, batch=1):
        _infer(metered.url, "metered", feed["x"])
    TargetMetricSample.objects.filter(target=target).update(sampled_at=timezone.now() - timedelta(seconds=30))
    assert tasks.check_target(target.pk) == "healthy"

    answer = client_for(personas.viewer).get(f"/api/v1/deployments/{deployment.pk}/metrics/").json()
    assert answer["detail"] == "" and answer["available"] is True
    (interval,) = answer["intervals"]
    assert interval["requests"] == 3 and interval["failures"] == 0 and interval["counter_reset"] is False
    assert interval["requests_per_second"] == pytest.approx(3 / interval["seconds"], rel=1e-3)
    assert 29 < interval["seconds"] < 60
    assert interval["mean_latency_ms"] > 0
    assert answer["provenance"]["source"] == f"Triton metrics endpoint {metered_server.metrics_url}"
    assert answer["provenance"]["samples"] == 2
    assert answer["provenance"]["method"] == "means between samples, not percentiles"
    assert answer["latest_quantiles_ms"]["0.5"] > 0
    assert answer["target_health"]["healthy"] is True and answer["target_health"]["since"]
