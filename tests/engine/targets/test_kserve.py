"""The InferenceService Slipway would apply, and the request that applies it (no cluster here: read, not sent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.engine.targets.conftest import make_mlp, mlp_spec
from tests.engine.targets.test_triton_repository import FakeS3
from workers.engine.targets.base import InstanceGroup, RepositoryLocation, TargetError, TargetSettings
from workers.engine.targets.kserve import (
    KServeResources,
    KServeSettings,
    KServeTarget,
    apply_request,
    inference_service,
    service_name,
    status_request,
)
from workers.engine.targets.triton_repository import S3Store

SETTINGS = TargetSettings(
    name="prod-kserve", url="http://mlp.ml.example.com", repository="s3://models/kserve", kind="kserve"
)
CLUSTER = KServeSettings(
    namespace="ml", api_url="https://k8s.example.com:6443", token="t0ken", service_account="models-reader"
)


@pytest.fixture
def spec(tmp_path: Path) -> Any:
    return mlp_spec(make_mlp(tmp_path / "mlp.onnx"), 3, name="Fraud_Scorer")


def test_the_manifest_serves_the_versions_own_repository_with_triton(spec: Any) -> None:
    resources = KServeResources(cpu="2", memory="4Gi", min_replicas=1, max_replicas=3)
    manifest = inference_service(spec, SETTINGS, CLUSTER, resources)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == "fraud-scorer"
    assert manifest["metadata"]["namespace"] == "ml"
    assert manifest["metadata"]["labels"]["slipway.io/version"] == "3"
    predictor = manifest["spec"]["predictor"]
    assert predictor["model"] == {
        "modelFormat": {"name": "triton"},
        "runtime": "kserve-tritonserver",
        "protocolVersion": "v2",
        "storageUri": "s3://models/kserve/fraud-scorer/v3/",
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    }
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert predictor["serviceAccountName"] == "models-reader"
    assert "canaryTrafficPercent" not in predictor


def test_a_canary_gets_its_share_of_the_traffic(spec: Any) -> None:
    manifest = inference_service(spec, SETTINGS, CLUSTER, canary_traffic_percent=10)
    assert manifest["spec"]["predictor"]["canaryTrafficPercent"] == 10
    with pytest.raises(TargetError, match="1 to 99 percent"):
        inference_service(spec, SETTINGS, CLUSTER, canary_traffic_percent=100)


def test_gpu_models_need_gpus_in_the_pod(tmp_path: Path) -> None:
    gpu_spec = mlp_spec(make_mlp(tmp_path / "m.onnx"), 1, instance_group=InstanceGroup(1, "GPU"))
    with pytest.raises(TargetError, match="at least one GPU"):
        inference_service(gpu_spec, SETTINGS, CLUSTER)
    limits = inference_service(gpu_spec, SETTINGS, CLUSTER, KServeResources(gpus=1))["spec"]["predictor"]["model"]
    assert limits["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_the_repository_must_be_a_bucket(spec: Any, tmp_path: Path) -> None:
    local = TargetSettings(name="k", url="http://x:80", repository=str(tmp_path), kind="kserve")
    with pytest.raises(TargetError, match=r"bucket the cluster can read \(s3://"):
        inference_service(spec, local, CLUSTER)


@pytest.mark.parametrize(("model", "service"), [("mlp", "mlp"), ("ResNet_50", "resnet-50"), ("7b-chat", "m-7b-chat")])
def test_service_names_are_dns_labels(model: str, service: str) -> None:
    assert service_name(model) == service


def test_the_apply_request_is_one_server_side_apply(spec: Any) -> None:
    request = apply_request(inference_service(spec, SETTINGS, CLUSTER), CLUSTER)
    assert request.method == "PATCH"
    assert request.url == (
        "https://k8s.example.com:6443/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/fraud-scorer"
    )
    assert request.params == {"fieldManager": "slipway", "force": "true"}
    assert request.headers["Content-Type"] == "application/apply-patch+yaml"
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.body is not None and request.body["kind"] == "InferenceService"
    assert status_request("fraud-scorer", CLUSTER).method == "GET"


def test_push_writes_a_repository_per_version(spec: Any) -> None:
    client = FakeS3()
    target = KServeTarget(SETTINGS, CLUSTER, store=S3Store(RepositoryLocation.parse(SETTINGS.repository), {}, client))
    push = target.push(spec)
    keys = sorted(key for _, key in client.objects)
    assert keys == [
        "kserve/fraud-scorer/v3/Fraud_Scorer/3/model.onnx",
        "kserve/fraud-scorer/v3/Fraud_Scorer/3/slipway.json",
        "kserve/fraud-scorer/v3/Fraud_Scorer/config.pbtxt",
        "kserve/fraud-scorer/v3/Fraud_Scorer/slipway-entry.json",
    ]
    assert push.location == "s3://models/kserve/fraud-scorer/v3/Fraud_Scorer/3"
    assert target.push(spec).reused  # a retried task writes nothing


class _Response:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code = status
        self.reason = "Unprocessable Entity" if status == 422 else "OK"
        self.text = json.dumps(body)
        self._body = body

    def json(self) -> dict[str, Any]:
        return self._body


class _Session:
    """Stands in for requests.Session: records each request and answers from `answers`."""

    def __init__(self, *answers: _Response) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> _Response:
        self.sent.append({"method": method, "url": url, **kwargs})
        return self.answers.pop(0)


def test_apply_promote_and_status_send_what_was_prepared(spec: Any) -> None:
    ready = {
        "status": {"url": "http://fraud-scorer.ml.example.com", "conditions": [{"type": "Ready", "status": "True"}]}
    }
    session = _Session(_Response(200, {"kind": "InferenceService"}), _Response(200, {}), _Response(200, ready))
    target = KServeTarget(
        SETTINGS, CLUSTER, store=S3Store(RepositoryLocation.parse("s3://m"), {}, FakeS3()), session=session
    )
    target.apply(spec, canary_traffic_percent=20)
    target.promote(spec)
    status = target.status("Fraud_Scorer")

    applied, promoted, read = session.sent
    assert json.loads(applied["data"])["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert "canaryTrafficPercent" not in json.loads(promoted["data"])["spec"]["predictor"]
    assert applied["params"] == {"fieldManager": "slipway", "force": "true"}
    assert read["method"] == "GET"
    assert status["ready"] and status["url"] == "http://fraud-scorer.ml.example.com"


def test_a_refusal_by_kubernetes_is_told_in_its_words(spec: Any) -> None:
    refusal = _Response(
        422, {"message": 'admission webhook denied the request: runtime "kserve-tritonserver" not found'}
    )
    target = KServeTarget(
        SETTINGS, CLUSTER, store=S3Store(RepositoryLocation.parse("s3://m"), {}, FakeS3()), session=_Session(refusal)
    )
    with pytest.raises(TargetError) as caught:
        target.apply(spec)
    assert caught.value.code == "kubernetes_rejected" and not caught.value.transient
    assert 'runtime "kserve-tritonserver" not found' in caught.value.message


def test_without_a_cluster_nothing_is_sent(spec: Any) -> None:
    target = KServeTarget(SETTINGS, KServeSettings(), store=S3Store(RepositoryLocation.parse("s3://m"), {}, FakeS3()))
    with pytest.raises(TargetError) as caught:
        target.apply(spec)
    assert caught.value.code == "target_not_configured"
    assert "no Kubernetes API URL and token" in caught.value.message
