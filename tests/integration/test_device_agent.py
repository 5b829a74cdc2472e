"""The device agent for real (issue 18, ADR 0016): `python -m slipway_agent` registers with an
enrollment token against the running web app and leases the measuring steps of a profile no
Celery worker serves, while a real worker runs the rest. Killed mid-step, its lease is taken
back and another agent finishes; the killed lease's result is refused."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from apps.accounts.models import ApiToken
from apps.hardware.models import HardwareProfile
from apps.pipeline import services
from apps.pipeline.models import Job, JobStatus
from tests import modelzoo
from tests.factories import MembershipFactory, TeamFactory, UserFactory
from tests.integration.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A profile that only devices serve: x86 CPUs like this machine, on a queue no worker consumes.
EDGE = {
    "slug": "edge-x86",
    "name": "Edge x86 box",
    "device_kind": "cpu",
    "backends": ["onnxruntime"],
    "precisions": ["fp32"],
    "queue": "edge",
    "requirements": {"arch": ["x86_64"]},
    "options": {"batch_sizes": [1], "concurrency": [1], "max_abs_error": 1e-3, "min_cosine": 0.99},
}


def _agent(state: Path, *args: str, log: Path | None = None, env: dict[str, str] | None = None) -> Any:
    command = [sys.executable, "-m", "slipway_agent", "--state", str(state), *args]
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(state.parent), "PYTHONPATH": str(REPO), **(env or {})}
    if log is None:
        return subprocess.run(command, cwd=state.parent, env=base, capture_output=True, text=True, timeout=120)
    return subprocess.Popen(command, cwd=state.parent, env=base, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _upload(server: str, headers: dict[str, str], folder: Path, profile: str) -> requests.Response:
    """Upload a small MLP for `profile`, as the team's admin."""
    model = modelzoo.make_mlp_onnx(folder / "mlp.onnx")
    with model.open("rb") as fh:
        uploaded = requests.post(
            f"{server}/api/v1/models/scorer/versions/",
            files={"file": ("mlp.onnx", fh)},
            data={"team": "ml", "profiles": profile},
            headers=headers,
            timeout=60,
        )
    assert uploaded.status_code == 201, uploaded.text
    return uploaded


