"""The heartbeat of claimed jobs and deployments outlives a database outage (issue 17's kernel)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError

from workers.tasks.heartbeat import Heartbeat, beating


def _wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.parametrize("error", [OperationalError("server closed the connection"), RuntimeError("a bug")])
def test_a_failed_beat_does_not_end_the_beating(error: Exception) -> None:
    calls: list[float] = []

    def beat() -> None:
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise error

    with beating("test", beat, seconds=0.01) as heartbeat:
        _wait_for(lambda: len(calls) >= 5)
    assert heartbeat.failures == 1 and heartbeat.beats >= 4
    assert not heartbeat.is_alive()


def test_the_beat_stops_when_the_block_is_left_even_by_an_exception() -> None:
    beats = threading.Event()
    with pytest.raises(ValueError), beating("test", beats.set, seconds=0.01) as heartbeat:
        _wait_for(beats.is_set)
        raise ValueError("the step failed")
    assert not heartbeat.is_alive()
    count = heartbeat.beats
    time.sleep(0.05)
    assert heartbeat.beats == count


def test_jobs_and_deployments_beat_through_the_same_heartbeat() -> None:
    import workers.tasks.deployments as deployments
    import workers.tasks.pipeline as pipeline

    assert pipeline.Heartbeat is Heartbeat
    assert deployments.beating is beating
    assert not hasattr(pipeline, "_Heartbeat") and not hasattr(deployments, "_Heartbeat")
