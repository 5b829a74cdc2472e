"""`slipway gate`: 0 when every gate passes, 1 when one fails, 2 when there is no answer."""

from __future__ import annotations

import copy
import json

from tests.cli.conftest import finished, job, version_in
from tests.cli.fake_api import FakeApi, Reply

VERSION = "/api/v1/versions/17/"
REVIEW = "/api/v1/versions/17/review/"


def _gate(name: str, passed: bool, value: float, threshold: float) -> dict:
    verdict = "within" if passed else "over"
    return {
        "policy_id": 1,
        "name": name,
        "kind": "max_p99_latency",
        "profile": "x86-cpu",
        "passed": passed,
        "value": value,
        "threshold": threshold,
        "message": f"ort-opt: p99 {value} ms at batch 1, concurrency 1, {verdict} {threshold} ms.",
    }


def _review(*gates: dict) -> dict:
    return {"gates": list(gates), "gates_passed": all(g["passed"] for g in gates)}


def test_every_gate_passing_exits_0(api: FakeApi, cli):
    api.add("GET", VERSION, (200, version_in("ready")))
    api.add("GET", REVIEW, (200, _review(_gate("p99 under 1 s", True, 0.049, 1000))))
    result = cli("gate", "17")
    assert result.code == 0, result.err
    assert "pass  p99 under 1 s (max_p99_latency, x86-cpu): 0.049 vs threshold 1000" in result.out
    assert "scorer v3 (id 17) passes every gate." in result.out


def test_a_failing_gate_exits_1_and_says_which(api: FakeApi, cli):
    api.add("GET", VERSION, (200, version_in("ready")))
    api.add(
        "GET", REVIEW, (200, _review(_gate("p99 under 1 s", True, 0.049, 1000), _gate("p99 tiny", False, 0.049, 1e-6)))
    )
    result = cli("gate", "17")
    assert result.code == 1
    assert "FAIL  p99 tiny (max_p99_latency, x86-cpu): 0.049 vs threshold 1e-06 -- ort-opt: p99 0.049 ms" in result.out
    assert "fails 1 of 2 gates" in result.out


def test_the_real_review_fails_one_of_its_two_gates(api: FakeApi, cli):
    real = finished()
    api.add("GET", "/api/v1/versions/1/", (200, real["version"]))
    api.add("GET", "/api/v1/versions/1/review/", (200, real["review"]))
    result = cli("gate", "1", "--json")
    assert result.code == 1
    verdict = json.loads(result.out)
    assert verdict["gates_passed"] is False and [g["passed"] for g in verdict["gates"]] == [True, False]
    assert "FAIL  p99 impossibly fast" in result.err


def test_no_gates_is_a_pass(api: FakeApi, cli):
    api.add("GET", VERSION, (200, version_in("approved")))
    api.add("GET", REVIEW, (200, _review()))
    result = cli("gate", "17")
    assert result.code == 0 and "no gates apply" in result.out


def test_an_unfinished_version_exits_2_and_suggests_wait(api: FakeApi, cli):
    api.add("GET", VERSION, (200, version_in("processing", [job("benchmark", "running", progress=0.5)])))
    result = cli("gate", "17")
    assert result.code == 2
    assert "scorer v3 (id 17) is processing: its pipeline has not finished" in result.err
    assert "slipway gate 17 --wait" in result.err
    assert api.calls("GET", REVIEW) == []


def test_wait_waits_for_the_pipeline_then_gates(api: FakeApi, cli):
    api.add(
        "GET",
        VERSION,
        (200, version_in("processing", [job("parity", "running", progress=0.2)])),
        (200, version_in("ready", [job("parity", "succeeded", progress=1.0)])),
    )
    api.add("GET", REVIEW, (200, _review(_gate("p99 under 1 s", True, 0.049, 1000))))
    result = cli("gate", "17", "--wait", "--timeout", "10")
    assert result.code == 0, result.err
    assert "parity" in result.err and len(api.calls("GET", VERSION)) >= 2


def test_a_failed_pipeline_exits_1_with_its_error(api: FakeApi, cli):
    failed = version_in("failed", [job("validate", "failed", error="onnxruntime could not load the model: bad opset.")])
    api.add("GET", VERSION, (200, failed))
    result = cli("gate", "17")
    assert result.code == 1
    assert "validate (x86-cpu): onnxruntime could not load the model: bad opset." in result.err


def test_a_rerun_in_progress_is_an_error_not_a_verdict(api: FakeApi, cli):
    api.add("GET", VERSION, (200, version_in("ready")))
    api.add(
        "GET",
        REVIEW,
        Reply(
            409,
            {
                "code": "no_evidence",
                "message": "Version 3 of scorer has a pipeline run that is running; evidence exists once its "
                "pipeline has finished successfully.",
                "fields": {},
            },
        ),
    )
    result = cli("gate", "17")
    assert result.code == 2 and "has a pipeline run that is running" in result.err and "--wait" in result.err


