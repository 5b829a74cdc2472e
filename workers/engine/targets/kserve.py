"""The KServe driver: an InferenceService whose predictor is Triton, serving a repository Slipway wrote.

KServe runs Triton with the model repository it downloads from the predictor's
`storageUri` when a pod starts (and again whenever a pod is added), so each version gets a
repository of its own that never changes afterwards:

    <repository>/<service>/v<version>/<model>/config.pbtxt
    <repository>/<service>/v<version>/<model>/<version>/...

`push` writes it (an S3 bucket, like Triton's own targets, through `triton_repository`).
`inference_service` builds the InferenceService (serving.kserve.io/v1beta1): the Triton
runtime, the v2 protocol, the storage URI, resources, replicas and, for a version that
follows another, `canaryTrafficPercent`, so that KServe sends that share of the traffic to
the new revision and the rest to the previous one. `apply` sends it with one server-side
apply request (PATCH, application/apply-patch+yaml, fieldManager=slipway) through
`requests`, creating or updating the object; `promote` applies it again without the canary
share, so the new revision gets all the traffic; a rollback is applying the previous
version again (its repository is still there); `status` reads the conditions and URL. Without a cluster URL and token
nothing is sent: `apply_request` returns the request that would be made, for review.

The cluster needs KServe with the `kserve-tritonserver` ClusterServingRuntime (or the
runtime named in `KServeSettings`), a service account whose secret lets the storage
initializer read the bucket, and a token allowed to get and patch InferenceServices in the
namespace. Python mode needs a runtime image that holds Slipway's engine (see
`docker_image`), with `python_paths` set to where it is in that image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.engine.targets.base import DeploymentSpec, PushResult, TargetError, TargetSettings
from workers.engine.targets.triton_repository import RepositoryStore, TritonRepository, open_store, prepare_version

API_GROUP = "serving.kserve.io"
API_VERSION = "v1beta1"
FIELD_MANAGER = "slipway"
# KServe's serverless mode puts the name into a hostname with the namespace; it advises
# keeping names short, and Kubernetes allows 63 characters per label.
MAX_SERVICE_NAME = 63


@dataclass(frozen=True)
class KServeSettings:
    """Where the cluster is and how the service runs there.

    `api_url` and `token` reach the Kubernetes API (empty: requests are only prepared);
    `ca_bundle` is a CA file for its certificate (empty: the system's); `service_account`
    holds the storage credentials the storage initializer uses.
    """

    namespace: str = "default"
    api_url: str = ""
    token: str = ""
    ca_bundle: str = ""
    runtime: str = "kserve-tritonserver"
    service_account: str = ""
    deployment_mode: str = ""  # "Serverless" or "RawDeployment"; empty: the cluster's default
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class KServeResources:
    """The predictor's pods: requests (= limits here, so the benchmark's numbers hold) and replicas."""

    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = 0
    min_replicas: int = 1
    max_replicas: int = 1


@dataclass(frozen=True)
class KubernetesRequest:
    """One request to the Kubernetes API, fully prepared; `body` is JSON-ready."""

    method: str
    url: str
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


def service_name(model_name: str) -> str:
    """The InferenceService name for a model: a DNS label ("ResNet_50" -> "resnet-50")."""
    name = re.sub(r"[^a-z0-9-]", "-", model_name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}".rstrip("-")
    if len(name) > MAX_SERVICE_NAME:
        raise TargetError(
            "invalid_spec",
            f"The model name '{model_name}' is too long for a KServe InferenceService ({len(name)} characters, "
            f"{MAX_SERVICE_NAME} at most); deploy it under a shorter name.",
        )
    return name


def storage_prefix(spec: DeploymentSpec) -> str:
    """Where in the repository a version's own Triton repository goes: "<service>/v<version>"."""
    return f"{service_name(spec.model_name)}/v{spec.version}"


def storage_uri(settings: TargetSettings, spec: DeploymentSpec) -> str:
    """The predictor's storageUri for the version (a trailing "/" marks a directory for KServe)."""
    location = settings.location
    if location.kind != "s3":
        raise TargetError(
            "invalid_target",
            f"A KServe target needs its repository in a bucket the cluster can read (s3://...), not {location.uri}.",
        )
    prefix = "/".join(part for part in (location.prefix, storage_prefix(spec)) if part)
    return f"s3://{location.bucket}/{prefix}/"


