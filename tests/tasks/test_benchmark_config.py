"""The benchmark step's configuration: the profile's options, the upload's settings over them,
and the worker-wide caps a small machine sets over both."""

from __future__ import annotations

import pytest

from apps.hardware.models import HardwareProfile
from apps.pipeline import services
from apps.pipeline.models import JobKind
from tests.factories import ModelVersionFactory
from workers.tasks.steps.benchmark import benchmark_config as _benchmark_config

pytestmark = pytest.mark.django_db


def _job(benchmark_settings: dict | None):
    version = ModelVersionFactory(benchmark_settings=benchmark_settings or {})
    profile = HardwareProfile.objects.get(slug="x86-cpu")
    run = services.start_pipeline(
        version, version.created_by, steps=[services.PlannedStep(JobKind.BENCHMARK, "cpu", profile)]
    )
    return run.jobs.get()


def test_three_trials_by_default_and_the_uploads_own_count_over_the_profiles(settings) -> None:
    settings.BENCHMARK_MAX_TRIALS = 0
    settings.BENCHMARK_MAX_SECONDS_PER_POINT = 0
    config = _benchmark_config(_job(None), None)
    assert config.trials == 3 and config.max_seconds_per_point == 5.0
    config = _benchmark_config(_job({"trials": 5, "max_seconds_per_point": 2}), 2**30)
    assert config.trials == 5 and config.max_seconds_per_point == 2.0 and config.memory_limit_bytes == 2**30


def test_the_workers_caps_lower_trials_and_seconds_but_never_raise_them(settings) -> None:
    settings.BENCHMARK_MAX_TRIALS = 2
    settings.BENCHMARK_MAX_SECONDS_PER_POINT = 0.4
    config = _benchmark_config(_job({"trials": 5}), None)
    assert config.trials == 2 and config.max_seconds_per_point == 0.4
    settings.BENCHMARK_MAX_TRIALS = 4
    settings.BENCHMARK_MAX_SECONDS_PER_POINT = 9
    config = _benchmark_config(_job({"trials": 3, "max_seconds_per_point": 1}), None)
    assert config.trials == 3 and config.max_seconds_per_point == 1.0