def test_model_and_number_are_resolved_across_pages(api: FakeApi, cli):
    page1 = {
        "next": "http://internal-host:8000/api/v1/models/scorer/versions/?cursor=abc&team=vision",
        "previous": None,
        "results": [{"id": 30, "number": 5}, {"id": 29, "number": 4}],
    }
    page2 = {"next": None, "previous": None, "results": [{"id": 17, "number": 3}]}

    def versions(request):
        return (200, page2 if request.query.get("cursor") == "abc" else page1)

    api.add("GET", "/api/v1/models/scorer/versions/", versions)
    api.add("GET", VERSION, (200, version_in("ready")))
    api.add("GET", REVIEW, (200, _review()))
    result = cli("gate", "scorer:3", "--team", "vision")
    assert result.code == 0, result.err
    first, second = api.calls("GET", "/api/v1/models/scorer/versions/")
    assert first.query == {"team": "vision"} and second.query == {"cursor": "abc", "team": "vision"}

    result = cli("gate", "scorer:9")
    assert result.code == 2 and "Model scorer has no version 9 (its latest is 5)." in result.err

    api.add("GET", "/api/v1/versions/30/", (200, {**version_in("ready"), "id": 30, "number": 5}))
    api.add("GET", "/api/v1/versions/30/review/", (200, _review()))
    assert cli("gate", "scorer:latest").code == 0


def test_a_malformed_version_is_a_usage_error(api: FakeApi, cli):
    result = cli("gate", "scorer-3")
    assert result.code == 2
    assert "'scorer-3' does not name a version" in result.err and "MODEL:NUMBER" in result.err
    assert api.requests == []


def test_the_real_review_shapes_are_read(api: FakeApi, cli):
    real = copy.deepcopy(finished())
    real["review"]["gates"] = real["review"]["gates"][:1]
    api.add("GET", "/api/v1/versions/1/", (200, real["version"]))
    api.add("GET", "/api/v1/versions/1/review/", (200, real["review"]))
    result = cli("gate", "1")
    assert result.code == 0
    assert "pass  p99 under 1 s (max_p99_latency, x86-cpu): 0.049 vs threshold 1000" in result.out


NOTHING_MEASURED = (
    "Benchmark: Nothing could be measured on arm-cpu: every benchmark failed, the original model's included. "
    "the original model (onnxruntime): The onnxruntime runtime failed running model.onnx at batch size 1: "
    "Concat: axis 1 sizes differ (20 vs 21)."
)


def _partly_measured() -> dict:
    """Ready for review on x86-cpu; arm-cpu measured nothing (as the server reports it)."""
    return version_in(
        "ready",
        profile_readiness=[
            {"profile": "arm-cpu", "status": "failed", "reason": NOTHING_MEASURED, "step": "benchmark"},
            {"profile": "x86-cpu", "status": "ready", "reason": "", "step": None},
        ],
    )


def test_a_profile_with_nothing_measured_fails_the_gate_with_its_reason_even_without_policies(api: FakeApi, cli):
    api.add("GET", VERSION, (200, _partly_measured()))
    api.add("GET", REVIEW, (200, _review()))
    result = cli("gate", "17")
    assert result.code == 1, result.out
    assert "scorer v3 (id 17) has no measured evidence on arm-cpu:" in result.err
    assert "Concat: axis 1 sizes differ (20 vs 21)." in result.err
    assert "no gates apply" not in result.out


def test_gate_for_one_profile_judges_that_profile_only(api: FakeApi, cli):
    api.add("GET", VERSION, (200, _partly_measured()))
    arm = {**_gate("p99 under 1 s", False, 0, 1000), "profile": "arm-cpu"}
    api.add("GET", REVIEW, (200, _review(_gate("p99 under 1 s", True, 0.049, 1000), arm)))
    measured = cli("gate", "17", "--profile", "x86-cpu")
    assert measured.code == 0, measured.err
    assert "passes every gate" in measured.out and "arm-cpu" not in measured.out

    unmeasured = cli("gate", "17", "--profile", "arm-cpu", "--json")
    assert unmeasured.code == 1
    verdict = json.loads(unmeasured.out)
    assert verdict["gates_passed"] is False and verdict["unmeasured"][0]["reason"] == NOTHING_MEASURED

    unknown = cli("gate", "17", "--profile", "nvidia-gpu")
    assert unknown.code == 2
    assert "was not built for the nvidia-gpu profile; its profiles are arm-cpu, x86-cpu" in unknown.err