def inference_service(
    spec: DeploymentSpec,
    settings: TargetSettings,
    kserve: KServeSettings,
    resources: KServeResources | None = None,
    *,
    canary_traffic_percent: int | None = None,
) -> dict[str, Any]:
    """The InferenceService that serves the version with Triton, as a JSON-ready dict.

    `canary_traffic_percent` (1..99) sends that share to this revision and the rest to the
    previous one; None gives it all the traffic (a first deploy, or a promotion).
    """
    resources = resources or KServeResources()
    if canary_traffic_percent is not None and not 1 <= canary_traffic_percent <= 99:
        raise TargetError(
            "invalid_spec", f"A canary gets 1 to 99 percent of the traffic, not {canary_traffic_percent}."
        )
    if not 1 <= resources.min_replicas <= resources.max_replicas:
        raise TargetError(
            "invalid_spec",
            f"Replicas must satisfy 1 <= min ({resources.min_replicas}) <= max ({resources.max_replicas}).",
        )
    if spec.instance_group.kind == "GPU" and resources.gpus < 1:
        raise TargetError("invalid_spec", "The model runs on GPU instances; give the predictor at least one GPU.")
    amounts: dict[str, Any] = {"cpu": resources.cpu, "memory": resources.memory}
    if resources.gpus:
        amounts["nvidia.com/gpu"] = str(resources.gpus)
    name = service_name(spec.model_name)
    annotations = {"serving.kserve.io/deploymentMode": kserve.deployment_mode} if kserve.deployment_mode else {}
    predictor: dict[str, Any] = {
        "minReplicas": resources.min_replicas,
        "maxReplicas": resources.max_replicas,
        "model": {
            "modelFormat": {"name": "triton"},
            "runtime": kserve.runtime,
            "protocolVersion": "v2",
            "storageUri": storage_uri(settings, spec),
            "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        },
    }
    if kserve.service_account:
        predictor["serviceAccountName"] = kserve.service_account
    if canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": kserve.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "slipway",
                "slipway.io/model": spec.model_name,
                "slipway.io/version": str(spec.version),
            },
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def _service_url(kserve: KServeSettings, name: str) -> str:
    base = kserve.api_url.rstrip("/") or "https://kubernetes.default.svc"
    return f"{base}/apis/{API_GROUP}/{API_VERSION}/namespaces/{kserve.namespace}/inferenceservices/{name}"


def _headers(kserve: KServeSettings, content_type: str = "application/json") -> dict[str, str]:
    headers = {"Accept": "application/json", "Content-Type": content_type}
    if kserve.token:
        headers["Authorization"] = f"Bearer {kserve.token}"
    return headers


