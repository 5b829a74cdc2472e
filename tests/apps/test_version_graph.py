"""GET /versions/<pk>/graph/: the model's graph, drawn from inspection, coloured per backend.

Members of the team get it; outsiders get a 404 like everywhere. The graph never rides on the
version page's reports, and a version without one says why in a sentence."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from apps.pipeline.models import InspectionGraph, Job, JobKind, JobStatus
from tests.conftest import client_for
from tests.finished import GRAPH, finished_version
from workers.engine.support_matrix import build_matrix
from workers.tasks.steps import inspect as inspect_step

pytestmark = pytest.mark.django_db

NODES = [
    {"id": "conv", "op": "Conv", "in": ["x", "w"], "out": ["c"], "attrs": {"kernel_shape": "[3, 3]"}},
    {"id": "Mish_1", "name": "", "op": "Mish", "in": ["c"], "out": ["y"]},
]
DRAWN = {
    "node_count": 2,
    "omitted": "",
    "nodes": NODES,
    "values": {"x": {"t": "float32", "s": [1, 3, 8, 8]}, "w": {"t": "float32", "s": [4, 3, 3, 3], "w": 1}},
    "inputs": ["x"],
    "outputs": ["y"],
}


def _validated(version: Any, reports: dict[str, dict[str, Any]]) -> None:
    """Give the version's validate job these backend reports (and their matrix), as the step stores them."""
    job = version.runs.get().jobs.get(kind=JobKind.VALIDATE)
    job.result = {"profile": "x86-cpu", "reports": reports, "matrix": build_matrix(reports)}
    job.save(update_fields=["result"])


def _backend(name: str, verdict: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "backend": name,
        "runtime_version": "1",
        "installed": True,
        "method": "runtime",
        "verdict": verdict,
        "ops": ops,
    }


def _op(op_type: str, status: str, nodes: list[str], reason: str = "") -> dict[str, Any]:
    return {"op_type": op_type, "domain": "ai.onnx", "status": status, "reason": reason, "nodes": nodes}


@pytest.fixture
def version(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    graph = InspectionGraph.objects.get(job__run__version=version)
    graph.data = DRAWN
    graph.save(update_fields=["data"])
    _validated(
        version,
        {
            "onnxruntime": _backend(
                "onnxruntime",
                "partial",
                [_op("Conv", "supported", ["conv"]), _op("Mish", "unsupported", ["Mish_1"], "no kernel")],
            ),
            "tensorrt": _backend(
                "tensorrt", "full", [_op("Conv", "supported", ["conv"]), _op("Mish", "supported", ["Mish_1"])]
            ),
        },
    )
    return version


def test_a_member_gets_the_graph_and_each_backends_verdict_per_node(personas, version):
    response = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/graph/")

    assert response.status_code == 200
    body = response.json()
    assert body["graph"]["nodes"] == NODES and body["graph"]["values"]["w"] == {
        "t": "float32",
        "s": [4, 3, 3, 3],
        "w": 1,
    }
    assert (body["node_count"], body["omitted"], body["notes"]) == (2, "", [])
    ort, trt = body["support"]
    assert (ort["profile"], ort["backend"], ort["verdict"]) == ("x86-cpu", "onnxruntime", "partial")
    assert ort["counts"] == {"supported": 1, "unknown": 0, "fallback": 0, "unsupported": 1}
    unsupported = next(group for group in ort["groups"] if group["status"] == "unsupported")
    assert unsupported["nodes"] == ["Mish_1"] and unsupported["reason"] == "no kernel"
    assert [group["status"] for group in trt["groups"]] == ["supported"] and trt["groups"][0]["nodes"] == [
        "conv",
        "Mish_1",
    ]


def test_outsiders_and_anonymous_callers_get_nothing(personas, version):
    assert client_for(personas.outsider).get(f"/api/v1/versions/{version.pk}/graph/").status_code == 404
    assert client_for(None).get(f"/api/v1/versions/{version.pk}/graph/").status_code == 401


def test_the_version_page_does_not_carry_the_graph(personas, version):
    body = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/").json()

    assert "graph" not in body["reports"]["inspect"]
    assert "Mish_1" not in str(body["reports"]["inspect"]) and "kernel_shape" not in str(body)


def test_without_inspection_there_is_no_graph_yet(personas, version):
    Job.objects.filter(run__version=version, kind=JobKind.INSPECT).update(status=JobStatus.RUNNING)
    response = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/graph/")

    assert response.status_code == 404
    assert response.json()["code"] == "no_graph" and "inspect step" in response.json()["message"]


def test_a_version_inspected_before_graphs_says_to_rerun(personas, version):
    InspectionGraph.objects.filter(job__run__version=version).delete()
    response = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/graph/")

    assert response.status_code == 404
    assert "Re-run the pipeline to draw it" in response.json()["message"]


def test_a_graph_too_big_to_draw_says_how_big(personas, version):
    InspectionGraph.objects.filter(job__run__version=version).update(
        data={
            "node_count": 5000,
            "omitted": "The model has 5,000 nodes, too many to draw here.",
            "nodes": [],
            "values": {},
        }
    )
    body = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/graph/").json()

    assert body["graph"] is None and body["node_count"] == 5000 and "5,000 nodes" in body["omitted"]
    assert body["support"] == []


def test_a_profile_not_validated_yet_is_named(personas, version):
    Job.objects.filter(run__version=version, kind=JobKind.VALIDATE).update(status=JobStatus.FAILED, error="worker lost")
    body = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/graph/").json()

    assert body["support"] == []
    assert body["notes"] == ["Op support on x86-cpu failed (worker lost), so its nodes are not coloured."]


def test_the_inspect_step_stores_the_graph_apart_from_its_report(personas, monkeypatch, tmp_path: Path):
    version = finished_version(team=personas.team, uploader=personas.owner)
    run = version.runs.get()
    job = Job.objects.create(run=run, kind=JobKind.INSPECT, sequence=9, status=JobStatus.QUEUED)
    monkeypatch.setattr(inspect_step, "job_workdir", lambda job: contextlib.nullcontext(tmp_path))
    monkeypatch.setattr(inspect_step, "fetch_model", lambda job, workdir: {"source": "model.onnx"})
    monkeypatch.setattr(inspect_step, "run_in_sandbox", lambda *args, **kwargs: ({"ir_version": 8, "graph": GRAPH}, ""))

    outcome = inspect_step.run_inspect(job, lambda fraction, message: None)

    assert outcome.result == {"ir_version": 8}  # what the version page's reports carry
    assert outcome.persist is not None
    outcome.persist(job)  # `complete` calls this with the job it stored the result on
    assert InspectionGraph.objects.get(job=job).data == GRAPH
    outcome.persist(job)  # the broker delivered twice: still one graph
    assert InspectionGraph.objects.filter(job=job).count() == 1
