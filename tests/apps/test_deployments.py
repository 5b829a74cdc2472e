"""Serving targets and deployments as users and workers see them: who may do what, the
sentences for every refusal, credentials that never come back, one live deployment per model
and target, and the worker's claim, switch-over, failure and reconciliation (the Triton
driver itself is exercised against a real server in tests/integration/test_deploy.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.approvals import services as approvals
from apps.audit.models import AuditEvent
from apps.core.api.errors import ApiError
from apps.deployments import deploying, lifecycle, services, targets
from apps.deployments.models import Deployment, DeploymentStatus, ServingTarget
from apps.registry.models import Artifact, ArtifactKind
from apps.webhooks import services as webhooks
from apps.webhooks.models import WebhookDelivery
from tests.conftest import client_for
from tests.finished import finished_version
from workers.engine.targets.base import TargetError
from workers.tasks import deployments as tasks

pytestmark = pytest.mark.django_db

SECRET = "Bearer sk-live-4f9a1c"  # must never come back from the API or land in the audit trail


@pytest.fixture
def sent(broker):
    """Deployment work sent to workers (after commit): (task, id, countdown)."""
    tasks = [services.DEPLOY_TASK, services.UNDEPLOY_TASK, services.CHECK_TARGET_TASK]
    return broker.view(lambda m: (m.task, m.object_id, m.countdown), tasks=tasks)


def _target(personas, tmp_path, **changes: Any) -> ServingTarget:
    values: dict[str, Any] = {
        "team": personas.team,
        "user": personas.admin,
        "name": "Edge Triton",
        "profile": "x86-cpu",
        "url": "http://127.0.0.1:8000",
        "repository": str(tmp_path / "repository"),
        "backend_mode": "python",
        "allow_private": True,
        **changes,
    }
    return targets.create_target(**values)


@pytest.fixture
def target(personas, tmp_path) -> ServingTarget:
    return _target(personas, tmp_path)


def _approved(personas, **kwargs: Any):
    version = finished_version(team=personas.team, uploader=personas.owner, **kwargs)
    approvals.approve(version, personas.approver)
    return version


@pytest.fixture
def approved(personas):
    return _approved(personas)


def _post_deploy(user, version, target="edge-triton", **body: Any):
    return client_for(user).post(
        "/api/v1/deployments/", {"version": version.pk, "target": target, **body}, format="json"
    )


# --- targets ---------------------------------------------------------------------------------


def test_an_admin_registers_a_target_and_its_credentials_never_come_back(personas, tmp_path):
    admin = client_for(personas.admin)
    created = admin.post(
        "/api/v1/targets/",
        {
            "team": "vision",
            "name": "Prod Triton",
            "url": "http://127.0.0.1:8000",
            "repository": str(tmp_path / "repo"),
            "backend_mode": "python",
            "profile": "x86-cpu",
            "credentials": {"headers": {"Authorization": SECRET}},
            "allow_private": True,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["slug"] == "prod-triton" and body["team"] == "vision" and body["profile"] == "x86-cpu"
    assert body["has_credentials"] is True and body["credential_keys"] == ["headers"]
    assert body["allow_private_by"] == "ada"
    assert body["health"]["healthy"] is None and body["health"]["detail"] == "Not checked yet."
    answers = [
        created.content,
        admin.get("/api/v1/targets/").content,
        admin.get(f"/api/v1/targets/{body['id']}/").content,
        client_for(personas.viewer).get(f"/api/v1/targets/{body['id']}/").content,
        admin.patch(f"/api/v1/targets/{body['id']}/", {"name": "Prod"}, format="json").content,
    ]
    assert all(SECRET.encode() not in answer and b"sk-live" not in answer for answer in answers)
    # encrypted at rest, usable by the worker, absent from the audit trail
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM deployments_servingtarget WHERE id = %s", [body["id"]])
        (stored,) = cursor.fetchone()
    assert "sk-live" not in stored
    target = ServingTarget.objects.get(pk=body["id"])
    assert dict(services.target_settings(target).headers) == {"Authorization": SECRET}
    assert "sk-live" not in repr(target.credentials) and "sk-live" not in str(target.credentials)
    trail = AuditEvent.objects.filter(object_type="servingtarget")
    assert [e.action for e in trail.order_by("id")] == ["target.created", "target.updated"]
    assert all("sk-live" not in str(e.before) + str(e.after) for e in trail)
    assert trail.first().after["credentials"] == ["headers"]


def test_credentials_can_be_replaced_and_removed_without_ever_being_read(personas, target):
    admin = client_for(personas.admin)
    url = f"/api/v1/targets/{target.pk}/"
    set_ = admin.patch(
        url, {"credentials": {"aws_access_key_id": "AKIA", "aws_secret_access_key": SECRET}}, format="json"
    )
    assert set_.json()["credential_keys"] == ["aws_access_key_id", "aws_secret_access_key"]
    target.refresh_from_db()
    assert dict(services.target_settings(target).repository_options)["aws_secret_access_key"] == SECRET
    cleared = admin.patch(url, {"credentials": None}, format="json")
    assert cleared.json()["has_credentials"] is False and cleared.json()["credential_keys"] == []
    event = AuditEvent.objects.filter(action="target.updated").order_by("-id").first()
    assert event.after["credentials_replaced"] is True and "sk-live" not in str(event.after)


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"allow_private": False}, "private_address", "loopback"),
        ({"url": "ftp://triton:8000"}, "invalid_url", "not an http or https URL"),
        ({"url": "http://127.0.0.1:8000/v2"}, "invalid_target", "no path"),
        ({"repository": "models/here"}, "invalid_target", "relative path"),
        ({"repository": "/srv/../etc"}, "invalid_repository", "'..'"),
        ({"slug": "Prod Triton!"}, "invalid_slug", "lower-case letters"),
        ({"profile": "tpu"}, "unknown_profile", "x86-cpu"),
        ({"options": {"colour": "red"}}, "invalid_options", "python_paths"),
        ({"options": {"repository_options": {"aws_secret_access_key": "x"}}}, "invalid_options", "credentials"),
        ({"options": {"python_paths": ["relative/path"]}}, "invalid_target", "absolute directory"),
        ({"credentials": {"password": "x"}}, "invalid_credentials", "headers"),
        ({"kind": "kserve"}, "invalid_kind", "does not deploy to 'kserve' targets; it deploys to: triton."),
        ({"kind": "docker_image"}, "invalid_kind", "does not deploy to 'docker_image' targets"),
        ({"kind": "sagemaker"}, "invalid_kind", "it deploys to: triton."),
    ],
)
def test_a_target_that_cannot_work_is_refused_with_a_sentence(personas, tmp_path, changes, code, words):
    with pytest.raises(ApiError) as refused:
        _target(personas, tmp_path, **changes)
    assert refused.value.code == code and words in refused.value.message, refused.value.message
    assert not ServingTarget.objects.exists()


def test_a_target_of_a_kind_no_longer_offered_is_refused_at_deploy_and_not_health_checked(
    personas, target, approved, sent
):
    """A release before the driver registry let KServe and Docker-image targets be registered
    without deploying to them; such rows stay readable and say why nothing happens."""
    from workers.tasks.deployments import _health

    ServingTarget.objects.filter(pk=target.pk).update(kind="kserve")
    status, code, message = _refusal(_post_deploy(personas.approver, approved))
    assert (status, code) == (409, "target_kind_not_deployable")
    assert "'kserve' target, a kind this release does not deploy to (it deploys to: triton)" in message
    assert targets.targets_to_check() == []
    target.refresh_from_db()
    unchecked = "This release does not check 'kserve' targets: it has no driver for them."
    assert _health(target) == (None, None, "", unchecked)


def test_the_api_describes_each_kinds_options_and_credentials_from_its_driver() -> None:
    from workers.engine.targets.registry import DRIVERS

    assert targets.deployable_kinds() == {kind: driver.label for kind, driver in DRIVERS.items()}
    options, credentials = targets.driver_keys_help("option_keys"), targets.driver_keys_help("credential_keys")
    assert options.startswith("Triton Inference Server targets take python_paths: sys.path entries")
    assert "; aws_secret_access_key: S3 secret key" in credentials and "registry_password" not in credentials


def test_a_repository_inside_slipways_own_data_is_refused(personas, settings, tmp_path):
    with pytest.raises(ApiError) as refused:
        _target(personas, tmp_path, repository=str(settings.DATA_DIR / "artifacts"))
    assert refused.value.code == "invalid_repository" and "data directory" in refused.value.message


# --- where a target's model repository may be (issue 14) -----------------------------------

REPO_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def allowed_root(settings, tmp_path) -> Path:
    """The only folder an administrator allowed for model repositories (SLIPWAY_TARGET_ROOTS)."""
    root = tmp_path / "allowed"
    root.mkdir()
    settings.TARGET_ROOTS = [root]
    return root


def _post_target(user, repository: str, **body: Any):
    values = {
        "team": "vision",
        "name": "Edge Triton",
        "url": "http://127.0.0.1:8000",
        "repository": repository,
        "profile": "x86-cpu",
        "allow_private": True,
        **body,
    }
    return client_for(user).post("/api/v1/targets/", values, format="json")


@pytest.mark.parametrize(
    "where",
    ["/", "/etc", "/root", "the code", "inside the code", "outside the roots", "a link out", "a link to /etc"],
)
def test_a_repository_outside_the_allowed_folders_is_refused_naming_them(personas, tmp_path, allowed_root, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    (allowed_root / "escape").symlink_to(outside)
    (allowed_root / "system").symlink_to("/etc")
    repository = {
        "/": "/",
        "/etc": "/etc",
        "/root": "/root",
        "the code": str(REPO_DIR),
        "inside the code": str(REPO_DIR / "apps"),
        "outside the roots": str(outside / "models"),
        "a link out": str(allowed_root / "escape" / "models"),
        "a link to /etc": str(allowed_root / "system"),
    }[where]
    status, code, message = _refusal(_post_target(personas.admin, repository))
    assert (status, code) == (400, "repository_not_allowed"), message
    assert f"only inside the folders an administrator allowed (SLIPWAY_TARGET_ROOTS): {allowed_root}." in message
    assert not ServingTarget.objects.exists()
    assert sorted(p.name for p in allowed_root.iterdir()) == ["escape", "system"] and not any(outside.iterdir())


def test_a_target_moved_out_of_the_allowed_folders_is_refused(personas, allowed_root, tmp_path):
    created = _post_target(personas.admin, str(allowed_root / "edge"))
    assert created.status_code == 201, created.content
    url = f"/api/v1/targets/{created.json()['id']}/"
    (allowed_root / "escape").symlink_to(tmp_path)
    for repository in ("/etc/triton", str(tmp_path / "elsewhere"), str(allowed_root / "escape" / "models")):
        status, code, message = _refusal(client_for(personas.admin).patch(url, {"repository": repository}))
        assert (status, code) == (400, "repository_not_allowed") and str(allowed_root) in message
    assert ServingTarget.objects.get().repository == str(allowed_root / "edge")
    # the worker's settings carry the roots, so the driver checks them again before writing
    assert services.target_settings(ServingTarget.objects.get()).allowed_roots == (str(allowed_root),)


def test_the_default_folder_under_the_data_folder_is_allowed_and_the_rest_of_it_is_not(personas, settings, tmp_path):
    settings.TARGET_ROOTS = [settings.DATA_DIR / "model-repositories"]  # the default
    assert _target(personas, tmp_path, repository=str(settings.DATA_DIR / "model-repositories" / "edge"))
    for repository in (settings.DATA_DIR / "artifacts", settings.DATA_DIR / "model-repositories" / ".." / "broker"):
        with pytest.raises(ApiError) as refused:
            _target(personas, tmp_path, name="Other", repository=str(repository))
        assert refused.value.code in ("repository_not_allowed", "invalid_repository")


def test_the_allowed_folders_are_absolute_and_never_the_whole_filesystem(monkeypatch, tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    from config.env import envdirs

    monkeypatch.delenv("X_ROOTS", raising=False)
    assert envdirs("X_ROOTS", [tmp_path / "default"]) == [tmp_path / "default"]
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.setenv("X_ROOTS", f"{tmp_path / 'link'}, /srv/models")
    assert envdirs("X_ROOTS", []) == [tmp_path / "real", Path("/srv/models")]
    for value, words in (("models", "not an absolute path"), ("/srv/models,/", "the whole filesystem")):
        monkeypatch.setenv("X_ROOTS", value)
        with pytest.raises(ImproperlyConfigured, match=words):
            envdirs("X_ROOTS", [])


@pytest.mark.parametrize(
    ("repository", "options", "reason"),
    [
        ("s3://169.254.169.254:80/models/triton", {}, "link-local"),
        ("s3://models/triton", {"repository_options": {"endpoint_url": "http://169.254.169.254/"}}, "link-local"),
        ("s3://models/triton", {"repository_options": {"endpoint_url": "http://10.0.0.1:9000"}}, "private"),
        ("s3://10.0.0.1:9000/models/triton", {}, "private"),
    ],
)
def test_an_s3_endpoint_inside_the_platforms_network_is_refused_like_a_webhook(
    personas, tmp_path, repository, options, reason
):
    public = {"url": "http://1.1.1.1:8000", "allow_private": False, "repository": repository, "options": options}
    with pytest.raises(ApiError) as refused:
        _target(personas, tmp_path, **public)
    assert refused.value.code == "private_address"
    assert refused.value.message.startswith("The model repository's S3 endpoint can't be used.")
    assert f"a {reason} address" in refused.value.message and "allow_private" in refused.value.message
    assert not ServingTarget.objects.exists()
    # a team admin may allow it, as for a webhook; the worker checks again before it connects
    target = _target(personas, tmp_path, **{**public, "allow_private": True})
    targets.check_target_address(target)
    ServingTarget.objects.filter(pk=target.pk).update(allow_private=False)
    target.refresh_from_db()
    with pytest.raises(ApiError) as refused:
        targets.check_target_address(target)
    assert refused.value.code == "private_address"


def test_what_slipway_left_in_the_repository_is_told_in_the_deployment_log(personas, target, approved, sent):
    left = "Left version 7 of 'fraud' (/srv/models/fraud/7) in place: Slipway did not write it."
    driver = SimpleNamespace(
        served_versions=lambda name: (1, 2, 7),
        retire=lambda name, version: (left,) if version == 7 else (),
    )
    assert tasks._prune(driver, "fraud", keep={2}) == [left]
    live = _live(approved, target, personas.approver)
    deploying.undeploy(live, personas.approver)
    claimed = lifecycle.claim_undeploy(live.pk, "w", "t")
    assert lifecycle.undeployed(claimed, [left])
    live.refresh_from_db()
    assert live.steps[-1] == left and live.status_reason.endswith(left)


def test_only_admins_write_targets_members_read_them_and_outsiders_see_nothing(personas, target, tmp_path):
    body = {"team": "vision", "name": "Other", "url": "http://127.0.0.1:8001", "repository": str(tmp_path / "r2")}
    for user in (personas.viewer, personas.owner, personas.approver):
        refused = client_for(user).post("/api/v1/targets/", {**body, "profile": "x86-cpu"}, format="json")
        assert refused.status_code == 403 and "managing the team" in refused.json()["message"]
        assert client_for(user).patch(f"/api/v1/targets/{target.pk}/", {"enabled": False}).status_code == 403
        assert client_for(user).get(f"/api/v1/targets/{target.pk}/").status_code == 200
    outsider = client_for(personas.outsider)
    assert outsider.get(f"/api/v1/targets/{target.pk}/").status_code == 404
    assert outsider.delete(f"/api/v1/targets/{target.pk}/").status_code == 404
    assert outsider.get("/api/v1/targets/").json()["results"] == []


def test_a_health_check_is_done_by_a_worker_and_a_change_of_health_is_audited(
    personas, target, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        answer = client_for(personas.approver).post(f"/api/v1/targets/{target.pk}/check/")
    assert answer.status_code == 202 and answer.json()["health"]["check_requested_at"]
    assert sent == [(services.CHECK_TARGET_TASK, target.pk, 0)]
    assert client_for(personas.viewer).post(f"/api/v1/targets/{target.pk}/check/").status_code == 403
    # the worker's task against a port nothing listens on: unhealthy, with a sentence
    ServingTarget.objects.filter(pk=target.pk).update(url="http://127.0.0.1:9")
    assert tasks.check_target(target.pk) == "unhealthy"
    health = client_for(personas.viewer).get(f"/api/v1/targets/{target.pk}/").json()["health"]
    assert health["healthy"] is False and health["checked_at"] and health["check_requested_at"] is None
    assert "can't reach the Triton server" in health["detail"]
    tasks.check_target(target.pk)  # unchanged health: no second event
    assert AuditEvent.objects.filter(action="target.health_changed").count() == 1


def test_the_periodic_check_queues_every_enabled_triton_target(personas, target, tmp_path, sent):
    _target(personas, tmp_path, name="Off", repository=str(tmp_path / "off"), enabled=False)
    assert tasks.check_targets() == 1 and sent == [(services.CHECK_TARGET_TASK, target.pk, 0)]


# --- deploying -------------------------------------------------------------------------------


def test_an_approver_deploys_the_recommended_variant(
    personas, target, approved, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        answer = _post_deploy(personas.approver, approved)
    assert answer.status_code == 202, answer.content
    body = answer.json()
    evidence = approvals.review(approved).evidence["profiles"]["x86-cpu"]
    assert body["status"] == "pending" and body["status_reason"]
    assert body["variant"] == evidence["recommendation"]["winner"]["name"] == "ort-int8"
    assert body["artifact_sha256"] == evidence["recommendation"]["winner"]["sha256"]
    assert body["target"] == "edge-triton" and body["model"] == approved.model.slug and body["version"] == approved.pk
    assert body["triton_model"] == approved.model.slug and body["triton_version"] == 1
    assert body["tolerance"] == {"min_cosine": 0.99} and body["requested_by"] == "april"
    assert body["serving"]["instances"] >= 1 and body["serving"]["reasons"]
    assert body["smoke"] == {} and body["live_at"] is None and body["created_at"]
    assert sent == [(services.DEPLOY_TASK, body["id"], 0)]
    event = AuditEvent.objects.get(action="deployment.requested")
    assert event.actor == "april" and event.after["variant"] == "ort-int8"
    assert client_for(personas.viewer).get(f"/api/v1/deployments/{body['id']}/").json()["id"] == body["id"]


def test_a_chosen_variant_the_original_and_overrides(personas, target, approved, sent):
    chosen = _post_deploy(
        personas.admin,
        approved,
        variant="ort-opt",
        overrides={"max_batch_size": 8, "preferred_batch_sizes": [4], "max_queue_delay_us": 250, "instances": 2},
    ).json()
    assert chosen["variant"] == "ort-opt" and chosen["overrides"]["instances"] == 2
    assert {
        k: chosen["serving"][k] for k in ("max_batch_size", "preferred_batch_sizes", "max_queue_delay_us", "instances")
    } == {
        "max_batch_size": 8,
        "preferred_batch_sizes": [4],
        "max_queue_delay_us": 250,
        "instances": 2,
    }
    assert "max_batch_size 8 is your setting." in chosen["serving"]["reasons"]
    Deployment.objects.filter(pk=chosen["id"]).update(status=DeploymentStatus.FAILED)
    original = _post_deploy(personas.admin, approved, variant="original").json()
    assert original["variant"] == "original" and original["engine_backend"] == "onnxruntime"
    assert original["artifact_id"] == approved.source_artifact_id and original["triton_version"] == 2


def test_the_original_model_is_deployed_when_the_recommendation_keeps_it(personas, target, sent):
    version = _approved(
        personas,
        variants={
            "ort-int8": {"backend": "onnxruntime", "precision": "int8", "p99": 1.0, "cosine": 0.5, "max_abs": 0.5}
        },
    )
    assert approvals.review(version).evidence["profiles"]["x86-cpu"]["recommendation"]["use_baseline"] is True
    body = _post_deploy(personas.approver, version).json()
    assert body["variant"] == "original" and body["model_format"] == "onnx"
    refused = _post_deploy(personas.approver, version, variant="ort-int8")
    assert refused.status_code == 409 and refused.json()["code"] in ("variant_failed_parity", "deployment_in_progress")


def test_a_variant_that_failed_parity_is_refused(personas, target, sent):
    version = _approved(
        personas,
        variants={
            "ort-opt": {"backend": "onnxruntime", "precision": "fp32", "p99": 2.0, "cosine": 1.0, "max_abs": 1e-6},
            "ort-int8": {"backend": "onnxruntime", "precision": "int8", "p99": 1.0, "cosine": 0.5, "max_abs": 0.5},
        },
    )
    refused = _post_deploy(personas.approver, version, variant="ort-int8")
    assert refused.status_code == 409 and refused.json()["code"] == "variant_failed_parity"
    assert "did not pass its parity check" in refused.json()["message"]


def _refusal(answer) -> tuple[int, str, str]:
    body = answer.json()
    return answer.status_code, body["code"], body["message"]


def test_unapproved_and_stale_versions_are_refused_with_sentences(personas, target, approved, sent):
    ready = finished_version(team=personas.team, uploader=personas.owner)
    status, code, message = _refusal(_post_deploy(personas.approver, ready))
    assert (status, code) == (409, "version_not_approved")
    assert f"Version {ready.number} of {ready.model.slug} is ready for review, not approved" in message
    assert "Ask an approver to review it." in message

    # evidence changed since the approval (a variant's file is different now)
    Artifact.objects.filter(version=approved, kind=ArtifactKind.VARIANT).update(sha256="f" * 64)
    status, code, message = _refusal(_post_deploy(personas.approver, approved))
    assert (status, code) == (409, "approval_stale") and "needs a new review" in message

    assert not Deployment.objects.exists()


def test_a_revoked_approval_is_refused(personas, target, approved, sent):
    approvals.revoke(approved, personas.approver, "found a bug")
    status, code, message = _refusal(_post_deploy(personas.approver, approved))
    assert (status, code) == (409, "version_not_approved") and "revoked, not approved" in message


def test_wrong_profile_disabled_and_foreign_targets_are_refused(personas, tmp_path, approved, sent):
    gpu = _target(personas, tmp_path, name="GPU box", profile="nvidia-gpu", repository=str(tmp_path / "gpu"))
    status, code, message = _refusal(_post_deploy(personas.approver, approved, target=gpu.slug))
    assert (status, code) == (409, "wrong_profile")
    assert "was not built for nvidia-gpu, the hardware profile of target gpu-box" in message and "x86-cpu" in message

    cpu = _target(personas, tmp_path, name="Edge Triton", enabled=False)
    status, code, message = _refusal(_post_deploy(personas.approver, approved, target=cpu.slug))
    assert (status, code) == (409, "target_disabled") and "enabled=true" in message

    ServingTarget.objects.filter(pk=cpu.pk).update(enabled=True)
    status, code, message = _refusal(_post_deploy(personas.approver, approved, profile="nvidia-gpu"))
    assert (status, code) == (409, "profile_mismatch")

    status, code, message = _refusal(_post_deploy(personas.approver, approved, target="nope"))
    assert (status, code) == (400, "unknown_target") and "Its targets: edge-triton, gpu-box." in message

    # a target of another team is not one of this team's targets
    targets.create_target(
        team=personas.other_team,
        user=_superuser(),
        name="Fraud Triton",
        profile="x86-cpu",
        url="http://127.0.0.1:8000",
        repository=str(tmp_path / "fraud"),
        allow_private=True,
    )
    status, code, _ = _refusal(_post_deploy(personas.approver, approved, target="fraud-triton"))
    assert (status, code) == (400, "unknown_target")
    assert not Deployment.objects.exists()


def _superuser():
    from tests.factories import UserFactory

    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"variant": "ort-fp16"}, "unknown_variant", "Choose one of: original, ort-int8, ort-opt"),
        ({"overrides": {"batch": 4}}, "invalid_overrides", "Unknown serving setting batch"),
        ({"overrides": {"instances": 0}}, "invalid_overrides", "instances must be a whole number from 1 to 64"),
        ({"overrides": {"max_batch_size": 4, "preferred_batch_sizes": [8]}}, "invalid_overrides", "outside 1..4"),
        ({"overrides": {"max_queue_delay_us": -1}}, "invalid_overrides", "max_queue_delay_us"),
        ({"overrides": {"instance_kind": "TPU"}}, "invalid_overrides", "CPU or GPU"),
        ({"overrides": {"max_batch_size": 0, "preferred_batch_sizes": [2]}}, "invalid_overrides", "need batching"),
        ({"overrides": [1, 2]}, "invalid_overrides", "JSON object"),
    ],
)
def test_bad_variants_and_overrides_are_refused_with_sentences(personas, target, approved, sent, body, code, words):
    status, got, message = _refusal(_post_deploy(personas.approver, approved, **body))
    assert (status, got) == (400, code) and words in message, message
    assert not Deployment.objects.exists()


def test_a_model_without_a_batch_dimension_refuses_a_max_batch_size(personas, target, sent):
    version = _approved(personas)
    inspect = version.runs.get().jobs.get(kind="inspect")
    inspect.result = {"inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}]}
    inspect.save(update_fields=["result"])
    status, code, message = _refusal(_post_deploy(personas.approver, version, overrides={"max_batch_size": 8}))
    assert (status, code) == (400, "not_batchable") and "no free batch dimension" in message
    body = _post_deploy(personas.approver, version).json()
    assert body["serving"]["max_batch_size"] == 0 and body["serving"]["dynamic_batching"] is False


def test_viewers_and_data_scientists_may_not_deploy_and_outsiders_see_nothing(personas, target, approved, sent):
    for user, role in ((personas.viewer, "viewer"), (personas.owner, "data scientist")):
        status, code, message = _refusal(_post_deploy(user, approved))
        assert (status, code) == (403, "forbidden")
        assert f"Your role in team vision is {role}; deploying and rolling back needs approver or admin." in message
    status, code, _ = _refusal(_post_deploy(personas.outsider, approved))
    assert (status, code) == (404, "not_found")
    assert not Deployment.objects.exists()


def test_a_token_needs_the_deploy_scope(personas, target, approved, sent):
    from rest_framework.test import APIClient

    _, read_only = ApiToken.issue(personas.approver, "ci", ["read"])
    _, deployer = ApiToken.issue(personas.approver, "cd", ["read", "deploy"])
    body = {"version": approved.pk, "target": "edge-triton"}
    refused = APIClient(HTTP_AUTHORIZATION=f"Bearer {read_only}").post("/api/v1/deployments/", body, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "token_scope"
    ok = APIClient(HTTP_AUTHORIZATION=f"Bearer {deployer}").post("/api/v1/deployments/", body, format="json")
    assert ok.status_code == 202
    _, admin_token = ApiToken.issue(personas.admin, "ops", ["read", "deploy"])
    patch = APIClient(HTTP_AUTHORIZATION=f"Bearer {admin_token}").patch(
        f"/api/v1/targets/{target.pk}/", {"enabled": False}, format="json"
    )
    assert patch.status_code == 403 and "'admin'" in patch.json()["message"]


def test_one_change_at_a_time_per_model_and_target(personas, target, approved, sent):
    first = _post_deploy(personas.approver, approved)
    assert first.status_code == 202
    status, code, message = _refusal(_post_deploy(personas.admin, approved))
    assert (status, code) == (409, "deployment_in_progress")
    assert f"Deployment {first.json()['id']} of {approved.model.slug} on edge-triton is pending" in message


def _live(version, target, user, **fields: Any) -> Deployment:
    """A deployment row in a given state, as the worker would have left it."""
    values: dict[str, Any] = {
        "target": target,
        "version": version,
        "model": version.model,
        "profile": target.profile,
        "variant": "ort-opt",
        "triton_model": version.model.slug,
        "triton_version": 1,
        "requested_by": user,
        "status": DeploymentStatus.LIVE,
        "live_at": timezone.now(),
        **fields,
    }
    return Deployment.objects.create(**values)


def test_one_live_deployment_per_model_and_target_is_enforced_by_the_database(personas, target, approved):
    _live(approved, target, personas.approver)
    with pytest.raises(IntegrityError), transaction.atomic():
        _live(approved, target, personas.approver, triton_version=2)
    # another model on the same target may be live at the same time
    other = _approved(personas)
    _live(other, target, personas.approver, triton_model=other.model.slug)
    assert Deployment.objects.filter(status=DeploymentStatus.LIVE).count() == 2


# --- the worker's side -----------------------------------------------------------------------


def _requested(personas, approved, **body: Any) -> Deployment:
    answer = _post_deploy(personas.approver, approved, **body)
    assert answer.status_code == 202, answer.content
    return Deployment.objects.get(pk=answer.json()["id"])


def _outcome() -> lifecycle.Outcome:
    return lifecycle.Outcome(smoke={"live": {"passed": True}}, steps=["loaded"], summary="Live on edge-triton.")


def test_a_claim_is_taken_once_and_every_later_write_is_fenced_by_its_attempt(personas, target, approved, sent):
    deployment = _requested(personas, approved)
    mine = lifecycle.claim(deployment.pk, "worker-a", "t1")
    assert mine is not None and mine.status == DeploymentStatus.PUSHING and mine.attempt == 1
    assert lifecycle.claim(deployment.pk, "worker-b", "t2") is None  # a duplicate message claims nothing
    # the worker went silent: the reconciler re-queues, another worker claims attempt 2
    Deployment.objects.filter(pk=deployment.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert lifecycle.reconcile().requeued_stale == 1
    theirs = lifecycle.claim(deployment.pk, "worker-b", "t3")
    assert theirs is not None and theirs.attempt == 2
    # the first worker wakes up: nothing it writes lands
    assert lifecycle.heartbeat(mine) is False
    assert lifecycle.go_live(mine, _outcome()) is False
    assert lifecycle.fail(mine, "x", "y") is False
    assert lifecycle.go_live(theirs, _outcome()) is True
    assert Deployment.objects.get(pk=deployment.pk).status == DeploymentStatus.LIVE


def test_going_live_retires_the_previous_deployment_in_the_same_transaction(personas, target, sent):
    webhooks.create_webhook(
        team=personas.team,
        user=personas.admin,
        name="ops",
        url="http://127.0.0.1:9/h",
        events=["deployment.live", "deployment.failed", "deployment.rolled_back"],
        allow_private=True,
    )
    first_version = _approved(personas)
    second_version = _approved(personas, model=first_version.model)
    first = _requested(personas, first_version)
    lifecycle.go_live(lifecycle.claim(first.pk, "w", "t"), _outcome())
    second = _requested(personas, second_version)
    assert second.triton_version == 2
    claimed = lifecycle.claim(second.pk, "w", "t")
    # while the new one is pushed, the old one is still the live one
    assert Deployment.objects.get(pk=first.pk).status == DeploymentStatus.LIVE
    assert lifecycle.go_live(claimed, _outcome())
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == DeploymentStatus.RETIRED and first.retired_at is not None
    assert f"Replaced by deployment {second.pk}" in first.status_reason
    assert second.status == DeploymentStatus.LIVE and second.replaces_id == first.pk and second.live_at
    events = [d.event for d in WebhookDelivery.objects.order_by("id")]
    assert events == ["deployment.live", "deployment.live"]
    payload = WebhookDelivery.objects.order_by("-id").first().payload["data"]
    assert payload["deployment"]["id"] == second.pk and payload["replaced"]["id"] == first.pk

    # roll back: a new deployment restores the first one's Triton version; the second is rolled back
    answer = client_for(personas.approver).post(f"/api/v1/deployments/{second.pk}/rollback/")
    assert answer.status_code == 202, answer.content
    rollback = answer.json()
    assert rollback["kind"] == "rollback" and rollback["status"] == "pending"
    assert rollback["rollback_of"] == second.pk and rollback["restores"] == first.pk
    assert rollback["triton_version"] == first.triton_version and rollback["version"] == first_version.pk
    lifecycle.go_live(lifecycle.claim(rollback["id"], "w", "t"), _outcome())
    second.refresh_from_db()
    assert second.status == DeploymentStatus.ROLLED_BACK and second.rolled_back_at is not None
    assert Deployment.objects.get(pk=rollback["id"]).status == DeploymentStatus.LIVE
    assert WebhookDelivery.objects.order_by("-id").first().event == "deployment.rolled_back"
    actions = list(AuditEvent.objects.filter(object_type="deployment").values_list("action", flat=True).order_by("id"))
    assert (
        actions.count("deployment.live") == 3
        and "deployment.retired" in actions
        and "deployment.rolled_back" in actions
    )


def test_a_failed_deployment_leaves_the_live_one_live(personas, target, sent):
    webhooks.create_webhook(
        team=personas.team,
        user=personas.admin,
        name="ops",
        url="http://127.0.0.1:9/h",
        events=["deployment.failed"],
        allow_private=True,
    )
    first_version = _approved(personas)
    live = _live(first_version, target, personas.approver)
    second = _requested(personas, _approved(personas, model=first_version.model))
    claimed = lifecycle.claim(second.pk, "w", "t")
    assert lifecycle.fail(claimed, "load_rejected", "Triton refused it.", detail="failed to load 'x': boom")
    second.refresh_from_db()
    assert second.status == DeploymentStatus.FAILED and second.detail == "failed to load 'x': boom"
    assert Deployment.objects.get(pk=live.pk).status == DeploymentStatus.LIVE
    assert WebhookDelivery.objects.get().payload["data"]["error_code"] == "load_rejected"


def test_the_task_retries_a_transient_failure_then_fails_readably(
    personas, target, approved, sent, monkeypatch, django_capture_on_commit_callbacks
):
    deployment = _requested(personas, approved)

    def unreachable(_: Deployment) -> Any:
        raise TargetError("target_unreachable", "Slipway can't reach the Triton server.", transient=True)

    monkeypatch.setattr(tasks, "_run", unreachable)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.deploy.run(deployment.pk) == "retrying"
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.PENDING and deployment.attempt == 1
    assert (
        deployment.status_reason
        == "Attempt 1 of 5 failed: Slipway can't reach the Triton server. Trying again in 15 s."
    )
    assert sent[-1] == (services.DEPLOY_TASK, deployment.pk, 15)
    Deployment.objects.filter(pk=deployment.pk).update(max_attempts=2)
    assert tasks.deploy.run(deployment.pk) == "failed"  # the last attempt
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.FAILED and deployment.error_code == "target_unreachable"
    assert deployment.status_reason.endswith("Nothing of this model served there before, and nothing does now.")
    assert tasks.deploy.run(deployment.pk) == "not claimed"


def test_a_withdrawn_approval_stops_a_pending_deployment(personas, target, approved, sent):
    deployment = _requested(personas, approved)
    approvals.revoke(approved, personas.approver, "a bug")
    assert tasks.deploy.run(deployment.pk) == "failed"
    deployment.refresh_from_db()
    assert deployment.error_code == "approval_changed" and "no longer approved" in deployment.status_reason


def test_the_reconciler_fails_a_deployment_whose_worker_keeps_dying(personas, target, approved, sent):
    deployment = _requested(personas, approved)
    claimed = lifecycle.claim(deployment.pk, "w", "t")
    Deployment.objects.filter(pk=deployment.pk).update(
        attempt=claimed.max_attempts, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert lifecycle.reconcile().failed_exhausted == 1
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.FAILED and "stopped responding" in deployment.status_reason
    # a message that was lost is sent again
    lost = _requested(personas, _approved(personas))
    Deployment.objects.filter(pk=lost.pk).update(enqueued_at=timezone.now() - timedelta(hours=1))
    sent.clear()
    report = lifecycle.reconcile()
    assert report.resent_lost == 1


def test_rollback_and_undeploy_refusals(personas, target, approved, sent):
    live = _live(approved, target, personas.approver)
    approver = client_for(personas.approver)
    status, code, message = _refusal(approver.post(f"/api/v1/deployments/{live.pk}/rollback/"))
    assert (status, code) == (409, "nothing_to_roll_back_to") and "Undeploy it instead" in message
    assert client_for(personas.owner).post(f"/api/v1/deployments/{live.pk}/undeploy/").status_code == 403
    assert client_for(personas.outsider).post(f"/api/v1/deployments/{live.pk}/undeploy/").status_code == 404
    undone = approver.post(f"/api/v1/deployments/{live.pk}/undeploy/")
    assert undone.status_code == 202 and undone.json()["status"] == "undeploying"
    assert undone.json()["undeploy_requested_by"] == "april"
    status, code, _ = _refusal(approver.post(f"/api/v1/deployments/{live.pk}/undeploy/"))
    assert (status, code) == (409, "deployment_undeploying")
    assert sent == []  # sent after commit only
    # the worker takes it off the server; a target with anything live can't be deleted meanwhile
    admin = client_for(personas.admin)
    status, code, message = _refusal(admin.delete(f"/api/v1/targets/{target.pk}/"))
    assert (status, code) == (409, "target_in_use") and "Undeploy them first" in message
    claimed = lifecycle.claim_undeploy(live.pk, "w", "t")
    assert claimed is not None and lifecycle.claim_undeploy(live.pk, "w2", "t2") is None
    assert lifecycle.undeployed(claimed)
    live.refresh_from_db()
    assert live.status == DeploymentStatus.RETIRED and "Undeployed by april" in live.status_reason
    assert admin.delete(f"/api/v1/targets/{target.pk}/").status_code == 204


def test_a_failed_undeploy_leaves_the_deployment_live(personas, target, approved, sent):
    live = _live(approved, target, personas.approver)
    deploying.undeploy(live, personas.approver)
    claimed = lifecycle.claim_undeploy(live.pk, "w", "t")
    assert lifecycle.undeploy_failed(claimed, "server_error", "the server refused.")
    live.refresh_from_db()
    assert live.status == DeploymentStatus.LIVE and live.status_reason.startswith("Undeploying failed")


def test_deployments_are_listed_with_filters(personas, target, approved, sent):
    live = _live(approved, target, personas.approver)
    failed = _live(_approved(personas), target, personas.approver, status=DeploymentStatus.FAILED, live_at=None)
    viewer = client_for(personas.viewer)

    def ids(query: str) -> list[int]:
        answer = viewer.get(f"/api/v1/deployments/{query}")
        assert answer.status_code == 200, answer.content
        return [d["id"] for d in answer.json()["results"]]

    assert ids("") == [failed.pk, live.pk]
    assert ids("?status=live") == [live.pk]
    assert ids(f"?model={approved.model.slug}&target=edge-triton&team=vision") == [live.pk]
    assert ids(f"?version={failed.version_id}") == [failed.pk]
    assert ids("?target=other") == []
    assert viewer.get("/api/v1/deployments/?status=broken").json()["code"] == "invalid_status"
    assert viewer.get("/api/v1/deployments/?version=abc").json()["code"] == "invalid_version"
    assert client_for(personas.outsider).get("/api/v1/deployments/").json()["results"] == []
    assert client_for(personas.outsider).get(f"/api/v1/deployments/{live.pk}/").status_code == 404


def test_a_retried_deploy_request_with_the_same_key_makes_one_deployment(personas, target, approved, sent):
    client = client_for(personas.approver)
    body = {"version": approved.pk, "target": "edge-triton"}
    first = client.post("/api/v1/deployments/", body, format="json", HTTP_IDEMPOTENCY_KEY="deploy-1")
    again = client.post("/api/v1/deployments/", body, format="json", HTTP_IDEMPOTENCY_KEY="deploy-1")
    assert first.status_code == again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert Deployment.objects.count() == 1


def test_the_reconciler_resends_a_lost_undeploy_and_gives_up_readably(personas, target, approved, sent):
    live = _live(approved, target, personas.approver)
    deploying.undeploy(live, personas.approver)
    Deployment.objects.filter(pk=live.pk).update(enqueued_at=timezone.now() - timedelta(hours=1))
    assert lifecycle.reconcile().resent_lost == 1
    claimed = lifecycle.claim_undeploy(live.pk, "w", "t")
    Deployment.objects.filter(pk=live.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1), max_attempts=claimed.attempt
    )
    assert lifecycle.reconcile().failed_exhausted == 1
    live.refresh_from_db()
    assert live.status == DeploymentStatus.LIVE and "stopped responding" in live.status_reason


def test_smoke_numbers_are_stored_as_json_postgresql_accepts():
    assert tasks._finite({"cosine": float("nan"), "errors": [1.5, float("inf")], "n": 3}) == {
        "cosine": None,
        "errors": [1.5, None],
        "n": 3,
    }
