"""Hostile uploads through the real API to the real worker: each is refused with a 4xx
sentence, or ends as a failed version whose job says why; the worker survives them all and
then still processes a good model; nothing is left in the upload or work folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.pipeline.models import Job, JobStatus
from apps.registry.models import ModelVersion, VersionStatus
from tests import hostile, modelzoo
from tests.conftest import client_for
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Refused by the web process before anything is stored.
REFUSED_AT_UPLOAD = (
    "truncated-50.0%",
    "zip-bomb-10gib",
    "zip-100k-members",
    "overlapping-entries",
    "unsupported-compression",
    "symlink-member",
    "pickle-protocol-5",
    "torch-save-checkpoint",
)
REFUSED_SIDE_FILES = ("npz-huge-shape", "npz-corrupt-member", "npz-zip-bomb", "npz-object-array")
# Accepted, then failed by the worker: case -> the failed job's kind.
FAILED_BY_THE_WORKER = {
    "zip-bomb-lying-header": "inspect",
    "external-data-dotdot-in-zip": "inspect",
    "external-data-negative-offset": "inspect",
    "nested-if-100k": "inspect",
    "nested-if-30": "inspect",
    "recursive-function": "inspect",
    "corrupt-deflate": "inspect",
    "bitflip-non-utf8-name": "inspect",
    "pt2-pickled-weight": "import",
    "huge-input-dims": "parity",
}


def _post(client, slug: str, files: dict[str, Path]) -> object:
    data: dict[str, object] = {"team": "vision"}
    for field, path in files.items():
        data[field] = SimpleUploadedFile(path.name, path.read_bytes())
    return client.post(f"/api/v1/models/{slug}/versions/", data, format="multipart")


def _readable(message: str) -> bool:
    return bool(message) and message[0].isupper() and message.endswith(".") and "Traceback" not in message


def _leftovers() -> list[Path]:
    uploads = [p for p in Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir() if p.is_file()]
    work = Path(settings.WORK_DIR)
    jobs = [p for p in work.iterdir() if p.name.startswith("job-")] if work.exists() else []
    return uploads + jobs


def test_hostile_uploads_fail_readably_and_the_worker_keeps_going(personas, celery_worker_process, tmp_path):
    client = client_for(personas.owner)

    for name in REFUSED_AT_UPLOAD:
        case = hostile.BY_NAME[name]
        response = _post(client, f"refused-{REFUSED_AT_UPLOAD.index(name)}", {"file": case.make(tmp_path / name)})
        assert 400 <= response.status_code < 500, (name, response.content)
        body = response.json()
        assert body["code"] in case.codes and case.fragment in body["message"], (name, body)
        assert _readable(body["message"]), body

    model = modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx")
    for name in REFUSED_SIDE_FILES:
        case = hostile.BY_NAME[name]
        files = {"file": model, "calibration": case.make(tmp_path / name)}
        response = _post(client, f"side-{name}", files)
        assert response.status_code == 400, (name, response.content)
        body = response.json()
        assert body["code"] == "invalid_calibration" and case.fragment in body["message"], (name, body)
        assert _readable(body["message"]), body
    assert not ModelVersion.objects.exists(), "nothing refused at upload is stored"
    assert not (tmp_path / name / hostile.PAYLOAD_MARKER).exists()

    versions = {}
    for name in FAILED_BY_THE_WORKER:
        case = hostile.BY_NAME[name]
        files = {"file": case.make(tmp_path / name)}
        response = _post(client, f"hostile-{name}", files)
        assert response.status_code == 201, (name, response.content)
        versions[name] = response.json()["id"]

    def all_finished() -> bool:
        return not ModelVersion.objects.filter(pk__in=versions.values(), status=VersionStatus.PROCESSING).exists()

    wait_for(all_finished, timeout=240, what="the hostile uploads to finish their pipelines")
    for name, version_id in versions.items():
        case = hostile.BY_NAME[name]
        body = client.get(f"/api/v1/versions/{version_id}/").json()
        assert body["status"] == VersionStatus.FAILED, (name, body["status"])
        (failed,) = [job for job in body["latest_run"]["jobs"] if job["status"] == JobStatus.FAILED]
        assert failed["kind"] == FAILED_BY_THE_WORKER[name], (name, failed)
        expected = case.codes or (hostile.PARITY_EXPECTED[name][0],)
        assert failed["error_code"] in expected, (name, failed["error_code"], failed["error"])
        assert _readable(failed["error"]), (name, failed["error"])
        assert not (tmp_path / name / hostile.PAYLOAD_MARKER).exists(), f"{name}: a pickled payload ran"

    # The same worker process survived all of it and still does its job.
    assert celery_worker_process.poll() is None
    response = _post(client, "good-after-hostile", {"file": modelzoo.make_cnn_onnx(tmp_path / "cnn.onnx")})
    assert response.status_code == 201
    good = response.json()["id"]
    wait_for(
        lambda: ModelVersion.objects.get(pk=good).status != VersionStatus.PROCESSING,
        timeout=240,
        what="the good model's pipeline",
    )
    assert ModelVersion.objects.get(pk=good).status == VersionStatus.READY
    assert Job.objects.filter(status=JobStatus.RUNNING).count() == 0
    assert not _leftovers(), _leftovers()
