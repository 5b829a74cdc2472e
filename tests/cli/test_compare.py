"""`slipway compare A B`: the two sides as a table (latency with its interval, throughput,
accuracy per output, op support, size) and every verdict as a sentence.

The bodies in data/comparison_*.json are what `GET /api/v1/compare/` answered for versions built
by tests/measured.py (benchmark points from the engine's own `combine_trials`): the original
model against a 3x faster INT8 variant, and the same variant measured twice.
"""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import load
from tests.cli.fake_api import FakeApi

COMPARE = "/api/v1/compare/"


def _row(out: str, label: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(label))


def test_the_two_sides_side_by_side_with_intervals_and_verdicts(api: FakeApi, cli):
    api.add("GET", COMPARE, (200, load("comparison_faster.json")))
    result = cli("compare", "scorer:1/original", "scorer:2", "--profile", "x86-cpu")
    assert result.code == 0, result.err
    (request,) = api.calls("GET", COMPARE)
    assert request.query == {"a": "scorer:1/original", "b": "scorer:2", "profile": "x86-cpu"}
    lines = result.out.splitlines()
    assert lines[0] == "scorer v2 (ort-int8) against scorer v1 (original) on x86-cpu"
    assert lines[1].startswith("scorer v2 (ort-int8) against scorer v1 (original): 2.84x-2.99x faster by CPU time")
    assert _row(result.out, "variant").split() == ["variant", "original", "(named)", "ort-int8", "(recommended)"]
    # Every latency figure with its 95% interval, and the verdict with its band.
    assert _row(result.out, "p50 latency").split() == [
        "p50", "latency", "2.997", "ms", "[2.994-3.002]", "1.031", "ms", "[1.026-1.037]", "faster", "2.89-2.93x",
    ]  # fmt: skip
    assert "0.9799 ms [0.9651-0.9947]" in _row(result.out, "CPU time / inference *")
    assert _row(result.out, "throughput").split() == [
        "throughput", "333.6/s", "[333.3-333.8]", "970.5/s", "[967.1-973.8]", "higher", "2.90-2.92x",
    ]  # fmt: skip
    # Accuracy per output, each side against its own original.
    assert _row(result.out, "y: cosine").split() == ["y:", "cosine", "1", "0.9995", "further"]
    assert _row(result.out, "y: max abs error").split()[-1] == "further"
    assert "partial; can't run CustomOp" in _row(result.out, "op support")
    assert _row(result.out, "size").split() == ["size", "3.9", "KiB", "1000", "B", "smaller"]
    assert "Verdicts:" in lines
    assert "  2.84x-2.99x faster by CPU time per inference (95% interval from 3 trials x 1,200 samples)." in lines
    assert any(line.startswith("  'y' cosine 1 vs 0.9995: b is further from its original than a") for line in lines)
    assert "  b's file is 0.25x the size of a's (1000 B vs 3.9 KiB), counted exactly from the stored files." in lines
    assert result.err == ""


def test_the_same_variant_measured_twice_reads_no_change(api: FakeApi, cli):
    api.add("GET", COMPARE, (200, load("comparison_same.json")))
    result = cli("compare", "scorer:1", "scorer:2")
    assert result.code == 0, result.err
    assert api.calls("GET", COMPARE)[0].query == {"a": "scorer:1", "b": "scorer:2"}
    for label in ("p50 latency", "p99 latency", "CPU time / inference", "throughput"):
        assert _row(result.out, label).endswith("no change"), label
    for label in ("y: cosine", "y: top-1 agreement", "y: max abs error"):
        assert _row(result.out, label).endswith("same"), label
    assert "faster" not in result.out and "slower" not in result.out
    assert "Accuracy: the same within what parity resolves." in result.out.splitlines()[1]


def test_json_prints_the_comparison_as_the_api_returns_it(api: FakeApi, cli):
    body = load("comparison_faster.json")
    api.add("GET", COMPARE, (200, body))
    result = cli("compare", "17/original", "17/ort-int8", "--team", "vision", "--json")
    assert result.code == 0 and json.loads(result.out) == body
    assert api.calls("GET", COMPARE)[0].query == {"a": "17/original", "b": "17/ort-int8", "team": "vision"}


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (404, "not_found", "There is no model 'fraud-net' in your teams."),
        (400, "bad_ref", "'scorer' (a=) does not name a version or a variant: give a version id (17) ..."),
        (400, "profile_needed", "scorer v1 and scorer v2 were both run on nvidia-gpu, x86-cpu; add profile=<slug>."),
    ],
)
def test_an_api_refusal_is_its_sentence_and_exit_2(api: FakeApi, cli, status, code, message):
    api.add("GET", COMPARE, (status, {"code": code, "message": message, "fields": {}}))
    result = cli("compare", "scorer", "fraud-net:1")
    assert result.code == 2 and result.out == ""
    assert message in result.err


def test_both_sides_are_needed(cli):
    with pytest.raises(SystemExit) as usage:
        cli("compare", "scorer:1")
    assert usage.value.code == 2