def apply_request(manifest: Mapping[str, Any], kserve: KServeSettings) -> KubernetesRequest:
    """The server-side apply request that creates or updates the InferenceService."""
    return KubernetesRequest(
        method="PATCH",
        url=_service_url(kserve, str(manifest["metadata"]["name"])),
        headers=_headers(kserve, "application/apply-patch+yaml"),  # JSON is YAML
        params={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=dict(manifest),
    )


def status_request(name: str, kserve: KServeSettings) -> KubernetesRequest:
    """The GET that reads the InferenceService (its status, conditions and URL)."""
    return KubernetesRequest(method="GET", url=_service_url(kserve, name), headers=_headers(kserve))


class KServeTarget:
    """A KServe cluster, and the bucket its InferenceServices read their repositories from."""

    def __init__(
        self,
        settings: TargetSettings,
        kserve: KServeSettings,
        *,
        store: RepositoryStore | None = None,
        session: Any = None,
    ) -> None:
        self.settings = settings
        self.kserve = kserve
        self.store = store or open_store(settings)
        self._session = session

    def push(self, spec: DeploymentSpec) -> PushResult:
        """Write the version's own Triton repository under `storage_prefix`; retried pushes reuse it."""
        prepared = prepare_version(spec, self.settings)
        prefix = storage_prefix(spec)
        return TritonRepository(_Prefixed(self.store, prefix)).push(prepared, spec.model_name, [spec.version])

    def apply(
        self,
        spec: DeploymentSpec,
        resources: KServeResources | None = None,
        *,
        canary_traffic_percent: int | None = None,
    ) -> dict[str, Any]:
        """Create or update the InferenceService for the version; returns the object the API answered."""
        manifest = inference_service(
            spec, self.settings, self.kserve, resources, canary_traffic_percent=canary_traffic_percent
        )
        return self.send(apply_request(manifest, self.kserve))

    def promote(self, spec: DeploymentSpec, resources: KServeResources | None = None) -> dict[str, Any]:
        """End the canary: apply the version again without `canaryTrafficPercent`, which server-side
        apply then removes (Slipway owns that field), so the latest revision gets all the traffic."""
        return self.apply(spec, resources)

    def status(self, model_name: str) -> dict[str, Any]:
        """The InferenceService's status: {"ready": bool, "url": str, "conditions": [...], ...}."""
        found = self.send(status_request(service_name(model_name), self.kserve))
        status = found.get("status", {})
        conditions = status.get("conditions", [])
        ready = any(item.get("type") == "Ready" and item.get("status") == "True" for item in conditions)
        return {
            "ready": ready,
            "url": status.get("url", ""),
            "conditions": conditions,
            "traffic": status.get("components"),
        }

    def send(self, request: KubernetesRequest) -> dict[str, Any]:
        """Send a prepared request; TargetError with the API's message when it refuses."""
        if not self.kserve.api_url or not self.kserve.token:
            raise TargetError(
                "target_not_configured",
                f"The KServe target '{self.settings.name}' has no Kubernetes API URL and token, so Slipway only "
                "prepared the request; add them to the target to apply it.",
            )
        import requests

        session = self._session or requests.Session()
        verify: bool | str = self.kserve.ca_bundle or True
        try:
            response = session.request(
                request.method,
                request.url,
                headers=request.headers,
                params=request.params,
                data=json.dumps(request.body) if request.body is not None else None,
                timeout=self.kserve.timeout_seconds,
                verify=verify,
            )
        except requests.RequestException as exc:
            raise TargetError(
                "target_unreachable",
                f"Slipway can't reach the Kubernetes API at {self.kserve.api_url} ({exc}); check the URL and that "
                "this worker can reach the cluster. Slipway will try again.",
                detail=str(exc),
                transient=True,
            ) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {"message": response.text[:2000]}
        if response.status_code >= 400:
            message = str(answer.get("message") or response.reason or "")
            raise TargetError(
                "kubernetes_rejected",
                f"The Kubernetes API refused the request ({response.status_code}): {message}",
                detail=json.dumps(answer)[:4000],
                transient=response.status_code >= 500 or response.status_code == 429,
            )
        return answer if isinstance(answer, dict) else {"items": answer}


class _Prefixed(RepositoryStore):
    """A store seen from a sub-directory: each KServe version is a repository of its own."""

    def __init__(self, store: RepositoryStore, prefix: str) -> None:
        self.inner = store
        self.prefix = prefix.strip("/")
        self.location = store.location

    def _at(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if relpath else self.prefix

    def uri(self, relpath: str) -> str:
        return self.inner.uri(self._at(relpath))

    def read_text(self, relpath: str) -> str | None:
        return self.inner.read_text(self._at(relpath))

    def exists(self, relpath: str) -> bool:
        return self.inner.exists(self._at(relpath))

    def list_dirs(self, relpath: str) -> list[str]:
        return self.inner.list_dirs(self._at(relpath))

    def list_files(self, relpath: str) -> list[str]:
        return self.inner.list_files(self._at(relpath))

    def write_directory(self, relpath: str, files: Mapping[str, Any]) -> None:
        self.inner.write_directory(self._at(relpath), files)

    def write_text(self, relpath: str, text: str) -> None:
        self.inner.write_text(self._at(relpath), text)

    def move_directory(self, source: str, target: str) -> None:
        self.inner.move_directory(self._at(source), self._at(target))

    def remove(self, relpath: str) -> None:
        self.inner.remove(self._at(relpath))
