"""Downloading what Slipway holds: an artifact's bytes, a version's reports, a decision's evidence.

Members of the team get files (checked by sha256, audited); outsiders get a 404, anonymous
callers a 401, and a file gone from storage is a sentence, not a 500."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.approvals import services as approvals
from apps.approvals.evidence import evidence_hash
from apps.approvals.models import Decision
from apps.audit.models import AuditEvent
from apps.registry.models import Artifact, ArtifactKind, ModelVersion
from apps.registry.storage import blob_key, put_blob
from tests.conftest import client_for
from tests.factories import ModelVersionFactory
from tests.finished import finished_version

pytestmark = pytest.mark.django_db

MODEL_BYTES = b"\x08\x07" + bytes(range(256)) * 64  # not text: the body must come back byte for byte


def _stored(version: ModelVersion, data: bytes = MODEL_BYTES, **fields: Any) -> Artifact:
    """An artifact of `version` whose bytes really are in the artifact storage."""
    digest = hashlib.sha256(data).hexdigest()
    key, _ = put_blob(io.BytesIO(data), digest)
    defaults: dict[str, Any] = {"kind": ArtifactKind.VARIANT, "name": "x86-cpu/ort-int8", "format": "onnx"}
    return Artifact.objects.create(
        version=version, sha256=digest, size=len(data), storage_key=key, **{**defaults, **fields}
    )


def _body(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def version(personas) -> ModelVersion:
    return finished_version(team=personas.team, uploader=personas.owner)


def test_a_member_downloads_the_bytes_with_their_sha256(personas, version):
    artifact = _stored(version)
    response = client_for(personas.viewer).get(f"/api/v1/artifacts/{artifact.pk}/download/")
    assert response.status_code == 200
    body = _body(response)
    assert body == MODEL_BYTES
    assert response["X-Slipway-SHA256"] == hashlib.sha256(body).hexdigest() == artifact.sha256
    assert response["ETag"] == f'"{artifact.sha256}"'
    assert response["Content-Length"] == str(len(MODEL_BYTES))
    assert response["Content-Type"] == "application/octet-stream"
    slug = version.model.slug
    assert response["Content-Disposition"] == f'attachment; filename="{slug}-v{version.number}-x86-cpu_ort-int8.onnx"'


def test_the_download_is_in_the_audit_trail(personas, version):
    artifact = _stored(version)
    client_for(personas.viewer).get(f"/api/v1/artifacts/{artifact.pk}/download/")
    event = AuditEvent.objects.get(action="artifact.downloaded")
    assert event.actor == personas.viewer.username and event.team == "vision"
    assert event.object_type == "artifact" and event.object_id == str(artifact.pk)
    assert {k: event.after[k] for k in ("name", "kind", "sha256", "size")} == {
        "name": "x86-cpu/ort-int8",
        "kind": "variant",
        "sha256": artifact.sha256,
        "size": len(MODEL_BYTES),
    }


def test_asking_with_the_etag_or_for_headers_only_is_not_a_download(personas, version):
    artifact = _stored(version)
    response = client_for(personas.viewer).get(
        f"/api/v1/artifacts/{artifact.pk}/download/", HTTP_IF_NONE_MATCH=f'"{artifact.sha256}"'
    )
    assert response.status_code == 304
    head = client_for(personas.viewer).head(f"/api/v1/artifacts/{artifact.pk}/download/")
    assert head.status_code == 200 and head["X-Slipway-SHA256"] == artifact.sha256
    assert head["Content-Length"] == str(len(MODEL_BYTES))
    assert not AuditEvent.objects.filter(action="artifact.downloaded").exists()


def test_file_names_hold_safe_characters_only(personas, version):
    source = _stored(
        version,
        b"weights",
        kind=ArtifactKind.SOURCE,
        name='a "quoted"\r\nname/../x',
        format="pytorch",
        original_filename="my model.PT",
    )
    bundle = _stored(version, b"zipped", kind=ArtifactKind.ONNX, name="onnx", format="onnx-zip")
    client = client_for(personas.owner)
    disposition = client.get(f"/api/v1/artifacts/{source.pk}/download/")["Content-Disposition"]
    assert disposition == f'attachment; filename="{version.model.slug}-v{version.number}-a_quoted_name_.._x.PT"'
    disposition = client.get(f"/api/v1/artifacts/{bundle.pk}/download/")["Content-Disposition"]
    assert disposition.endswith(f'-v{version.number}-onnx.zip"')


def test_an_outsider_gets_404_and_anonymous_401(personas, version):
    artifact = _stored(version)
    url = f"/api/v1/artifacts/{artifact.pk}/download/"
    refused = client_for(personas.outsider).get(url)
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    assert APIClient().get(url).status_code == 401
    assert client_for(personas.owner).get("/api/v1/artifacts/999999999/download/").status_code == 404
    assert not AuditEvent.objects.filter(action="artifact.downloaded").exists()


def test_a_token_needs_the_read_scope(personas, version):
    artifact = _stored(version)
    url = f"/api/v1/artifacts/{artifact.pk}/download/"
    _, upload_only = ApiToken.issue(personas.owner, "ci", ["upload"])
    refused = APIClient(HTTP_AUTHORIZATION=f"Bearer {upload_only}").get(url)
    assert refused.status_code == 403 and "'read'" in refused.json()["message"]
    _, reader = ApiToken.issue(personas.owner, "ci", ["read"])
    # An Accept header that names the file's type is fine: the answer is a file either way.
    response = APIClient(HTTP_AUTHORIZATION=f"Bearer {reader}").get(url, HTTP_ACCEPT="application/octet-stream")
    assert response.status_code == 200 and _body(response) == MODEL_BYTES


def test_a_blob_missing_from_storage_is_a_sentence(personas, version):
    artifact = _stored(version)
    (Path(settings.ARTIFACT_ROOT) / blob_key(artifact.sha256)).unlink()
    response = client_for(personas.owner).get(f"/api/v1/artifacts/{artifact.pk}/download/")
    assert response.status_code == 410
    body = response.json()
    assert body["code"] == "artifact_missing"
    assert "missing from Slipway's artifact storage" in body["message"] and "re-run" in body["message"]
    assert not AuditEvent.objects.filter(action="artifact.downloaded").exists()


def test_a_stored_file_of_another_size_is_not_sent(personas, version):
    artifact = _stored(version)
    Artifact.objects.filter(pk=artifact.pk).update(size=artifact.size + 1)
    response = client_for(personas.owner).get(f"/api/v1/artifacts/{artifact.pk}/download/")
    assert response.status_code == 409 and response.json()["code"] == "artifact_damaged"


def test_the_version_detail_says_where_to_download_each_artifact(personas, version):
    artifact = _stored(version)
    body = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/").json()
    urls = {a["id"]: a["download_url"] for a in body["artifacts"]}
    assert urls[artifact.pk] == f"/api/v1/artifacts/{artifact.pk}/download/"
    assert body["source_artifact"]["download_url"] == f"/api/v1/artifacts/{version.source_artifact_id}/download/"


# ---- reports ----------------------------------------------------------------------------


def test_the_report_as_json(personas, version):
    response = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/report/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert (
        response["Content-Disposition"] == f'attachment; filename="{version.model.slug}-v{version.number}-report.json"'
    )
    bundle = json.loads(response.content)
    assert bundle["version"]["id"] == version.pk
    detail = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/").json()
    assert bundle["reports"] == detail["reports"]  # the same reports the version page shows
    event = AuditEvent.objects.get(action="version.report_downloaded")
    assert event.actor == personas.viewer.username and event.after["format"] == "json"


def test_the_report_as_csv_one_row_per_figure(personas, version):
    response = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/report/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].endswith('-report.csv"')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows and set(rows[0]) == {"report", "profile", "variant", "metric", "value"}
    figures = {(r["report"], r["profile"], r["variant"], r["metric"]): r["value"] for r in rows}
    assert figures[("validate", "x86-cpu", "onnxruntime", "verdict")] == "full"
    assert figures[("parity", "x86-cpu", "ort-int8", "passed")] == "true"
    assert figures[("parity", "x86-cpu", "ort-int8", "y.cosine")] == "0.999"
    assert figures[("benchmark", "x86-cpu", "ort-opt", "batch1.concurrency1.p99_ms")] == "2.0"
    assert figures[("benchmark", "x86-cpu", "original", "batch1.concurrency1.p99_ms")] == "3.0"
    assert figures[("recommend", "x86-cpu", "", "winner")] in ("ort-opt", "ort-int8")
    assert AuditEvent.objects.get(action="version.report_downloaded").after["format"] == "csv"


def test_report_refusals(personas, version):
    url = f"/api/v1/versions/{version.pk}/report/"
    assert client_for(personas.outsider).get(url).status_code == 404
    assert APIClient().get(url).status_code == 401
    unknown = client_for(personas.owner).get(f"{url}?format=xlsx")
    assert unknown.status_code == 400 and "use json or csv" in unknown.json()["message"]
    fresh = ModelVersionFactory(model=version.model, created_by=personas.owner)
    waiting = client_for(personas.owner).get(f"/api/v1/versions/{fresh.pk}/report/")
    assert waiting.status_code == 409 and waiting.json()["code"] == "no_reports"
    assert "no finished pipeline step yet" in waiting.json()["message"]


# ---- decision evidence ------------------------------------------------------------------


def test_the_evidence_bundle_matches_the_decisions_hash(personas, version, broker):
    decision = approvals.approve(version, personas.approver, comment="fast enough")
    response = client_for(personas.viewer).get(f"/api/v1/decisions/{decision.pk}/evidence/")
    assert response.status_code == 200
    slug = version.model.slug
    assert response["Content-Disposition"] == (
        f'attachment; filename="{slug}-v{version.number}-decision-{decision.pk}-evidence.json"'
    )
    bundle = json.loads(response.content)
    assert bundle["evidence_sha256"] == decision.evidence_sha256 == response["X-Slipway-Evidence-SHA256"]
    assert evidence_hash(bundle["evidence"]) == decision.evidence_sha256  # anyone can check it
    assert bundle["decision"]["actor"] == personas.approver.username
    assert bundle["decision"]["comment"] == "fast enough" and bundle["decision"]["kind"] == "approve"
    assert bundle["gates"] == decision.gates and bundle["version"]["id"] == version.pk
    event = AuditEvent.objects.get(action="decision.evidence_downloaded")
    assert event.actor == personas.viewer.username and event.after["evidence_sha256"] == decision.evidence_sha256


def test_evidence_changed_after_the_decision_is_refused(personas, version, broker):
    decision = approvals.approve(version, personas.approver)
    evidence = {**decision.evidence, "tampered": True}
    Decision.objects.filter(pk=decision.pk).update(evidence=evidence)
    response = client_for(personas.viewer).get(f"/api/v1/decisions/{decision.pk}/evidence/")
    assert response.status_code == 409 and response.json()["code"] == "evidence_mismatch"
    assert "changed afterwards" in response.json()["message"]


def test_evidence_refusals(personas, version, broker):
    decision = approvals.approve(version, personas.approver)
    url = f"/api/v1/decisions/{decision.pk}/evidence/"
    assert client_for(personas.outsider).get(url).status_code == 404
    assert APIClient().get(url).status_code == 401
    assert not AuditEvent.objects.filter(action="decision.evidence_downloaded").exists()
