"""Comparison on demand (issue 15, item 5): `GET /api/v1/compare/` and the version's read-time
"previous approved version" card.

The versions here carry evidence in the shapes the pipeline stores (tests/measured.py):
benchmark points with their 95 % intervals from the engine's own `combine_trials`, parity per
output, op-support reports and the engine's recommendation.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.approvals import services as approvals
from apps.pipeline.compare import REF_HELP
from apps.pipeline.comparison import accuracy_change
from apps.registry.models import ModelVersion
from tests.conftest import client_for
from tests.factories import RegisteredModelFactory
from tests.measured import measured_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def scorer(personas: Any) -> Any:
    return RegisteredModelFactory(team=personas.team, name="scorer", slug="scorer", created_by=personas.owner)


def _version(personas: Any, model: Any, **kwargs: Any) -> ModelVersion:
    return measured_version(team=personas.team, uploader=personas.owner, model=model, **kwargs)


def _compare(client: APIClient, **params: str) -> Any:
    return client.get("/api/v1/compare/", params)


def test_two_versions_compared_on_a_profile(personas, scorer):
    _version(personas, scorer, variants={"ort-int8": {"ms": 2.0, "cosine": 0.999, "max_abs": 0.02, "size": 4000}})
    _version(
        personas, scorer, seed=10, variants={"ort-int8": {"ms": 1.0, "cosine": 0.999, "max_abs": 0.02, "size": 1000}}
    )
    response = _compare(client_for(personas.viewer), a="scorer:1", b="scorer:2", profile="x86-cpu")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["profile"] == "x86-cpu"
    a, b = body["a"], body["b"]
    assert (a["number"], a["variant"], a["chosen"]) == (1, "ort-int8", "recommended")
    assert (b["number"], b["variant"], b["chosen"]) == (2, "ort-int8", "recommended")
    # Every latency figure carries its interval and what it rests on.
    for side in (a, b):
        for statistic in ("p50_ms", "p99_ms", "cpu_ms"):
            figure = side["latency"][statistic]
            assert figure["low"] <= figure["value"] <= figure["high"] and figure["low"] < figure["high"], statistic
            assert figure["samples"] == 1200 and figure["trials"] == 3
            assert figure["how"] == "95% interval from 3 trials x 1,200 samples"
        assert side["throughput"]["low"] < side["throughput"]["value"] < side["throughput"]["high"]
        assert side["point"] == {"batch": 1, "concurrency": 1}
        assert side["measured_on"] == "bench-host, Test CPU @ 3.0GHz" and side["runtime_version"] == "1.20.1"
        assert side["outputs"][0]["name"] == "y" and side["outputs"][0]["cosine"] == 0.999
        assert side["support_verdict"] == "full"
    # The runs were single-threaded on a CPU: CPU time per inference leads, and it halved.
    assert body["headline"] == "cpu_ms"
    verdicts = {change["what"]: change for change in body["latency"]}
    assert verdicts["cpu_ms"]["verdict"] == "faster" and 1.8 < verdicts["cpu_ms"]["ratio"] < 2.2
    assert verdicts["cpu_ms"]["ratio_low"] > 1.05
    assert verdicts["p50_ms"]["verdict"] == "faster"
    assert body["throughput"]["verdict"] == "higher" and "higher throughput" in body["throughput"]["sentence"]
    assert body["summary"].startswith("scorer v2 (ort-int8) against scorer v1 (ort-int8): ")
    assert "faster by CPU time per inference" in body["summary"]
    assert "Accuracy: the same within what parity resolves." in body["summary"]
    assert body["size"]["verdict"] == "smaller" and body["size"]["ratio"] == 4.0
    assert body["support"]["verdict"] == "same"


def test_the_only_common_profile_is_chosen_and_several_need_one_named(personas, scorer):
    spec = {"ort-int8": {"ms": 2.0, "cosine": 0.999, "max_abs": 0.02, "size": 4000}}
    _version(personas, scorer, variants=spec)
    _version(personas, scorer, variants=spec, profiles=("x86-cpu", "nvidia-gpu"))
    client = client_for(personas.viewer)
    assert _compare(client, a="scorer:1", b="scorer:2").json()["profile"] == "x86-cpu"
    _version(personas, scorer, variants=spec, profiles=("x86-cpu", "nvidia-gpu"))
    needed = _compare(client, a="scorer:2", b="scorer:latest")
    assert needed.status_code == 400 and needed.json()["code"] == "profile_needed"
    assert "add profile=<slug>" in needed.json()["message"]
    not_run = _compare(client, a="scorer:1", b="scorer:2", profile="nvidia-gpu")
    assert not_run.status_code == 400
    assert not_run.json()["message"].startswith("scorer v1 was not run on profile nvidia-gpu (it was run on x86-cpu)")


def test_a_variant_against_the_original_model(personas, scorer):
    version = _version(
        personas,
        scorer,
        baseline_ms=3.0,
        variants={
            "ort-opt": {"ms": 2.9, "cosine": 0.9999999, "max_abs": 1e-6, "size": 3900, "precision": "fp32"},
            "ort-int8": {"ms": 1.0, "cosine": 0.999, "max_abs": 0.02, "size": 1000, "top1": 0.875},
        },
        unsupported=("CustomOp",),
    )
    response = _compare(client_for(personas.owner), a=f"{version.pk}/original", b=f"{version.pk}/ort-int8")
    assert response.status_code == 200, response.json()
    body = response.json()
    a, b = body["a"], body["b"]
    assert (a["variant"], a["chosen"], a["backend"], a["precision"]) == (
        "original",
        "named",
        "onnxruntime",
        "as uploaded",
    )
    assert a["size_bytes"] == 4000 and a["parity_passed"] is True
    assert a["outputs"][0]["cosine"] == 1.0 and a["outputs"][0]["max_abs_error"] == 0.0
    assert (b["variant"], b["precision"], b["size_bytes"]) == ("ort-int8", "int8", 1000)
    assert b["unsupported_ops"] == ["CustomOp"] and b["support_verdict"] == "partial"
    assert {c["what"]: c["verdict"] for c in body["latency"]}["cpu_ms"] == "faster"
    accuracy = {c["what"]: c for c in body["accuracy"]}
    # 1 - 0.999 = 1e-3 from the original, far beyond what 8 samples resolve around it.
    assert accuracy["y:cosine"]["verdict"] == "further"
    assert "b is further from its original than a" in accuracy["y:cosine"]["sentence"]
    # The original agrees with itself on the top-1 class, the variant on 7 of 8 samples: one
    # disagreement in eight is within what eight samples can tell.
    assert accuracy["y:top1_agreement"]["verdict"] == "same"
    assert "Accuracy: further from the original on y:cosine, y:max_abs_error" in body["summary"]
    assert body["size"]["verdict"] == "smaller"
    # Two variants of the same version: the near-lossless one is the same as the original.
    near = _compare(client_for(personas.owner), a=f"{version.pk}/original", b="scorer:1/ort-opt").json()
    assert {c["what"]: c["verdict"] for c in near["latency"]}["cpu_ms"] == "no_change"
    # A variant the version doesn't have is a 404 that lists the ones it has.
    missing = _compare(client_for(personas.owner), a=f"{version.pk}/original", b=f"{version.pk}/ov-int8")
    assert missing.status_code == 404
    assert missing.json()["message"] == (
        "scorer v1 has no variant 'ov-int8' on profile x86-cpu; it has original, ort-opt, ort-int8."
    )


def test_a_change_within_the_noise_says_no_change(personas, scorer):
    # The same variant measured twice: different processes, different samples, one truth.
    _version(
        personas, scorer, seed=1, variants={"ort-int8": {"ms": 1.5, "cosine": 0.99999, "max_abs": 1e-4, "size": 900}}
    )
    _version(
        personas, scorer, seed=7, variants={"ort-int8": {"ms": 1.5, "cosine": 0.999986, "max_abs": 1e-4, "size": 900}}
    )
    body = _compare(client_for(personas.viewer), a="scorer:1", b="scorer:2").json()
    for change in body["latency"]:
        assert change["verdict"] == "no_change", change
        assert change["sentence"].startswith("No change in ") and "beyond the noise" in change["sentence"]
        assert change["ratio_low"] < 1 < change["ratio_high"] or abs(change["ratio"] - 1) <= 0.05
    assert body["throughput"]["verdict"] == "no_change"
    # The "further from the original" for a cosine change of 3.9e-6 on 8 samples: noise.
    cosine = next(c for c in body["accuracy"] if c["what"] == "y:cosine")
    assert cosine["verdict"] == "same" and "within the measurement's resolution" in cosine["sentence"]
    assert "slower" not in body["summary"] and "faster" not in body["summary"]
    assert "Accuracy: the same within what parity resolves." in body["summary"]
    assert body["size"]["verdict"] == "same"


def test_accuracy_deltas_within_what_parity_resolves_are_not_flagged():
    same = accuracy_change("y", "cosine", 0.999990, 0.999986, 8, 8)
    assert same.verdict == "same"
    further = accuracy_change("y", "cosine", 0.99999, 0.99, 8, 8)
    assert further.verdict == "further" and "beyond the +/-" in further.sentence
    closer = accuracy_change("y", "max_abs_error", 0.5, 0.01, 64, 64)
    assert closer.verdict == "closer"
    # One disagreement in eight is within a binomial band on eight samples.
    assert accuracy_change("y", "top1_agreement", 1.0, 0.875, 8, 8).verdict == "same"
    assert accuracy_change("y", "cosine", None, 0.99, 8, 8).verdict == "unknown"


def test_a_ref_in_another_team_is_not_found(personas, scorer):
    ours = _version(personas, scorer, variants={"ort-int8": {"ms": 2.0, "cosine": 0.999, "max_abs": 0.02, "size": 10}})
    theirs_model = RegisteredModelFactory(team=personas.other_team, slug="fraud-net", created_by=personas.outsider)
    theirs = measured_version(
        team=personas.other_team,
        uploader=personas.outsider,
        model=theirs_model,
        variants={"ort-int8": {"ms": 2.0, "cosine": 0.999, "max_abs": 0.02, "size": 10}},
    )
    outsider = client_for(personas.outsider)
    by_id = _compare(outsider, a=str(theirs.pk), b=str(ours.pk))
    assert by_id.status_code == 404
    assert by_id.json() == {
        "code": "not_found",
        "message": f"There is no version with id {ours.pk} in your teams.",
        "fields": {},
    }
    by_name = _compare(outsider, a="fraud-net:1", b="scorer:1")
    assert by_name.status_code == 404 and by_name.json()["message"] == "There is no model 'scorer' in your teams."
    # The same answer as for a version that does not exist at all: nothing leaks.
    assert _compare(outsider, a="fraud-net:1", b="fraud-net:9").json()["message"] == (
        "Model fraud-net has no version 9 (its latest is 1)."
    )
    assert _compare(client_for(personas.owner), a="scorer:1", b=f"{theirs.pk}").status_code == 404
    assert APIClient().get("/api/v1/compare/", {"a": "scorer:1", "b": "scorer:1"}).status_code == 401


def test_a_bad_ref_is_a_400_that_says_how_to_write_one(personas, scorer):
    client = client_for(personas.viewer)
    bad = _compare(client, a="scorer", b="scorer:1")
    assert bad.status_code == 400 and bad.json()["code"] == "bad_ref"
    assert bad.json()["message"] == f"'scorer' (a=) does not name a version or a variant: give {REF_HELP}."
    missing = client.get("/api/v1/compare/", {"a": "scorer:1"})
    assert missing.status_code == 400 and missing.json()["message"] == f"Give b=: {REF_HELP}."
    assert _compare(client, a="scorer:1/a/b", b="scorer:1").status_code == 400


def test_previous_approved_is_computed_when_read_and_follows_a_later_approval(personas, scorer):
    spec = {"ort-int8": {"ms": 2.0, "cosine": 0.999, "max_abs": 0.02, "size": 4000}}
    first = _version(personas, scorer, variants=spec)
    second = _version(personas, scorer, seed=20, variants={**spec, "ort-int8": {**spec["ort-int8"], "ms": 1.0}})
    third = _version(personas, scorer, seed=30, variants=spec)
    client = client_for(personas.viewer)

    def card(version: ModelVersion) -> Any:
        response = client.get(f"/api/v1/versions/{version.pk}/")
        assert response.status_code == 200
        return response.json()["previous_approved"]

    assert card(third) is None  # nothing approved yet
    approvals.approve(first, personas.approver)
    found = card(third)
    assert (found["version_id"], found["number"]) == (first.pk, 1)
    comparison = found["profiles"]["x86-cpu"]
    assert comparison["a"]["version_id"] == first.pk and comparison["b"]["version_id"] == third.pk
    assert comparison["a"]["variant"] == comparison["b"]["variant"] == "ort-int8"
    assert {c["what"]: c["verdict"] for c in comparison["latency"]}["cpu_ms"] == "no_change"
    assert found["not_compared"] == {}
    assert card(first) is None  # nothing was approved before the first version

    # v2 approved after v3's pipeline ran: v3's card now compares with v2, which is 2x faster.
    approvals.approve(second, personas.approver)
    found = card(third)
    assert found["number"] == 2
    latency = {c["what"]: c for c in found["profiles"]["x86-cpu"]["latency"]}
    assert latency["cpu_ms"]["verdict"] == "slower" and 0.4 < latency["cpu_ms"]["ratio"] < 0.6
    assert "slower by CPU time per inference" in found["profiles"]["x86-cpu"]["summary"]

    # Revoked: the card goes back to v1.
    approvals.revoke(second, personas.approver, comment="Wrong training data.")
    assert card(third)["number"] == 1
