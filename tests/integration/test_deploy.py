"""From upload to a real Triton server and back: two versions of a model go through the real
pipeline on a real worker, are approved by a second person, deployed to a tritonserver (python
backend) through the API, answer like onnxruntime there, replace each other, roll back; and a
deployment whose model the server refuses to load leaves the live one serving and nothing
half-written in the model repository."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from onnx import numpy_helper

from apps.audit.models import AuditEvent
from apps.registry.models import VersionStatus
from tests import modelzoo
from tests.conftest import client_for
from tests.integration.conftest import wait_for
from tests.triton_server import TritonServer, start_triton_server, triton_skip_reason

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Keep the pipeline short: the test is about deploying, the sweep only has to exist.
BENCHMARK = {
    "batch_sizes": [1, 4],
    "concurrency": [1],
    "max_seconds_per_point": 0.2,
    "warmup_runs": 1,
    "window_runs": 10,
    "max_windows": 3,
}


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[TritonServer]:
    reason = triton_skip_reason()
    if reason:
        pytest.skip(reason)
    repository = tmp_path / "repository"
    repository.mkdir()
    server = start_triton_server(repository, tmp_path / "server")
    try:
        yield server
    finally:
        server.stop()


def _shifted(source: Path, dest: Path, shift: float) -> Path:
    """The same MLP with its output bias moved by `shift`: a second version that answers differently."""
    model = onnx.load(str(source))
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == "b2":
            moved = numpy_helper.to_array(tensor) + np.float32(shift)
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(moved.astype(np.float32), "b2"))
    onnx.save(model, str(dest))
    return dest


def _upload(client: Any, path: Path) -> int:
    answer = client.post(
        "/api/v1/models/scorer/versions/",
        {
            "file": SimpleUploadedFile(path.name, path.read_bytes()),
            "team": "vision",
            "profiles": "x86-cpu",
            "benchmark": json.dumps(BENCHMARK),
        },
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    return int(answer.json()["id"])


def _finished(client: Any, version_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/versions/{version_id}/").json()
        return body if body["status"] in (VersionStatus.READY, VersionStatus.FAILED) else None

    body = wait_for(done, timeout=240, what=f"the pipeline of version {version_id}")
    assert body["status"] == VersionStatus.READY, body["status_reason"]
    return body


def _settled(client: Any, deployment_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/deployments/{deployment_id}/").json()
        return body if body["status"] in ("live", "failed") else None

    return wait_for(done, timeout=120, interval=0.2, what=f"deployment {deployment_id}")


def _infer(server: TritonServer, name: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30)
    try:
        tensor = httpclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return client.infer(name, [tensor]).as_numpy("output")
    finally:
        client.close()


def _onnxruntime(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


def _answers_like(deployment: dict[str, Any], answer: np.ndarray, model: Path, x: np.ndarray) -> bool:
    """The server's answer matches onnxruntime on the original `model` within the deployment's
    approved tolerance (an INT8 variant is close, not equal), and is far from any other version's."""
    from workers.engine.parity import Tolerance, compare_variant

    verdict = compare_variant(
        [{"output": _onnxruntime(model, x)}], [{"output": answer}], Tolerance(**deployment["tolerance"])
    )
    return verdict.passed and float(np.abs(answer - _onnxruntime(model, x)).max()) < 2.0


def _repository(server: TritonServer) -> list[str]:
    """Every directory and file under the model repository, relative, hidden ones included."""
    return sorted(str(p.relative_to(server.repository)) for p in server.repository.rglob("*"))


