"""A deployment's traffic, errors and latency as its target reports them: rates between the
health check's samples (a server restart never makes a negative rate), what is kept and for
how long, the metrics_url option, who may read GET /deployments/{id}/metrics/, and the
target's health beside "Live". (Against a real Triton server: tests/engine/targets/test_triton_metrics.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.deployments import metrics, targets
from apps.deployments.models import Deployment, DeploymentStatus, ServingTarget, TargetMetricSample
from tests.conftest import client_for
from tests.finished import finished_version
from workers.engine.targets.base import ModelCounters, ServingMetrics
from workers.engine.targets.triton import TritonTarget
from workers.tasks import deployments as tasks


def _at(seconds: float) -> datetime:
    return datetime(2026, 12, 7, 14, 0, tzinfo=timezone.get_current_timezone()) + timedelta(seconds=seconds)


def _reading(seconds: float, success: float, failure: float = 0, duration_us: float = 0, **more: float):
    counters: dict[str, float | None] = dict.fromkeys(metrics.COUNTERS, 0.0)
    counters.update(request_success=success, request_failure=failure, request_duration_us=duration_us, **more)
    return metrics.Reading(_at(seconds), counters, {})


# --- rates -----------------------------------------------------------------------------------


def test_rates_error_rate_and_mean_times_between_two_samples() -> None:
    before = _reading(0, 1000, 10, 5_000_000, queue_duration_us=1_000_000, compute_infer_duration_us=3_000_000)
    after = _reading(60, 1600, 40, 8_000_000, queue_duration_us=1_300_000, compute_infer_duration_us=5_100_000)
    (interval,) = metrics.intervals([before, after])
    figures = interval.figures()
    assert figures["requests"] == 630 and figures["failures"] == 30
    assert figures["requests_per_second"] == pytest.approx(10.5)
    assert figures["failures_per_second"] == pytest.approx(0.5)
    assert figures["error_rate"] == pytest.approx(30 / 630)
    assert figures["mean_latency_ms"] == pytest.approx(3_000_000 / 600 / 1000)  # 5 ms per answered request
    assert figures["mean_queue_ms"] == pytest.approx(0.5)
    assert figures["mean_compute_ms"] == pytest.approx(3.5)
    assert figures["counter_reset"] is False


def test_a_server_restart_between_samples_never_makes_a_negative_rate() -> None:
    readings = [
        _reading(0, 5000, 2, 50_000_000),
        _reading(60, 5300, 2, 53_000_000),
        _reading(120, 40, 0, 200_000),  # restarted: counters began again from zero
        _reading(180, 100, 1, 500_000),
    ]
    series = [item.figures() for item in metrics.intervals(readings)]
    assert [item["counter_reset"] for item in series] == [False, True, False]
    assert [item["requests"] for item in series] == [300, 40, 61]
    assert all(item["requests_per_second"] >= 0 and item["mean_latency_ms"] >= 0 for item in series)
    assert series[1]["mean_latency_ms"] == pytest.approx(5.0)  # 200 ms over the 40 since the restart


def test_idle_and_unexported_counters_give_no_number_rather_than_a_wrong_one() -> None:
    idle = metrics.intervals([_reading(0, 10, 0, 100), _reading(60, 10, 0, 100)])[0].figures()
    assert idle["requests_per_second"] == 0 and idle["error_rate"] is None and idle["mean_latency_ms"] is None
    missing = _reading(60, 20, 0, 200)
    missing.counters["compute_output_duration_us"] = None
    unknown = metrics.intervals([_reading(0, 10, 0, 100), missing])[0].figures()
    assert unknown["mean_compute_ms"] is None and unknown["mean_latency_ms"] == pytest.approx(0.01)
    # two samples at the same moment make no interval
    assert metrics.intervals([_reading(0, 1), _reading(0, 2)]) == []


def test_long_windows_merge_neighbouring_intervals_keeping_the_totals() -> None:
    readings = [_reading(60 * i, 100 * i, 0, 1000 * i) for i in range(1001)]
    series = metrics.intervals(readings)
    thinned = metrics.thinned(series, most=360)
    assert len(thinned) <= 360 and thinned[0].start == series[0].start and thinned[-1].end == series[-1].end
    assert sum(item.deltas["request_success"] or 0 for item in thinned) == 100_000
    assert thinned[0].figures()["requests_per_second"] == pytest.approx(100 / 60)


# --- collection ------------------------------------------------------------------------------


def _target(personas: Any, tmp_path: Any, **changes: Any) -> ServingTarget:
    values: dict[str, Any] = {
        "team": personas.team,
        "user": personas.admin,
        "name": "Edge Triton",
        "profile": "x86-cpu",
        "url": "http://127.0.0.1:8000",
        "repository": str(tmp_path / "repository"),
        "allow_private": True,
        **changes,
    }
    return targets.create_target(**values)


def _live(personas: Any, target: ServingTarget, name: str = "digits", version: int = 3, **fields: Any) -> Deployment:
    built = finished_version(team=personas.team, uploader=personas.owner)
    values: dict[str, Any] = {
        "target": target,
        "version": built,
        "model": built.model,
        "profile": target.profile,
        "variant": "original",
        "triton_model": name,
        "triton_version": version,
        "requested_by": personas.admin,
        "status": DeploymentStatus.LIVE,
        "live_at": timezone.now(),
        **fields,
    }
    return Deployment.objects.create(**values)


def _counters(name: str, version: str, success: float, duration_us: float = 0.0) -> ModelCounters:
    return ModelCounters(
        name,
        version,
        request_success=success,
        request_failure=0,
        inference_count=success,
        execution_count=success,
        request_duration_us=duration_us,
        queue_duration_us=0,
        compute_input_duration_us=0,
        compute_infer_duration_us=duration_us,
        compute_output_duration_us=0,
        request_quantiles_us=((0.5, 900.0), (0.99, 2500.0)),
    )


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> list[ServingMetrics]:
    """A target that answers the health check, and whose metrics are what the test puts here."""
    answers: list[ServingMetrics] = []
    monkeypatch.setattr(tasks, "_health", lambda target: (True, True, "2.60.0", "Live and ready."))
    monkeypatch.setattr(TritonTarget, "metrics", lambda self: answers.pop(0))
    return answers


@pytest.mark.django_db
def test_the_health_check_keeps_samples_of_live_deployments_only(personas, tmp_path, server) -> None:
    target = _target(personas, tmp_path)
    deployment = _live(personas, target)
    source = "http://127.0.0.1:8002/metrics"
    server.append(
        ServingMetrics(
            source,
            (_counters("digits", "3", 100, 500_000), _counters("digits", "2", 9), _counters("foreign", "1", 5)),
        )
    )
    assert tasks.check_target(target.pk) == "healthy"
    kept = TargetMetricSample.objects.get(target=target)
    assert (kept.model_name, kept.model_version, kept.request_success) == ("digits", "3", 100)
    assert kept.request_quantiles_us == {"0.5": 900.0, "0.99": 2500.0}
    target.refresh_from_db()
    assert target.metrics_source == source and target.metrics_detail == "" and target.metrics_sampled_at

    answer = client_for(personas.viewer).get(f"/api/v1/deployments/{deployment.pk}/metrics/").json()
    assert answer["intervals"] == [] and answer["provenance"]["samples"] == 1
    assert answer["detail"] == "One sample so far; rates appear after the next health check, in about 60 s."

    TargetMetricSample.objects.filter(target=target).update(sampled_at=timezone.now() - timedelta(seconds=60))
    server.append(ServingMetrics(source, (_counters("digits", "3", 400, 2_000_000),)))
    tasks.check_target(target.pk)
    answer = client_for(personas.viewer).get(f"/api/v1/deployments/{deployment.pk}/metrics/").json()
    (interval,) = answer["intervals"]
    assert interval["requests"] == 300 and interval["requests_per_second"] == pytest.approx(5, rel=0.01)
    assert interval["mean_latency_ms"] == pytest.approx(5.0)
    assert answer["totals"]["requests"] == 300
    assert answer["latest_quantiles_ms"] == {"0.5": 0.9, "0.99": 2.5}
    assert answer["provenance"]["source"] == f"Triton metrics endpoint {source}"
    assert answer["provenance"]["sampling_interval_seconds"] == 60


@pytest.mark.django_db
def test_an_unreadable_endpoint_is_said_and_the_health_check_still_counts(personas, tmp_path, server) -> None:
    target = _target(personas, tmp_path)
    deployment = _live(personas, target)
    error = "Slipway can't read the metrics endpoint http://127.0.0.1:8002/metrics (Connection refused)."
    server.append(ServingMetrics("http://127.0.0.1:8002/metrics", error=error))
    assert tasks.check_target(target.pk) == "healthy"
    answer = client_for(personas.viewer).get(f"/api/v1/deployments/{deployment.pk}/metrics/").json()
    assert answer["detail"] == f"The last reading of the metrics failed: {error}"
    assert answer["provenance"]["last_error"] == error and answer["target_health"]["healthy"] is True


@pytest.mark.django_db
def test_nothing_is_read_from_a_down_target_or_one_with_nothing_live(personas, tmp_path, server, monkeypatch) -> None:
    target = _target(personas, tmp_path)
    tasks.check_target(target.pk)  # nothing live: the metrics endpoint is not asked
    deployment = _live(personas, target)
    monkeypatch.setattr(tasks, "_health", lambda target: (False, None, "", "Slipway can't reach the server."))
    assert tasks.check_target(target.pk) == "unhealthy"
    assert server == [] and not TargetMetricSample.objects.exists()
    answer = client_for(personas.viewer).get(f"/api/v1/deployments/{deployment.pk}/metrics/").json()
    assert answer["detail"] == "No samples yet: metrics appear after the next health checks, every 60 s."
    assert answer["target_health"]["healthy"] is False and answer["target_health"]["since"]


@pytest.mark.django_db
def test_samples_are_kept_seven_days_and_a_bounded_number_per_target(personas, tmp_path, monkeypatch) -> None:
    target = _target(personas, tmp_path)
    now = timezone.now()
    ages = [timedelta(days=8), timedelta(days=6), timedelta(hours=3), timedelta(minutes=2), timedelta(minutes=1)]
    for age in ages:
        TargetMetricSample.objects.create(target=target, model_name="digits", model_version="3", sampled_at=now - age)
    assert metrics.prune(target, now) == 1
    monkeypatch.setattr(metrics, "MAX_SAMPLES_PER_TARGET", 2)
    assert metrics.prune(target, now) == 2
    kept = sorted(now - s.sampled_at for s in TargetMetricSample.objects.filter(target=target))
    assert kept == [timedelta(minutes=1), timedelta(minutes=2)]


# --- the metrics_url option ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_metrics_url_is_checked_like_the_servers_own(personas, tmp_path, settings) -> None:
    settings.ALLOW_PRIVATE_OUTBOUND = False
    off = _target(personas, tmp_path, options={"metrics_url": "off"}, name="Quiet")
    assert off.options == {"metrics_url": "off"}
    answer = client_for(personas.admin).post(
        "/api/v1/targets/",
        {
            "team": "vision",
            "name": "Bad metrics",
            "profile": "x86-cpu",
            "url": "http://127.0.0.1:8000",
            "repository": str(tmp_path / "bad"),
            "allow_private": True,
            "options": {"metrics_url": "triton:8002/metrics"},
        },
        format="json",
    )
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_options"
    assert "metrics_url must be an http:// or https:// URL" in answer.json()["message"]
    # a public server whose metrics_url points inside the platform's network
    with pytest.raises(Exception) as refused:
        _target(
            personas,
            tmp_path,
            name="Sneaky",
            url="http://93.184.216.34:8000",
            allow_private=False,
            options={"metrics_url": "http://169.254.169.254/latest/meta-data"},
        )
    assert getattr(refused.value, "code", "") == "invalid_options"
    assert "metrics_url can't be used" in str(refused.value) and "link-local" in str(refused.value)


@pytest.mark.django_db
def test_a_metrics_url_off_is_said_instead_of_numbers(personas, tmp_path, server) -> None:
    target = _target(personas, tmp_path, options={"metrics_url": "off"})
    deployment = _live(personas, target)
    assert tasks.check_target(target.pk) == "healthy" and server == []
    answer = client_for(personas.viewer).get(f"/api/v1/deployments/{deployment.pk}/metrics/").json()
    assert answer["detail"] == "Reading metrics is off for this target (its metrics_url option is off)."
    assert answer["provenance"]["source"] == ""


# --- the API ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_the_teams_members_read_a_deployments_metrics(personas, tmp_path) -> None:
    deployment = _live(personas, _target(personas, tmp_path))
    url = f"/api/v1/deployments/{deployment.pk}/metrics/"
    for member in (personas.viewer, personas.owner, personas.approver, personas.admin):
        assert client_for(member).get(url).status_code == 200
    assert client_for(personas.outsider).get(url).status_code == 404
    assert client_for(personas.viewer).get(f"/api/v1/deployments/{deployment.pk + 1000}/metrics/").status_code == 404
    assert client_for(None).get(url).status_code == 401
    refused = client_for(personas.viewer).get(url + "?window=30")
    assert refused.status_code == 400 and "at least 60 seconds, not 30" in refused.json()["message"]
    assert client_for(personas.viewer).get(url + "?window=86400").json()["provenance"]["window_seconds"] == 86400
    # beyond the 7 days samples are kept: what is kept
    assert client_for(personas.viewer).get(url + "?window=9999999").json()["provenance"]["window_seconds"] == 604800


@pytest.mark.django_db
def test_a_kind_without_metrics_says_so(personas, tmp_path) -> None:
    target = _target(personas, tmp_path)
    deployment = _live(personas, target)
    ServingTarget.objects.filter(pk=target.pk).update(kind="mlserver")  # a kind this release has no driver for
    answer = client_for(personas.viewer).get(f"/api/v1/deployments/{deployment.pk}/metrics/").json()
    assert answer["available"] is False and answer["detail"] == "This kind of target reports no metrics."


@pytest.mark.django_db
def test_deployments_carry_their_targets_health_and_since_when(personas, tmp_path) -> None:
    target = _target(personas, tmp_path)
    deployment = _live(personas, target)
    shown = client_for(personas.viewer).get(f"/api/v1/deployments/{deployment.pk}/").json()["target_health"]
    assert shown == {"healthy": None, "ready": None, "checked_at": None, "since": None, "detail": "Not checked yet."}
    targets.record_health(target, healthy=False, ready=None, version="", detail="Slipway can't reach the server.")
    down = client_for(personas.viewer).get("/api/v1/deployments/?status=live").json()["results"][0]["target_health"]
    assert down["healthy"] is False and down["since"] == down["checked_at"]
    assert down["detail"] == "Slipway can't reach the server."
    targets.record_health(target, healthy=False, ready=None, version="", detail="Still down.")
    again = client_for(personas.viewer).get(f"/api/v1/targets/{target.pk}/").json()["health"]
    assert again["changed_at"] == down["since"] and again["checked_at"] != down["since"]
