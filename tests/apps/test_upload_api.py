"""Uploading versions over the REST API: the happy path and every kind of bad file."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.pipeline.models import Job, JobStatus, PipelineRun
from apps.registry.models import Artifact, ModelVersion, RegisteredModel, VersionStatus
from tests import modelzoo
from tests.conftest import client_for
from tests.factories import MembershipFactory, ModelVersionFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


def _upload(client: APIClient, slug: str, name: str, data: bytes, **extra: str):
    return client.post(
        f"/api/v1/models/{slug}/versions/",
        {"file": SimpleUploadedFile(name, data), **extra},
        format="multipart",
    )


def _stored_blobs() -> list[Path]:
    root = Path(settings.ARTIFACT_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _leftover_upload_temp_files() -> list[Path]:
    return [p for p in Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir() if p.is_file()]


@pytest.fixture
def onnx_bytes(tmp_path: Path) -> bytes:
    return modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx").read_bytes()


def test_upload_creates_version_artifact_and_queued_pipeline(personas, onnx_bytes, django_capture_on_commit_callbacks):
    client = client_for(personas.owner)
    with django_capture_on_commit_callbacks() as callbacks:
        response = _upload(client, "digits", "mlp.onnx", onnx_bytes, team="vision", notes="first try")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["number"] == 1 and body["model"] == "digits" and body["team"] == "vision"
    assert body["framework"] == "onnx" and body["status"] == VersionStatus.PROCESSING
    assert body["source_artifact"]["size"] == len(onnx_bytes)
    assert body["source_artifact"]["original_filename"] == "mlp.onnx"
    assert [(j["kind"], j["profile"]) for j in body["latest_run"]["jobs"]] == [
        ("inspect", None),
        *[(kind, "x86-cpu") for kind in ("validate", "optimize", "parity", "benchmark", "recommend")],
    ]
    assert body["latest_run"]["jobs"][0]["status"] == JobStatus.QUEUED
    assert len(callbacks) == 1, "the worker is told after commit, exactly once"
    assert not _leftover_upload_temp_files()


def test_version_numbers_count_up_and_same_bytes_are_stored_once(personas, onnx_bytes):
    client = client_for(personas.owner)
    blobs_before = len(_stored_blobs())
    for expected in (1, 2):
        response = _upload(client, "digits", "mlp.onnx", onnx_bytes, team="vision")
        assert response.status_code == 201
        assert response.json()["number"] == expected
    artifacts = Artifact.objects.filter(version__model__slug="digits")
    assert artifacts.count() == 2
    assert len({a.storage_key for a in artifacts}) == 1
    assert len(_stored_blobs()) == blobs_before + 1


def test_zip_with_external_data_is_accepted(personas, tmp_path):
    model = modelzoo.make_mlp_onnx(tmp_path / "m" / "model.onnx", with_external_data=True)
    archive = modelzoo.make_zip(tmp_path / "m.zip", {p.name: p for p in model.parent.iterdir()})
    response = _upload(client_for(personas.owner), "digits", "m.zip", archive.read_bytes(), team="vision")
    assert response.status_code == 201, response.json()
    assert response.json()["source_artifact"]["format"] == "onnx-zip"


def test_token_authentication_for_ci(personas, onnx_bytes):
    _, value = ApiToken.issue(personas.owner, "ci", ["read", "upload"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {value}")
    assert _upload(client, "digits", "mlp.onnx", onnx_bytes, team="vision").status_code == 201
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {value[:-2]}xx")
    response = client.get("/api/v1/models/")
    assert response.status_code == 401
    assert "not valid" in response.json()["message"]


def test_viewer_may_not_upload_and_is_told_why(personas, onnx_bytes):
    RegisteredModel.objects.create(team=personas.team, name="digits", slug="digits", created_by=personas.owner)
    response = _upload(client_for(personas.viewer), "digits", "mlp.onnx", onnx_bytes)
    assert response.status_code == 403
    assert "viewer" in response.json()["message"]
    assert not ModelVersion.objects.exists()


def test_outsider_gets_404_not_403(personas, onnx_bytes):
    model = RegisteredModel.objects.create(team=personas.team, name="digits", slug="digits", created_by=personas.owner)
    _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes)
    version = ModelVersion.objects.get(model=model)
    outsider = client_for(personas.outsider)
    assert outsider.get("/api/v1/models/digits/", {"team": "vision"}).status_code == 404
    assert outsider.get(f"/api/v1/versions/{version.pk}/").status_code == 404
    job = Job.objects.filter(run__version=version).first()
    assert outsider.get(f"/api/v1/jobs/{job.pk}/").status_code == 404
    assert outsider.get("/api/v1/models/").json()["results"] == []
    # Uploading to a slug they can't see creates their own model, never touches ours.
    assert _upload(outsider, "digits", "mlp.onnx", onnx_bytes).status_code == 201
    assert ModelVersion.objects.filter(model=model).count() == 1


def test_anonymous_requests_are_refused(db):
    for url in ("/api/v1/models/", "/api/v1/teams/", "/api/v1/versions/1/", "/api/v1/jobs/1/"):
        assert APIClient().get(url).status_code in (401, 403)


def test_teams_endpoint_lists_memberships_with_role(personas):
    body = client_for(personas.owner).get("/api/v1/teams/").json()
    assert body == [
        {
            "slug": "vision",
            "name": "Vision",
            "role": "data_scientist",
            "created_at": body[0]["created_at"],
        }
    ]


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _bad_inputs(tmp_path: Path, onnx_bytes: bytes) -> dict[str, tuple[bytes, str, str]]:
    """name -> (bytes, filename, expected error code)."""
    bomb = modelzoo.make_zip_bomb(tmp_path / "bomb.zip")
    return {
        "not onnx": (b"GIF89a this is a picture, not a model" * 10, "model.onnx", "not_a_model"),
        "text": (b"hello world\n" * 100, "model.onnx", "not_a_model"),
        "truncated": (onnx_bytes[: len(onnx_bytes) // 2], "model.onnx", "truncated"),
        "empty": (b"", "model.onnx", "empty_file"),
        "zip with ../": (
            _zip_bytes({"model.onnx": onnx_bytes, "../evil.bin": b"x"}),
            "m.zip",
            "unsafe_archive",
        ),
        "zip with absolute path": (
            _zip_bytes({"model.onnx": onnx_bytes, "/etc/evil": b"x"}),
            "m.zip",
            "unsafe_archive",
        ),
        "zip bomb": (bomb.read_bytes(), "bomb.zip", "archive_too_large"),
        "zip without a model": (_zip_bytes({"readme.txt": b"hi"}), "m.zip", "archive_layout"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "not onnx",
        "text",
        "truncated",
        "empty",
        "zip with ../",
        "zip with absolute path",
        "zip bomb",
        "zip without a model",
    ],
)
def test_bad_files_get_a_400_with_a_sentence_and_leave_nothing_behind(personas, onnx_bytes, tmp_path, case):
    data, filename, code = _bad_inputs(tmp_path, onnx_bytes)[case]
    blobs_before = _stored_blobs()
    RegisteredModel.objects.create(team=personas.team, name="digits", slug="digits", created_by=personas.owner)
    response = _upload(client_for(personas.owner), "digits", filename, data)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == code
    assert body["message"].endswith(".") and len(body["message"]) > 30
    assert not ModelVersion.objects.exists() and not Artifact.objects.exists() and not PipelineRun.objects.exists()
    assert _stored_blobs() == blobs_before
    assert not _leftover_upload_temp_files()


def test_upload_over_the_size_limit_is_refused_with_413(personas, onnx_bytes):
    RegisteredModel.objects.create(team=personas.team, name="digits", slug="digits", created_by=personas.owner)
    with override_settings(MAX_UPLOAD_BYTES=len(onnx_bytes) - 1):
        response = _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes)
    assert response.status_code == 413
    assert "SLIPWAY_MAX_UPLOAD_BYTES" in response.json()["message"]
    assert not ModelVersion.objects.exists() and not Artifact.objects.exists()
    assert not _leftover_upload_temp_files()


@pytest.mark.parametrize("length", [101, 300, 5000])
def test_a_model_slug_longer_than_the_field_is_refused_before_storing(personas, onnx_bytes, length):
    blobs_before = _stored_blobs()
    response = _upload(client_for(personas.owner), "m" * length, "mlp.onnx", onnx_bytes, team="vision")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_slug"
    assert f"is {length} characters long" in body["message"] and "at most 100" in body["message"]
    assert not RegisteredModel.objects.exists() and not ModelVersion.objects.exists()
    assert _stored_blobs() == blobs_before and not _leftover_upload_temp_files()
    # registering one by name is held to the same limit
    named = client_for(personas.owner).post(
        "/api/v1/models/", {"name": "m", "slug": "m" * length, "team": "vision"}, format="json"
    )
    assert named.status_code == 400 and not RegisteredModel.objects.exists()


def test_a_json_form_field_nested_too_deep_is_a_400(personas, onnx_bytes):
    deep = "[" * 100_000
    response = _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes, team="vision", inputs=deep)
    assert response.status_code == 400, response.content
    assert "nested more than 64 levels" in response.json()["fields"]["inputs"][0]
    assert not ModelVersion.objects.exists()


def test_upload_without_file_says_which_field_is_missing(personas):
    response = client_for(personas.owner).post("/api/v1/models/digits/versions/", {"notes": "x"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["fields"]["file"]


def test_database_failure_after_storing_removes_the_new_blob(personas, onnx_bytes, monkeypatch):
    from apps.pipeline import services as jobs

    def boom(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(jobs, "start_pipeline", boom)
    blobs_before = _stored_blobs()
    RegisteredModel.objects.create(team=personas.team, name="digits", slug="digits", created_by=personas.owner)
    client = client_for(personas.owner)
    client.raise_request_exception = True
    with pytest.raises(RuntimeError):
        _upload(client, "digits", "mlp.onnx", onnx_bytes)
    assert _stored_blobs() == blobs_before
    assert not ModelVersion.objects.exists()


def test_profiles_and_calibration_are_recorded(personas, onnx_bytes, tmp_path):
    import numpy as np

    calibration = tmp_path / "calib.npz"
    np.savez(calibration, input=np.zeros((4, 16), np.float32))
    response = client_for(personas.owner).post(
        "/api/v1/models/digits/versions/",
        {
            "file": SimpleUploadedFile("mlp.onnx", onnx_bytes),
            "calibration": SimpleUploadedFile("calib.npz", calibration.read_bytes()),
            "profiles": "x86-cpu,arm-cpu-mnn",
            "team": "vision",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert sorted(version.profiles.values_list("slug", flat=True)) == ["arm-cpu-mnn", "x86-cpu"]
    assert version.calibration is not None and version.calibration.format == "npz"
    assert [a["kind"] for a in response.json()["artifacts"]].count("calibration") == 1
    # No worker meets either profile here: the upload's answer says so at once (issue 18).
    notes = {p["profile"]: p["service_note"] for p in response.json()["profile_readiness"]}
    assert notes["arm-cpu-mnn"].startswith("No worker or device serves arm-cpu-mnn, which needs an aarch64 CPU")
    assert notes["x86-cpu"].startswith("No worker or device serves x86-cpu, which needs an x86_64 CPU")


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"profiles": "x86-cpu,quantum-tpu"}, "unknown_profile"),
        ({"calibration": SimpleUploadedFile("calib.npz", b"not an npz")}, "invalid_calibration"),
    ],
)
def test_unknown_profiles_and_bad_calibration_are_refused_before_storing(personas, onnx_bytes, extra, code):
    response = client_for(personas.owner).post(
        "/api/v1/models/digits/versions/",
        {"file": SimpleUploadedFile("mlp.onnx", onnx_bytes), "team": "vision", **extra},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not ModelVersion.objects.exists() and _stored_blobs() == []


def test_a_framework_file_is_detected_by_content_and_gets_an_import_step_on_its_queue(personas, tmp_path):
    skops_io = pytest.importorskip("skops.io")
    import numpy as np
    from sklearn.linear_model import LinearRegression

    path = tmp_path / "model.bin"  # the name says nothing: detection is by content
    skops_io.dump(LinearRegression().fit(np.eye(3), [1.0, 2.0, 3.0]), path)
    response = client_for(personas.owner).post(
        "/api/v1/models/linreg/versions/",
        {"file": SimpleUploadedFile("model.bin", path.read_bytes()), "team": "vision"},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["framework"] == "sklearn" and body["source_artifact"]["format"] == "sklearn-skops"
    first = body["latest_run"]["jobs"][0]
    assert (first["kind"], first["queue"]) == ("import", "import-sklearn-skops")


def test_a_bad_input_signature_is_refused_with_an_example(personas, onnx_bytes):
    response = client_for(personas.owner).post(
        "/api/v1/models/digits/versions/",
        {
            "file": SimpleUploadedFile("mlp.onnx", onnx_bytes),
            "team": "vision",
            "inputs": '[{"name": "x", "shape": [0]}]',
        },
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_inputs" and "Example:" in response.json()["message"]
    assert not ModelVersion.objects.exists()


def test_input_declarations_are_stored_and_shown(personas, onnx_bytes):
    declared = '{"inputs": {"input": {"kind": "features", "range": [-1, 1]}}, "dims": {"batch": {"typical": 4}}}'
    response = _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes, team="vision",
                       input_declarations=declared)  # fmt: skip
    assert response.status_code == 201, response.json()
    expected = {"inputs": {"input": {"kind": "features", "range": [-1.0, 1.0]}}, "dims": {"batch": {"typical": 4}}}
    assert response.json()["input_declarations"] == expected
    assert ModelVersion.objects.get(pk=response.json()["id"]).input_declarations == expected


def test_bad_input_declarations_are_refused_with_an_example(personas, onnx_bytes):
    response = _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes, team="vision",
                       input_declarations='{"inputs": {"sr": {"values": [8000, "16k"]}}}')  # fmt: skip
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_declarations"
    assert "'sr'" in body["message"] and "Example:" in body["message"]
    assert not ModelVersion.objects.exists() and _stored_blobs() == []


def test_an_input_signature_on_an_onnx_upload_is_refused_not_ignored(personas, onnx_bytes):
    response = _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes, team="vision",
                       inputs='[{"name": "input", "shape": ["batch", 16]}]')  # fmt: skip
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "inputs_not_applicable"
    assert "input_declarations" in body["message"]
    assert not ModelVersion.objects.exists() and _stored_blobs() == []


def test_output_declarations_are_stored_and_shown(personas, onnx_bytes):
    declared = '{"output": {"kind": "classifier", "top_k": 3}}'
    response = _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes, team="vision",
                       output_declarations=declared)  # fmt: skip
    assert response.status_code == 201, response.json()
    assert response.json()["output_declarations"] == {"output": {"kind": "classifier", "top_k": 3}}
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.output_declarations == {"output": {"kind": "classifier", "top_k": 3}}


def test_bad_output_declarations_are_refused_with_an_example(personas, onnx_bytes):
    response = _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes, team="vision",
                       output_declarations='{"output": {"kind": "detection", "boxes": [0, 4]}}')  # fmt: skip
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_output_declarations"
    assert "'output'" in body["message"] and '"scores"' in body["message"] and "Declare outputs like" in body["message"]
    assert not ModelVersion.objects.exists() and _stored_blobs() == []


# --- a refused upload registers nothing; an empty model can be deleted ----------------------


@pytest.mark.parametrize("case", ["not onnx", "empty", "zip bomb", "zip without a model"])
def test_a_refused_first_upload_leaves_no_model_behind(personas, onnx_bytes, tmp_path, case):
    data, filename, code = _bad_inputs(tmp_path, onnx_bytes)[case]
    response = _upload(client_for(personas.owner), "digits", filename, data, team="vision")
    assert response.status_code == 400 and response.json()["code"] == code
    assert not RegisteredModel.objects.exists(), "a refused upload registers no model"
    assert _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes).status_code == 201
    assert RegisteredModel.objects.get().slug == "digits"


def test_a_first_upload_refused_for_full_storage_leaves_no_model_behind(personas, onnx_bytes, monkeypatch):
    from apps.registry import services
    from apps.registry.storage import StorageFull

    def full(uploaded, sha256):
        raise StorageFull(size=uploaded.size)

    monkeypatch.setattr(services, "put_blob", full)
    response = _upload(client_for(personas.owner), "digits", "mlp.onnx", onnx_bytes)
    assert response.status_code == 507
    assert not RegisteredModel.objects.exists()


def test_an_empty_model_can_be_deleted_and_the_deletion_is_audited(personas):
    RegisteredModel.objects.create(team=personas.team, name="Typo", slug="typo", created_by=personas.owner)
    assert client_for(personas.viewer).delete("/api/v1/models/typo/").status_code == 403
    assert client_for(personas.outsider).delete("/api/v1/models/typo/").status_code == 404
    response = client_for(personas.owner).delete("/api/v1/models/typo/")
    assert response.status_code == 204, response.content
    assert not RegisteredModel.objects.exists()
    event = AuditEvent.objects.get(action="model.deleted")
    assert event.actor == "dana" and event.team == "vision" and event.before["slug"] == "typo"


def test_a_model_with_versions_can_not_be_deleted(personas):
    model = RegisteredModel.objects.create(team=personas.team, name="Kept", slug="kept", created_by=personas.owner)
    ModelVersionFactory(model=model, created_by=personas.owner)
    response = client_for(personas.owner).delete("/api/v1/models/kept/")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "model_has_versions"
    assert "has 1 version" in body["message"] and "evidence" in body["message"]
    assert RegisteredModel.objects.filter(slug="kept").exists()
    assert not AuditEvent.objects.filter(action="model.deleted").exists()


# --- the team of a new model -----------------------------------------------------------------


def test_a_superuser_in_one_team_of_two_uploads_without_naming_it(personas, onnx_bytes):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    MembershipFactory(team=personas.other_team, user=root, role="admin")
    response = _upload(client_for(root), "scorer", "mlp.onnx", onnx_bytes)
    assert response.status_code == 201, response.json()
    assert response.json()["team"] == "fraud"


def test_a_superuser_in_no_team_is_asked_which_of_them(personas, onnx_bytes):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    response = _upload(client_for(root), "scorer", "mlp.onnx", onnx_bytes)
    assert response.status_code == 400
    assert response.json()["code"] == "team_required"
    assert "(fraud, vision)" in response.json()["message"]
    assert not RegisteredModel.objects.exists()


def test_the_team_where_the_user_may_upload_is_the_default(personas, onnx_bytes):
    MembershipFactory(team=personas.other_team, user=personas.owner, role="viewer")
    response = _upload(client_for(personas.owner), "scorer", "mlp.onnx", onnx_bytes)
    assert response.status_code == 201, response.json()
    assert response.json()["team"] == "vision"


def test_a_user_uploading_in_two_teams_is_given_the_list(personas, onnx_bytes):
    MembershipFactory(team=personas.other_team, user=personas.owner, role="data_scientist")
    MembershipFactory(team=TeamFactory(slug="audio"), user=UserFactory(username="else"), role="admin")
    response = _upload(client_for(personas.owner), "scorer", "mlp.onnx", onnx_bytes)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "team_required"
    assert body["message"] == (
        "You belong to several teams (fraud, vision); say which one with the 'team' field (its slug)."
    )
    assert not RegisteredModel.objects.exists()


# --- formats that record no input signature --------------------------------------------------


def _torchscript_bytes() -> bytes:
    """The layout torch.jit.save writes; refused or accepted at upload before anything loads it."""
    return _zip_bytes({"mlp/data.pkl": b"\x80\x02.", "mlp/constants.pkl": b"\x80\x02.", "mlp/version": b"3\n",
                       "mlp/code/__torch__/mlp.py": b"def forward(self, x):\n  return x\n"})  # fmt: skip


def _mxnet_bytes(shape_hint: bool) -> bytes:
    data: dict[str, object] = {"op": "null", "name": "data", "inputs": []}
    if shape_hint:
        data["attrs"] = {"__shape__": "(1, 8)"}
    symbol = {
        "nodes": [
            data,
            {"op": "null", "name": "fc_weight", "inputs": []},
            {"op": "FullyConnected", "name": "fc", "attrs": {"num_hidden": "2"}, "inputs": [[0, 0, 0], [1, 0, 0]]},
        ],
        "arg_nodes": [0, 1],
        "heads": [[2, 0, 0]],
    }
    return _zip_bytes({"net-symbol.json": json.dumps(symbol).encode(), "net-0000.params": b"params"})


def test_torchscript_without_inputs_is_refused_at_upload_with_the_json_to_give(personas):
    response = _upload(client_for(personas.owner), "scripted", "mlp.pt", _torchscript_bytes(), team="vision")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "inputs_required"
    assert "TorchScript file does not record its input shapes" in body["message"]
    assert 'inputs=[{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]' in body["message"]
    assert not RegisteredModel.objects.exists() and not ModelVersion.objects.exists() and _stored_blobs() == []

    inputs = '[{"name": "x", "shape": ["batch", 8], "dtype": "float32"}]'
    response = _upload(client_for(personas.owner), "scripted", "mlp.pt", _torchscript_bytes(), team="vision",
                       inputs=inputs)  # fmt: skip
    assert response.status_code == 201, response.json()
    assert response.json()["source_artifact"]["format"] == "pytorch-torchscript"


def test_an_mxnet_symbol_without_shapes_needs_inputs_at_upload(personas):
    response = _upload(client_for(personas.owner), "mx", "net.zip", _mxnet_bytes(shape_hint=False), team="vision")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "inputs_required"
    assert '[{"name": "data", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]' in body["message"]
    assert not RegisteredModel.objects.exists()
    # A symbol whose variable records its shape may be imported without a declaration.
    response = _upload(client_for(personas.owner), "mx", "net.zip", _mxnet_bytes(shape_hint=True), team="vision")
    assert response.status_code == 201, response.json()
    assert response.json()["framework"] == "mxnet"