def _enrolled(server: str, token: str, name: str, state: Path) -> None:
    made = requests.post(
        f"{server}/api/v1/devices/enrollments/",
        json={"team": "ml", "profiles": [EDGE["slug"]], "name": name},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    # The command the admin is given, run as given (its registration half) on the "device".
    register, run = made.json()["connect"].split(" && ")
    assert run == "python3 -m slipway_agent run"
    bin_dir = state.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python3").exists():
        (bin_dir / "python3").symlink_to(sys.executable)
    registered = subprocess.run(
        ["bash", "-c", register],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(REPO), "SLIPWAY_AGENT_HOME": str(state)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert registered.returncode == 0, registered.stderr
    assert (state / "credential").stat().st_mode & 0o777 == 0o600


def test_an_agent_measures_a_profile_no_worker_serves_and_a_killed_lease_is_finished_by_another(
    celery_worker_process,
    web_server,
    tmp_path,
    settings,
):
    HardwareProfile.objects.update_or_create(slug=EDGE["slug"], defaults={k: v for k, v in EDGE.items() if k != "slug"})
    user = UserFactory(username="edge-admin")
    MembershipFactory(team=TeamFactory(slug="ml"), user=user, role="admin")
    _, token = ApiToken.issue(user, "ci", ["read", "upload", "admin"])
    headers = {"Authorization": f"Bearer {token}"}

    # Nothing serves the profile yet: the upload's answer says so at once.
    uploaded = _upload(web_server, headers, tmp_path, EDGE["slug"])
    version_id = uploaded.json()["id"]
    assert "No worker or device serves edge-x86" in uploaded.text

    first, second = tmp_path / "agent-1", tmp_path / "agent-2"
    _enrolled(web_server, token, "box-1", first)
    _enrolled(web_server, token, "box-2", second)

    # box-1 leases validate, then parity, then the benchmark: killed while it holds the benchmark.
    agent = _agent(first, "run", log=tmp_path / "agent-1.log")
    try:

        def benchmark_held() -> Job | None:
            return Job.objects.filter(
                run__version_id=version_id, kind="benchmark", status=JobStatus.RUNNING, worker_host="device:ml/box-1"
            ).first()

        held = wait_for(benchmark_held, timeout=240, what="box-1 to hold the benchmark")
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
    finally:
        if agent.poll() is None:
            agent.kill()
    validate = Job.objects.get(run__version_id=version_id, kind="validate")
    assert validate.status == JobStatus.SUCCEEDED and validate.result["measured_on"]["name"] == "box-1"
    assert Job.objects.get(run__version_id=version_id, kind="optimize").worker_host.startswith("it@")

    # Its lease expires: the reconciler takes the job back (what the beat schedule does).
    settings.JOB_STALE_AFTER_SECONDS = 2
    wait_for(lambda: services.reconcile().requeued_stale >= 1, timeout=30, what="the lease to expire")
    replacement = _agent(second, "run", log=tmp_path / "agent-2.log")
    try:
        done = wait_for(
            lambda: Job.objects.filter(pk=held.pk, status=JobStatus.SUCCEEDED).first(),
            timeout=240,
            what=f"box-2 to finish the benchmark:\n{(tmp_path / 'agent-2.log').read_text()[-3000:]}",
        )
    finally:
        replacement.send_signal(signal.SIGTERM)
        replacement.wait(timeout=60)
    assert done.attempt == 2 and done.result["measured_on"]["name"] == "box-2"
    assert done.result["baseline"]["points"], "the original model was measured on box-2"

    # box-1's lease, replayed, is refused: the job was finished by attempt 2.
    credential = (first / "credential").read_text()
    replay = requests.post(
        f"{web_server}/api/v1/agent/jobs/{held.pk}/result/",
        json={"attempt": held.attempt, "result": done.result},
        headers={"Authorization": f"Device {credential}"},
        timeout=10,
    )
    assert replay.status_code == 409 and replay.json()["code"] == "lease_lost", replay.text
    version = requests.get(f"{web_server}/api/v1/versions/{version_id}/", headers=headers, timeout=10).json()
    wait_for(
        lambda: (
            requests.get(f"{web_server}/api/v1/versions/{version_id}/", headers=headers, timeout=10).json()["status"]
            == "ready"
        ),
        timeout=60,
        what=f"the version to be ready: {version.get('status')}",
    )
    time.sleep(0)


# An ARM profile measured by MNN's FP32 and FP16 variants: what an ARMv8.2 core computes in FP16.
LITERT = "mobile-litert"  # seeded: LiteRT's FP32, FP16 and INT8 .tflite files on aarch64
ARM = {
    "slug": "arm-mnn-fp16",
    "name": "ARM CPU, MNN FP32/FP16",
    "device_kind": "cpu",
    "backends": ["mnn"],
    "precisions": ["fp32", "fp16"],
    "queue": "arm64",
    "requirements": {"arch": ["aarch64"]},
    "options": {"batch_sizes": [1], "concurrency": [1], "max_abs_error": 1e-2, "min_cosine": 0.99},
}


@pytest.fixture(scope="session")
def arm64_machine() -> Path:
    from tests import emulation

    reason = emulation.arm64_skip_reason()
    if reason:
        pytest.skip(reason)
    return emulation.arm64_root()


def test_an_agent_under_arm64_emulation_measures_the_arm_profile_and_says_it_is_emulated(
    celery_worker_process, web_server, tmp_path, arm64_machine
):
    from tests.emulation import in_arm64

    HardwareProfile.objects.update_or_create(slug=ARM["slug"], defaults={k: v for k, v in ARM.items() if k != "slug"})
    user = UserFactory(username="arm-admin")
    MembershipFactory(team=TeamFactory(slug="ml"), user=user, role="admin")
    _, token = ApiToken.issue(user, "ci", ["read", "upload", "admin"])
    headers = {"Authorization": f"Bearer {token}"}
    made = requests.post(
        f"{web_server}/api/v1/devices/enrollments/",
        json={"team": "ml", "profiles": [ARM["slug"], LITERT], "name": "arm-1"},
        headers=headers,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    state = tmp_path / "arm-agent"
    state.mkdir()
    # The agent as a device gets it: its wheel (the agent and the engine, no Django), installed
    # into the device's Python, run from outside any checkout.
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_agent_wheel.py"), str(wheels)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    wheel = Path(built.stdout.strip().splitlines()[-1])
    binds = (f"{state}:/agent", f"{wheels}:/wheels")
    install = f"pip install -q --no-deps --no-index --target /agent/lib /wheels/{wheel.name}"
    agent = ("env", "PYTHONPATH=/agent/lib", "python", "-m", "slipway_agent", "--state", "/agent")
    # QEMU refuses the namespaces and seccomp filters of the engine's sandbox: under emulation
    # the agent runs with limits only, explicitly, and every report it makes says so.
    env = {**os.environ, "SLIPWAY_SANDBOX_ISOLATION": "limits"}
    register = [*agent, "register", "--server", web_server, "--token", made.json()["token"], "--name", "arm-1"]
    registered = subprocess.run(
        in_arm64(arm64_machine, "sh", "-c", f"{install} && {shlex.join(register)}", binds=binds, chdir="/"),
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr[-3000:]
    listed = requests.get(f"{web_server}/api/v1/devices/", headers=headers, timeout=10).json()["results"]
    probe = listed[0]["hardware"]
    assert probe["arch"] == "aarch64" and probe["emulation"].startswith("QEMU user-mode emulation of aarch64")
    assert sorted(listed[0]["serving"], key=lambda item: item["profile"]) == [
        {"profile": ARM["slug"], "meets": True, "unmet": ""},
        {"profile": LITERT, "meets": True, "unmet": ""},
    ]

    version_id = _upload(web_server, headers, tmp_path, f"{ARM['slug']},{LITERT}").json()["id"]
    log = tmp_path / "arm-agent.log"
    running = subprocess.Popen(
        in_arm64(arm64_machine, *agent, "run", binds=binds, chdir="/"),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:

        def finished() -> dict[str, Any] | None:
            version = requests.get(f"{web_server}/api/v1/versions/{version_id}/", headers=headers, timeout=10).json()
            return version if version["status"] in ("ready", "failed") else None

        version = wait_for(finished, timeout=900, interval=2, what=f"the ARM pipeline:\n{log.read_text()[-3000:]}")
    finally:
        running.send_signal(signal.SIGTERM)
        try:
            running.wait(timeout=60)
        except subprocess.TimeoutExpired:
            running.kill()
    assert version["status"] == "ready", (version.get("status_reason"), log.read_text()[-3000:])
    everything = Job.objects.filter(run__version_id=version_id).select_related("profile")
    jobs = {job.kind: job for job in everything if job.profile is None or job.profile.slug == ARM["slug"]}
    # The x86 worker built the variants (MNN files are the same anywhere) and ranked them; every
    # measuring step ran on the emulated ARM device, none on the x86 worker.
    assert jobs["optimize"].worker_host.startswith("it@") and jobs["recommend"].worker_host.startswith("it@")
    for kind in ("validate", "parity", "benchmark"):
        measured = jobs[kind].result["measured_on"]
        assert jobs[kind].worker_host == "device:ml/arm-1", kind
        assert (measured["kind"], measured["arch"]) == ("device", "aarch64") and measured["emulation"], kind
    support = jobs["validate"].result["reports"]["mnn"]
    assert support["verdict"] == "full" and support["runtime_version"], support
    parity = jobs["parity"].result["variants"]
    assert set(parity) == {"mnn-fp32", "mnn-fp16"} and all(v["passed"] for v in parity.values()), parity
    assert jobs["benchmark"].result["baseline"]["points"], "the original model was timed (emulated)"
    assert jobs["parity"].result["sandbox"]["mode"] == "limits"  # said, not hidden
    summary = jobs["recommend"].result["summary"]
    assert "on accuracy and size only" in summary and "QEMU" in summary, summary

    # The phone profile: the x86 worker converted the model with onnx2tf (its environment) and
    # the emulated device's LiteRT ran the .tflite files for parity and the benchmark.
    phone = {job.kind: job for job in everything if job.profile is not None and job.profile.slug == LITERT}
    assert phone["optimize"].worker_host.startswith("it@")
    built = {variant["name"] for variant in phone["optimize"].result["variants"]}
    assert built == {"litert-fp32", "litert-fp16"}, phone["optimize"].result
    assert any("calibration" in note for note in phone["optimize"].result["notes"]["litert"])
    for kind in ("validate", "parity", "benchmark"):
        assert phone[kind].worker_host == "device:ml/arm-1", kind
        assert phone[kind].result["measured_on"]["arch"] == "aarch64", kind
    # The device has LiteRT's runtime but not its converter: it says so instead of guessing.
    device_support = phone["validate"].result["reports"]["litert"]
    assert device_support["verdict"] == "not_installed" and "converter" in " ".join(device_support["notes"])
    parity = phone["parity"].result["variants"]
    assert set(parity) == built and all(v["passed"] for v in parity.values()), parity
    assert phone["benchmark"].result["baseline"]["points"]
