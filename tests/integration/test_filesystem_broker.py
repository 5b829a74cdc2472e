"""`make run`'s embedded broker after a full disk, with a real worker: the empty and cut-short
files a full disk leaves in the broker's folders are set aside and logged by name, the worker
starts and keeps serving, and the reconciler sends again the job whose message was lost."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.pipeline import services as jobs
from apps.pipeline.models import Job, JobStatus
from tests import modelzoo
from tests.conftest import client_for
from tests.integration.conftest import start_worker, stop_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BROKEN = {
    "0000_empty.cpu.msg": b"",
    "0001_cut-short.cpu.msg": b'{"body": "W1s0Ml0sIHt9XQ==", "content-encoding": "utf-',
    "0002_empty.default.msg": b"",
}


def _broker_folders() -> dict[str, Path]:
    """The worker's broker folders (under the data folder it shares with this process), emptied."""
    root = Path(settings.DATA_DIR) / "broker"
    shutil.rmtree(root, ignore_errors=True)
    folders = {name: root / name for name in ("queue", "processed", "control", "quarantine")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    return folders


def test_a_worker_starts_past_broken_broker_files_and_the_lost_job_is_sent_again(
    worker_env, personas, tmp_path, monkeypatch
):
    folders = _broker_folders()
    # The upload's message is lost, as on a full disk: the job is only in the database.
    monkeypatch.setattr(jobs, "_enqueue_on_commit", lambda job: None)
    model = modelzoo.make_mlp_onnx(tmp_path / "mlp.onnx")
    created = client_for(personas.owner).post(
        "/api/v1/models/disk-full/versions/",
        {"file": SimpleUploadedFile("mlp.onnx", model.read_bytes()), "team": "vision"},
        format="multipart",
    )
    assert created.status_code == 201, created.content
    job = Job.objects.get(run__version_id=created.json()["id"], sequence=0)
    assert job.status == JobStatus.QUEUED and job.queue == "cpu"
    # What the full disk left behind: empty and cut-short messages, empty exchange tables.
    for name, content in BROKEN.items():
        (folders["queue"] / name).write_bytes(content)
    for exchange in ("cpu", "default"):
        (folders["control"] / f"{exchange}.exchange").write_bytes(b"")

    env = {
        **worker_env,
        "CELERY_BROKER_URL": "filesystem://",
        "SLIPWAY_RECONCILE_INTERVAL_SECONDS": "1",
        "SLIPWAY_JOB_REQUEUE_AFTER_SECONDS": "5",
    }
    # Started with the broken files present: the restart that used to fail every time.
    log_path = tmp_path / "worker.log"
    proc = start_worker(env, "disk-full", log_path, extra=["-B", f"--schedule={tmp_path / 'beat-schedule'}"])
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"the worker exited:\n{log_path.read_text()[-4000:]}"
            return "ready." in log_path.read_text()

        wait_for(ready, timeout=90, what="the worker to start")

        def done() -> Job | None:
            assert proc.poll() is None, f"the worker exited:\n{log_path.read_text()[-4000:]}"
            found = Job.objects.get(pk=job.pk)
            return found if found.status in (JobStatus.SUCCEEDED, JobStatus.FAILED) else None

        finished = wait_for(done, timeout=120, what="the reconciler to send the lost job and the worker to run it")
        assert finished.status == JobStatus.SUCCEEDED, finished.error
        assert finished.attempt == 1 and finished.worker_host.startswith("disk-full@")
        # The broken files are set aside and named in the log; the worker is still serving.
        log = log_path.read_text()
        assert sorted(p.name for p in folders["quarantine"].iterdir()) == sorted(
            [*BROKEN, "cpu.exchange", "default.exchange"]
        ), log[-4000:]
        for name in BROKEN:
            assert f"Set aside the unreadable broker message {name}" in log
        assert "Unrecoverable error" not in log
        time.sleep(1)
        assert proc.poll() is None
    finally:
        stop_worker(proc)