def test_deploy_verify_replace_roll_back_and_survive_a_refused_load(personas, celery_worker_process, triton, tmp_path):
    first_model = modelzoo.make_mlp_onnx(tmp_path / "scorer-v1.onnx")
    second_model = _shifted(first_model, tmp_path / "scorer-v2.onnx", shift=5.0)
    owner, approver, admin = (client_for(p) for p in (personas.owner, personas.approver, personas.admin))

    # Both versions go through the real pipeline; the uploader can't approve (four eyes), a second person can.
    ids = [_upload(owner, first_model), _upload(owner, second_model)]
    for version_id in ids:
        _finished(owner, version_id)
        assert owner.post(f"/api/v1/versions/{version_id}/approve/").status_code == 403
        assert approver.post(f"/api/v1/versions/{version_id}/approve/").status_code == 201

    registered = admin.post(
        "/api/v1/targets/",
        {
            "team": "vision",
            "name": "Local Triton",
            "url": triton.url,
            "repository": str(triton.repository),
            "backend_mode": "python",
            "profile": "x86-cpu",
            "allow_private": True,
        },
        format="json",
    )
    assert registered.status_code == 201, registered.content
    target = registered.json()
    assert approver.post(f"/api/v1/targets/{target['id']}/check/").status_code == 202

    def checked() -> dict[str, Any] | None:
        health = approver.get(f"/api/v1/targets/{target['id']}/").json()["health"]
        return health if health["checked_at"] else None

    health = wait_for(checked, timeout=60, what="the target's health check")
    assert health["healthy"] is True and health["server_version"], health

    # Version 1: the recommended variant goes live and answers like onnxruntime on the original.
    requested = approver.post("/api/v1/deployments/", {"version": ids[0], "target": "local-triton"}, format="json")
    assert requested.status_code == 202, requested.content
    first = _settled(approver, requested.json()["id"])
    assert first["status"] == "live", first["status_reason"] + "\n" + first["detail"]
    assert first["triton_model"] == "scorer" and first["triton_version"] == 1 and first["live_at"]
    assert first["smoke"]["candidate"]["passed"] and first["smoke"]["live"]["passed"]
    assert first["smoke"]["live"]["compared"] and first["smoke"]["live"]["samples"] >= 1
    x = np.random.default_rng(7).standard_normal((3, 16)).astype(np.float32)
    assert _answers_like(first, _infer(triton, "scorer", x), first_model, x), first["variant"]

    # Version 2 replaces it: live after its smoke test, version 1 retired, the answers change.
    requested = approver.post("/api/v1/deployments/", {"version": ids[1], "target": "local-triton"}, format="json")
    second = _settled(approver, requested.json()["id"])
    assert second["status"] == "live", second["status_reason"] + "\n" + second["detail"]
    assert second["triton_version"] == 2 and second["replaces"] == first["id"]
    assert approver.get(f"/api/v1/deployments/{first['id']}/").json()["status"] == "retired"
    assert _answers_like(second, _infer(triton, "scorer", x), second_model, x)
    assert not _answers_like(second, _infer(triton, "scorer", x), first_model, x)

    # Roll back: version 1 answers again, version 2's deployment is rolled back.
    answer = approver.post(f"/api/v1/deployments/{second['id']}/rollback/")
    assert answer.status_code == 202, answer.content
    rollback = _settled(approver, answer.json()["id"])
    assert rollback["status"] == "live", rollback["status_reason"] + "\n" + rollback["detail"]
    assert rollback["kind"] == "rollback" and rollback["triton_version"] == 1 and rollback["restores"] == first["id"]
    assert approver.get(f"/api/v1/deployments/{second['id']}/").json()["status"] == "rolled_back"
    assert _answers_like(rollback, _infer(triton, "scorer", x), first_model, x)
    before = _repository(triton)

    # A deployment the server can't load (its python backend can't import Slipway's engine from
    # the paths the target now names) fails with Triton's own words; version 1 keeps serving.
    patched = admin.patch(
        f"/api/v1/targets/{target['id']}/", {"options": {"python_paths": ["/nonexistent/slipway"]}}, format="json"
    )
    assert patched.status_code == 200, patched.content
    requested = approver.post("/api/v1/deployments/", {"version": ids[1], "target": "local-triton"}, format="json")
    refused = _settled(approver, requested.json()["id"])
    assert refused["status"] == "failed" and refused["error_code"] == "load_rejected", refused
    assert "refused to load 'scorer.candidate'" in refused["status_reason"]
    assert (
        f"Deployment {rollback['id']} (version " in refused["status_reason"]
        and "still serves" in refused["status_reason"]
    )
    assert refused["detail"]  # Triton's text, verbatim
    live = approver.get("/api/v1/deployments/?model=scorer&target=local-triton&status=live").json()["results"]
    assert [d["id"] for d in live] == [rollback["id"]]
    assert _answers_like(rollback, _infer(triton, "scorer", x), first_model, x)
    assert _repository(triton) == before  # no candidate entry, no version 3, no hidden temp directory
    hidden = [e for e in before if ".candidate" in e or "/." in e or e.startswith(".")]
    assert hidden == [".scorer.slipway-lock"]  # the driver's per-model lock file, nothing half-written
    assert {e.split("/")[1] for e in before if e.count("/") >= 1} >= {"1", "2", "config.pbtxt"}

    # Undeploy: the model is unloaded and its entry removed; the deployment is retired.
    answer = approver.post(f"/api/v1/deployments/{rollback['id']}/undeploy/")
    assert answer.status_code == 202 and answer.json()["status"] == "undeploying"

    def retired() -> dict[str, Any] | None:
        body = approver.get(f"/api/v1/deployments/{rollback['id']}/").json()
        return body if body["status"] in ("retired", "live") else None

    gone = wait_for(retired, timeout=60, interval=0.2, what="the undeploy")
    assert gone["status"] == "retired" and "Undeployed by april" in gone["status_reason"], gone
    assert not (triton.repository / "scorer").exists()
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=r"unknown model|not found|unavailable"):
        _infer(triton, "scorer", x)

    trail = list(AuditEvent.objects.filter(object_type="deployment").values_list("action", flat=True))
    for action in (
        "deployment.requested",
        "deployment.live",
        "deployment.retired",
        "deployment.rolled_back",
        "deployment.undeployed",
    ):
        assert action in trail
    assert "deployment.failed" in trail
