"""Review flow: approve and reject on evidence, four eyes, gates with overrides, revocation,
re-runs that make an approval stale, and every refusal as a 4xx sentence that changes nothing."""

from __future__ import annotations

import json

import pytest
from django.core import mail
from django.db import connection, transaction
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.approvals import notifications
from apps.approvals.evidence import evidence_hash
from apps.approvals.models import Decision, Policy
from apps.audit.models import AuditEvent
from apps.pipeline.models import Job
from apps.registry.models import ModelVersion, VersionStatus
from tests.conftest import client_for
from tests.finished import finished_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(broker):
    """Messages to workers are recorded, not sent."""


def _post(user, version, action, **body):
    return client_for(user).post(f"/api/v1/versions/{version.pk}/{action}/", body, format="json")


def _status(version) -> str:
    return ModelVersion.objects.values_list("status", flat=True).get(pk=version.pk)


def test_approver_approves_on_evidence_and_the_decision_keeps_it(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    review = client_for(personas.approver).get(f"/api/v1/versions/{version.pk}/review/").json()
    assert review["you_can_review"] is True and review["gates_passed"] is True
    winner = review["evidence"]["profiles"]["x86-cpu"]["recommendation"]["winner"]
    assert winner["name"] == "ort-int8" and winner["sha256"] and winner["benchmark"][0]["p99_ms"] == 1.0

    response = _post(personas.approver, version, "approve", comment="numbers look right")
    assert response.status_code == 201, response.json()
    decision = Decision.objects.get(pk=response.json()["id"])
    assert decision.evidence_sha256 == review["evidence_sha256"] == evidence_hash(decision.evidence)
    assert decision.evidence["profiles"]["x86-cpu"]["support"]["onnxruntime"]["runtime_version"] == "1.0"
    assert _status(version) == VersionStatus.APPROVED
    body = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/").json()
    assert body["approval"] == {
        "approved": True,
        "current": True,
        "decision_id": decision.pk,
        "reason": "Approved on the current evidence.",
    }
    actions = list(AuditEvent.objects.filter(object_id=str(version.pk)).values_list("action", flat=True))
    assert "version.approved" in actions and "version.status_changed" in actions


def test_the_evidence_names_the_worker_that_measured_even_beside_another_on_its_host(personas):
    """Jobs record the worker's node name: of two workers on one host (one with a GPU), the
    evidence describes the one that ran the benchmark, not whichever reported in last."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.hardware.models import Worker

    now = timezone.now()
    for name, cpu, seen in (("cpu@box", "Xeon (cpu worker)", now - timedelta(seconds=30)), ("gpu@box", "Xeon", now)):
        Worker.objects.create(
            name=name,
            host="box",
            cpu_model=cpu,
            cores=8,
            started_at=now,
            last_heartbeat_at=seen,
            gpus=[{"name": "H100"}] if name.startswith("gpu") else [],
        )
    version = finished_version(team=personas.team, uploader=personas.owner)
    Job.objects.filter(run__version=version).update(worker_host="cpu@box")
    review = client_for(personas.approver).get(f"/api/v1/versions/{version.pk}/review/").json()
    worker = review["evidence"]["profiles"]["x86-cpu"]["worker"]
    assert worker["cpu_model"] == "Xeon (cpu worker)" and worker["gpus"] == []


def test_four_eyes_blocks_the_uploader_and_can_be_turned_off(personas):
    version = finished_version(team=personas.team, uploader=personas.admin)
    response = _post(personas.admin, version, "approve")
    assert response.status_code == 403
    assert response.json()["code"] == "four_eyes" and "another approver" in response.json()["message"]
    assert _status(version) == VersionStatus.READY and not Decision.objects.exists()
    review = client_for(personas.admin).get(f"/api/v1/versions/{version.pk}/review/").json()
    assert review["four_eyes"]["blocks_you"] is True and review["you_can_review"] is False

    # another approver may; or the team turns the rule off, for versions uploaded from then on
    turned_off = client_for(personas.admin).patch("/api/v1/teams/vision/", {"four_eyes": False}, format="json")
    assert turned_off.status_code == 200 and turned_off.json()["four_eyes"] is False
    assert AuditEvent.objects.filter(action="team.updated", after__four_eyes=False).exists()
    later = finished_version(team=personas.team, uploader=personas.admin)
    assert _post(personas.admin, later, "approve").status_code == 201


def test_turning_four_eyes_off_does_not_free_a_waiting_version(personas):
    """The bypass from the security review: an admin uploads, turns the rule off, approves their
    own version and turns the rule back on. The rule in force at the upload stays with it."""
    admin = client_for(personas.admin)
    version = finished_version(team=personas.team, uploader=personas.admin)
    assert admin.patch("/api/v1/teams/vision/", {"four_eyes": False}, format="json").status_code == 200

    refused = _post(personas.admin, version, "approve")
    assert refused.status_code == 403 and refused.json()["code"] == "four_eyes"
    assert "only to versions uploaded afterwards" in refused.json()["message"]
    assert "another approver" in refused.json()["message"]
    assert _status(version) == VersionStatus.READY and not Decision.objects.exists()
    review = admin.get(f"/api/v1/versions/{version.pk}/review/").json()
    assert review["four_eyes"] == {"enabled": True, "you_uploaded": True, "blocks_you": True}
    queue = admin.get("/api/v1/versions/?reviewable=true").json()["results"]
    assert version.pk not in [v["id"] for v in queue]
    # turning it off is a decision of its own on the trail
    disabled = AuditEvent.objects.get(action="team.four_eyes_disabled")
    assert disabled.actor == "ada" and disabled.after["undecided_versions_keeping_the_rule"] == 1
    # another approver still can
    assert _post(personas.approver, version, "approve").status_code == 201


def test_four_eyes_turned_on_applies_to_versions_already_uploaded_for_good(personas):
    admin = client_for(personas.admin)
    admin.patch("/api/v1/teams/vision/", {"four_eyes": False}, format="json")
    version = finished_version(team=personas.team, uploader=personas.admin)
    assert ModelVersion.objects.get(pk=version.pk).four_eyes is False  # the rule was off at the upload
    # the strictest rule since the upload applies: on, then off again, still on for this version
    admin.patch("/api/v1/teams/vision/", {"four_eyes": True}, format="json")
    assert AuditEvent.objects.get(action="team.four_eyes_enabled").after == {"versions_newly_under_the_rule": 1}
    admin.patch("/api/v1/teams/vision/", {"four_eyes": False}, format="json")
    assert _post(personas.admin, version, "approve").status_code == 403
    assert _status(version) == VersionStatus.READY


def test_versions_from_before_the_field_take_their_teams_rule(personas):
    import importlib

    from django.apps import apps as django_apps

    migration = importlib.import_module("apps.registry.migrations.0005_version_four_eyes")
    strict = finished_version(team=personas.team, uploader=personas.admin)
    lax = finished_version(team=personas.other_team, uploader=personas.outsider)
    type(personas.other_team).objects.filter(pk=personas.other_team.pk).update(four_eyes=False)
    migration.rule_in_force(django_apps, None)
    assert ModelVersion.objects.get(pk=strict.pk).four_eyes is True
    assert ModelVersion.objects.get(pk=lax.pk).four_eyes is False


def test_an_upload_records_the_rule_in_force(personas, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests import modelzoo

    onnx = modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx").read_bytes()
    admin = client_for(personas.admin)

    def upload() -> ModelVersion:
        response = admin.post(
            "/api/v1/models/digits/versions/",
            {"file": SimpleUploadedFile("m.onnx", onnx), "team": "vision"},
            format="multipart",
        )
        assert response.status_code == 201, response.json()
        return ModelVersion.objects.get(pk=response.json()["id"])

    assert upload().four_eyes is True
    admin.patch("/api/v1/teams/vision/", {"four_eyes": False}, format="json")
    assert upload().four_eyes is False


@pytest.mark.parametrize(
    ("who", "expected"), [("viewer", 403), ("owner", 403), ("outsider", 404), ("approver", 201), ("admin", 201)]
)
def test_who_may_approve(personas, who, expected):
    version = finished_version(team=personas.team, uploader=personas.owner)
    assert _post(getattr(personas, who), version, "approve").status_code == expected


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (VersionStatus.PROCESSING, "version_processing"),
        (VersionStatus.FAILED, "version_failed"),
        (VersionStatus.REJECTED, "version_rejected"),
    ],
)
def test_approving_a_version_not_ready_is_a_409_that_changes_nothing(personas, state, code):
    version = finished_version(team=personas.team, uploader=personas.owner, status=state)
    response = _post(personas.approver, version, "approve")
    assert response.status_code == 409 and response.json()["code"] == code
    assert _status(version) == state and not Decision.objects.exists()


def test_approving_twice_says_who_approved(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    assert _post(personas.approver, version, "approve").status_code == 201
    again = _post(personas.admin, version, "approve")
    assert again.status_code == 409
    assert "already approved by april" in again.json()["message"]
    assert Decision.objects.count() == 1


def test_reject_needs_a_comment(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    response = _post(personas.approver, version, "reject", comment="  ")
    assert response.status_code == 400 and response.json()["code"] == "comment_required"
    assert _status(version) == VersionStatus.READY
    ok = _post(personas.approver, version, "reject", comment="p99 regressed on the GPU")
    assert ok.status_code == 201 and _status(version) == VersionStatus.REJECTED
    history = client_for(personas.owner).get(f"/api/v1/versions/{version.pk}/decisions/").json()
    assert [(d["kind"], d["comment"]) for d in history] == [("reject", "p99 regressed on the GPU")]


def test_revoke_keeps_history_and_a_rerun_makes_an_approval_stale(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    assert _post(personas.approver, version, "approve").status_code == 201
    assert _post(personas.approver, version, "revoke").status_code == 400  # comment required
    assert _post(personas.approver, version, "revoke", comment="wrong calibration set").status_code == 201
    assert _status(version) == VersionStatus.REVOKED
    kinds = [d["kind"] for d in client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/decisions/").json()]
    assert kinds == ["revoke", "approve"]

    # a re-run of an approved version: the approval no longer applies
    second = finished_version(team=personas.team, uploader=personas.owner)
    assert _post(personas.approver, second, "approve").status_code == 201
    rerun = _post(personas.owner, second, "rerun")
    assert rerun.status_code == 202
    assert _status(second) == VersionStatus.PROCESSING
    approval = client_for(personas.viewer).get(f"/api/v1/versions/{second.pk}/").json()["approval"]
    assert approval["approved"] is False


def _failed_at_import(version, code: str) -> None:
    job = Job.objects.filter(run__version=version).order_by("sequence").first()
    Job.objects.filter(pk=job.pk).update(status="failed", error_code=code, error="the import failed")
    ModelVersion.objects.filter(pk=version.pk).update(status=VersionStatus.FAILED)


def test_a_failure_only_a_new_upload_can_fix_is_not_offered_a_rerun(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    _failed_at_import(version, "inputs_required")
    body = client_for(personas.owner).get(f"/api/v1/versions/{version.pk}/").json()
    assert "would fail the same way" in body["rerun_blocked"] and "--inputs" in body["rerun_blocked"]
    refused = _post(personas.owner, version, "rerun")
    assert refused.status_code == 409 and refused.json()["code"] == "rerun_cannot_help"
    assert refused.json()["message"] == body["rerun_blocked"]
    assert _status(version) == VersionStatus.FAILED

    # a failure a re-run may cure (a worker lost, a timeout...) is still re-run
    other = finished_version(team=personas.team, uploader=personas.owner)
    _failed_at_import(other, "worker_lost")
    assert client_for(personas.owner).get(f"/api/v1/versions/{other.pk}/").json()["rerun_blocked"] == ""
    assert _post(personas.owner, other, "rerun").status_code == 202
    assert _status(other) == VersionStatus.PROCESSING


def test_changed_evidence_makes_the_approval_not_current(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    assert _post(personas.approver, version, "approve").status_code == 201
    benchmark = Job.objects.get(run__version=version, kind="benchmark")
    benchmark.result["variants"]["ort-int8"]["points"][0]["p99_ms"] = 9.0
    benchmark.save(update_fields=["result"])
    approval = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/").json()["approval"]
    assert approval["approved"] is True and approval["current"] is False
    assert "evidence changed" in approval["reason"]


def test_a_failing_gate_needs_an_override_which_is_recorded(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    created = client_for(personas.admin).post(
        "/api/v1/policies/",
        {"team": "vision", "name": "p99 under 0.5 ms", "kind": "max_p99_latency", "params": {"max_ms": 0.5}},
        format="json",
    )
    assert created.status_code == 201, created.json()
    gates = client_for(personas.approver).get(f"/api/v1/versions/{version.pk}/review/").json()["gates"]
    assert [(g["name"], g["passed"], g["value"], g["threshold"]) for g in gates] == [
        ("p99 under 0.5 ms", False, 1.0, 0.5)
    ]
    refused = _post(personas.approver, version, "approve")
    assert refused.status_code == 409 and refused.json()["code"] == "gates_failed"
    assert "p99 1 ms at batch 1, concurrency 1, over 0.5 ms" in refused.json()["message"]
    assert _status(version) == VersionStatus.READY
    ok = _post(personas.approver, version, "approve", override_reason="edge box is 4x faster than this worker")
    assert ok.status_code == 201
    decision = Decision.objects.get()
    assert decision.gates_passed is False and decision.override_reason.startswith("edge box")
    assert AuditEvent.objects.get(action="version.approved").after["override_reason"].startswith("edge box")


def test_accuracy_drift_and_backend_gates(personas):
    version = finished_version(
        team=personas.team, uploader=personas.owner, backends={"onnxruntime": "full", "openvino": "partial"}
    )
    admin = client_for(personas.admin)
    for body in (
        {"name": "cosine", "kind": "max_accuracy_drift", "params": {"min_cosine": 0.9999}},
        {"name": "ov", "kind": "required_backends_supported", "params": {"backends": ["onnxruntime", "openvino"]}},
        {"name": "gpu", "kind": "no_cpu_fallback", "params": {}},
    ):
        assert admin.post("/api/v1/policies/", {"team": "vision", **body}, format="json").status_code == 201
    gates = {
        g["name"]: g for g in client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/review/").json()["gates"]
    }
    assert gates["cosine"]["passed"] is False and "cosine 0.999 is below 0.9999" in gates["cosine"]["message"]
    assert gates["ov"]["passed"] is False and "openvino is partial" in gates["ov"]["message"]
    assert gates["gpu"]["passed"] is True  # x86-cpu is not a GPU profile


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"kind": "max_p99_latency", "params": {}}, "'max_ms' is required: the p99 latency allowed, in milliseconds"),
        ({"kind": "max_p99_latency", "params": {"max_ms": 0}}, "The setting max_ms must be above 0"),
        ({"kind": "max_p99_latency", "params": {"max_ms": -1}}, "The setting max_ms must be a number of 0 or more"),
        ({"kind": "max_p99_latency", "params": {"max_ms": 5, "batch": 1.5}}, "batch must be a whole number of 1"),
        ({"kind": "max_accuracy_drift", "params": {}}, "No limit given"),
        ({"kind": "max_accuracy_drift", "params": {"min_cosine": 1.5}}, "min_cosine must be a number from 0 to 1"),
        ({"kind": "required_backends_supported", "params": {"backends": []}}, "a list of one or more non-empty"),
        ({"kind": "no_cpu_fallback", "params": {"x": 1}}, "This kind takes no parameters"),
        ({"kind": "max_accuracy_drift", "params": {"cosine": 1}}, "Unknown setting(s) cosine"),
        ({"kind": "nonsense", "params": {}}, "kind"),
        ({"kind": "max_p99_latency", "params": {"max_ms": 5}, "profile": "quantum"}, "Unknown hardware profile"),
    ],
)
def test_bad_policies_are_400s(personas, body, fragment):
    response = client_for(personas.admin).post(
        "/api/v1/policies/", {"team": "vision", "name": "x", **body}, format="json"
    )
    assert response.status_code == 400 and fragment in response.json()["message"], response.json()
    assert not Policy.objects.exists()


def test_tokens_need_the_scope_and_must_be_live(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    _, read_only = ApiToken.issue(personas.approver, "ci", ["read"])
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {read_only}")
    assert client.get(f"/api/v1/versions/{version.pk}/review/").status_code == 200
    refused = client.post(f"/api/v1/versions/{version.pk}/approve/", {}, format="json")
    assert refused.status_code == 403 and "needs 'approve'" in refused.json()["message"]

    token, approving = ApiToken.issue(personas.approver, "ci", ["read", "approve"])
    ApiToken.objects.filter(pk=token.pk).update(revoked_at="2026-01-01T00:00:00Z")
    revoked = APIClient(HTTP_AUTHORIZATION=f"Bearer {approving}").post(f"/api/v1/versions/{version.pk}/approve/")
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]
    assert _status(version) == VersionStatus.READY

    _, good = ApiToken.issue(personas.approver, "ci", ["read", "approve"])
    assert (
        APIClient(HTTP_AUTHORIZATION=f"Bearer {good}").post(f"/api/v1/versions/{version.pk}/approve/").status_code
        == 201
    )
    event = AuditEvent.objects.get(action="version.approved")
    assert event.via.startswith("token:") and event.actor == "april" and event.request_id


def test_version_ready_emails_approvers_but_not_the_uploader(personas, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    version = finished_version(team=personas.team, uploader=personas.admin)
    assert notifications.send_review_request(version) == 1
    (message,) = mail.outbox
    assert message.to == ["april@example.com"]  # the admin uploaded it: four eyes, not asked
    assert "ready for review" in message.subject and f"/app/versions/{version.pk}" in message.body


def test_review_queue_lists_what_waits_for_you(personas):
    mine = finished_version(team=personas.team, uploader=personas.admin)
    theirs = finished_version(team=personas.team, uploader=personas.owner)
    finished_version(team=personas.team, uploader=personas.owner, status=VersionStatus.PROCESSING)
    queue = client_for(personas.admin).get("/api/v1/versions/?reviewable=true").json()["results"]
    assert [v["id"] for v in queue] == [theirs.pk]
    assert mine.pk not in [v["id"] for v in queue]
    assert client_for(personas.owner).get("/api/v1/versions/?reviewable=true").json()["results"] == []
    assert client_for(personas.outsider).get("/api/v1/versions/").json()["results"] == []


def test_audit_trail_is_append_only_in_the_database(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    _post(personas.approver, version, "approve")
    event = AuditEvent.objects.filter(action="version.approved").get()
    for statement in (
        "UPDATE audit_auditevent SET actor = 'mallory' WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ):
        with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).actor == "april"


def test_audit_export_csv_and_json_scoped_to_the_team(personas):
    version = finished_version(team=personas.team, uploader=personas.owner)
    _post(personas.approver, version, "approve", comment="ok")
    admin = client_for(personas.admin)
    csv_body = b"".join(admin.get("/api/v1/audit/export/?format=csv").streaming_content).decode()
    header, *rows = csv_body.strip().splitlines()
    assert header.startswith("id,created_at,actor") and any("version.approved" in r for r in rows)
    json_body = b"".join(admin.get("/api/v1/audit/export/?format=json&action=version.").streaming_content)
    events = json.loads(json_body)
    assert events and all(e["action"].startswith("version.") for e in events)
    assert client_for(personas.outsider).get("/api/v1/audit/").json()["results"] == []
    # a data scientist sees only what they did
    own = client_for(personas.owner).get("/api/v1/audit/").json()["results"]
    assert all(e["actor"] == "dana" for e in own)


@pytest.mark.parametrize(("slowest", "passed"), [(0.4, True), (3.0, False)])
def test_a_p99_the_samples_cant_support_is_bounded_by_the_slowest_request(personas, slowest, passed):
    """Too few samples for a p99 (a short run): the slowest request bounds it. Within the limit
    it passes and says why; over the limit nothing is known, and the gate says to measure longer."""
    version = finished_version(team=personas.team, uploader=personas.owner)
    benchmark = Job.objects.get(run__version=version, kind="benchmark")
    point = benchmark.result["variants"]["ort-int8"]["points"][0]
    point.update(
        p99_ms=None, max_ms=slowest, samples=180, p99_note="not enough samples (180) for p99: it needs at least 1,000"
    )
    benchmark.save(update_fields=["result"])
    admin = client_for(personas.admin)
    body = {"team": "vision", "name": "p99 under 2 ms", "kind": "max_p99_latency", "params": {"max_ms": 2}}
    assert admin.post("/api/v1/policies/", body, format="json").status_code == 201
    (gate,) = client_for(personas.approver).get(f"/api/v1/versions/{version.pk}/review/").json()["gates"]
    assert gate["passed"] is passed
    assert "not enough samples (180) for p99" in gate["message"]
    if passed:
        assert gate["value"] == 0.4 and "so the p99 is within 2 ms" in gate["message"]
    else:
        assert gate["value"] is None and "measure longer" in gate["message"]


def test_policy_kinds_describe_the_params_the_server_checks(personas):
    kinds = {k["kind"]: k for k in client_for(personas.viewer).get("/api/v1/policies/kinds/").json()}
    assert set(kinds) == {"max_accuracy_drift", "max_p99_latency", "required_backends_supported", "no_cpu_fallback"}
    latency = {p["key"]: p for p in kinds["max_p99_latency"]["params"]}
    assert latency["max_ms"]["required"] and latency["max_ms"]["type"] == "number"
    assert latency["batch"]["default"] == 1 and latency["batch"]["minimum"] == 1 and not latency["batch"]["required"]
    drift = kinds["max_accuracy_drift"]
    assert drift["at_least_one"] and {p["key"] for p in drift["params"]} == {
        "max_abs_error",
        "max_rel_error",
        "p99_abs_error",
        "min_cosine",
        "min_top1_agreement",
    }
    assert {p["key"]: p["maximum"] for p in drift["params"]}["min_cosine"] == 1
    assert kinds["required_backends_supported"]["params"][0]["type"] == "string_list"
    assert kinds["no_cpu_fallback"]["params"] == [] and not kinds["no_cpu_fallback"]["at_least_one"]
    # what the description allows, the server takes: each spec's bound is the one it checks
    admin = client_for(personas.admin)
    for value, status in ((0.000001, 201), (0, 400)):
        body = {"team": "vision", "name": f"p99 {value}", "kind": "max_p99_latency", "params": {"max_ms": value}}
        assert admin.post("/api/v1/policies/", body, format="json").status_code == status


def test_the_browser_tests_copy_of_the_policy_kinds_is_the_servers(personas):
    """frontend/src/test/fixtures/policy-kinds.json (the team page's tests build gates from it) is
    what GET /policies/kinds/ answers; regenerate it from this answer when the specs change."""
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[2] / "frontend/src/test/fixtures/policy-kinds.json"
    answer = client_for(personas.viewer).get("/api/v1/policies/kinds/").json()
    assert json.loads(fixture.read_text()) == answer
