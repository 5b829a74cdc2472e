"""A real pipeline on a real worker ends in review: gates evaluated on its numbers, the
team's approvers emailed and its webhook told, then a second person approves it on the
evidence while the uploader can't (four eyes); every step is in the audit trail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.audit.models import AuditEvent
from apps.registry.models import VersionStatus
from apps.webhooks import services as webhooks
from apps.webhooks.models import DeliveryStatus, WebhookDelivery
from tests import modelzoo
from tests.apps.test_webhooks import Receiver
from tests.conftest import client_for
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_finished_pipeline_is_reviewed_on_its_evidence(personas, celery_worker_process, tmp_path):
    mail_dir = Path(settings.DATA_DIR) / "mail"
    before = set(mail_dir.glob("*")) if mail_dir.exists() else set()
    admin = client_for(personas.admin)
    assert (
        admin.post(
            "/api/v1/policies/",
            {"team": "vision", "name": "p99 under 1 s", "kind": "max_p99_latency", "params": {"max_ms": 1000}},
            format="json",
        ).status_code
        == 201
    )
    with Receiver([200, 200, 200]) as receiver:
        webhooks.create_webhook(
            team=personas.team,
            user=personas.admin,
            name="ops",
            url=receiver.url,
            events=["version.ready", "version.approved"],
            allow_private=True,
        )
        model = modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx")
        owner = client_for(personas.owner)
        created = owner.post(
            "/api/v1/models/scorer/versions/",
            {"file": SimpleUploadedFile("mlp.onnx", model.read_bytes()), "team": "vision", "profiles": "x86-cpu"},
            format="multipart",
        )
        assert created.status_code == 201, created.content
        version_id = created.json()["id"]

        def finished():
            body = owner.get(f"/api/v1/versions/{version_id}/").json()
            return body if body["status"] in (VersionStatus.READY, VersionStatus.FAILED) else None

        body = wait_for(finished, timeout=300, what="the pipeline to finish")
        assert body["status"] == VersionStatus.READY, body["status_reason"]

        review = client_for(personas.approver).get(f"/api/v1/versions/{version_id}/review/").json()
        (gate,) = review["gates"]
        assert gate["passed"] is True and 0 < gate["value"] < 1000
        evidence = review["evidence"]["profiles"]["x86-cpu"]
        assert evidence["worker"]["host"] and evidence["support"]["onnxruntime"]["verdict"] == "full"
        assert review["evidence"]["artifacts"]["source"]["sha256"] == body["source_artifact"]["sha256"]

        # the uploader can't approve; a second person can, and the decision keeps the evidence hash
        assert owner.post(f"/api/v1/versions/{version_id}/approve/").status_code == 403
        approved = client_for(personas.approver).post(
            f"/api/v1/versions/{version_id}/approve/", {"comment": "p99 well within budget"}, format="json"
        )
        assert approved.status_code == 201, approved.json()
        assert approved.json()["evidence_sha256"] == review["evidence_sha256"]

        def delivered():
            rows = WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED)
            return rows.count() == 2 or None

        wait_for(delivered, timeout=60, what="the version.ready and version.approved webhooks")
    events = [json.loads(r.body)["event"] for r in receiver.requests]
    assert events == ["version.ready", "version.approved"]

    # the approvers (not the uploader) got a review request, written by the worker
    def mailed():
        new = set(mail_dir.glob("*")) - before if mail_dir.exists() else set()
        return new or None

    (message,) = wait_for(mailed, timeout=30, what="the review email")
    text = message.read_text()
    assert "april@example.com" in text and "ada@example.com" in text and "dana@" not in text
    assert "scorer v1 is ready for review" in text

    trail = list(AuditEvent.objects.filter(object_type="modelversion", object_id=str(version_id)).order_by("id"))
    changes = [(e.action, (e.after or {}).get("status"), e.actor) for e in trail]
    assert changes[0] == ("version.status_changed", "processing", "dana")
    (ready,) = [e for e in trail if (e.after or {}).get("status") == "ready"]
    assert ready.actor.startswith("worker@") and ready.via == "worker"
    assert changes[-1][0] == "version.approved" and trail[-1].actor == "april"
