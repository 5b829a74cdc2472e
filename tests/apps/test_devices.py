"""Devices outside the cluster (issue 18): a team admin enrolls one, its agent registers with the
one-time token and gets a credential, beats with it, and is judged by its own hardware probe."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.hardware.models import Device, DeviceEnrollment
from tests.conftest import client_for
from workers.engine.hardware import describe_hardware

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db

ARM_BOARD = {
    "host": "rk3588-board",
    "arch": "aarch64",
    "cpu_model": "Cortex-A76",
    "cpu_flags": ["asimd", "asimddp", "fphp"],
    "cores": 8,
    "memory_bytes": 16 * 2**30,
    "gpus": [],
}


def _enroll(personas: Any, profiles: list[str], **extra: Any) -> dict[str, Any]:
    answer = client_for(personas.admin).post(
        "/api/v1/devices/enrollments/", {"team": "vision", "profiles": profiles, **extra}, format="json"
    )
    assert answer.status_code == 201, answer.content
    return answer.json()


def _register(token: str, name: str = "board-1", hardware: dict | None = None) -> Any:
    return APIClient().post(
        "/api/v1/agent/register/",
        {"token": token, "name": name, "hardware": hardware or ARM_BOARD, "runtimes": {"mnn": "3.2.0"}},
        format="json",
    )


def _as_device(credential: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Device {credential}")
    return client


def test_an_admin_enrolls_a_device_and_its_agent_registers_once(personas):
    enrollment = _enroll(personas, ["arm-cpu-mnn", "x86-cpu"], name="lab board")
    assert enrollment["token"].startswith("sle_") and enrollment["profiles"] == ["arm-cpu-mnn", "x86-cpu"]
    assert enrollment["connect"] == (
        f"python3 -m slipway_agent register --server http://testserver --token {enrollment['token']} "
        "--name 'lab board' && python3 -m slipway_agent run"
    )
    stored = DeviceEnrollment.objects.get(pk=enrollment["id"])
    assert enrollment["token"].split("_")[2] not in stored.key_hash  # only its hash is kept

    registered = _register(enrollment["token"])
    assert registered.status_code == 201, registered.content
    body = registered.json()
    assert body["credential"].startswith("sld_")
    device = body["device"]
    assert (device["team"], device["name"], device["status"]) == ("vision", "board-1", "online")
    assert device["runtimes"] == {"mnn": "3.2.0"} and device["hardware"]["arch"] == "aarch64"
    # Its own probe decides what it may serve: an ARM board meets the ARM profile, not the x86 one.
    assert device["serving"] == [
        {"profile": "arm-cpu-mnn", "meets": True, "unmet": ""},
        {"profile": "x86-cpu", "meets": False, "unmet": "it is aarch64, not x86_64"},
    ]
    again = _register(enrollment["token"], name="board-2")
    assert again.status_code == 401 and again.json()["code"] == "enrollment_used"
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {
        "device.enrollment_created",
        "device.registered",
    }


def test_a_device_beats_with_its_credential_and_its_probe_replaces_what_it_said(personas):
    credential = _register(_enroll(personas, ["arm-cpu-mnn"])["token"]).json()["credential"]
    Device.objects.update(last_seen_at=timezone.now() - timedelta(hours=1))
    listed = client_for(personas.viewer).get("/api/v1/devices/").json()["results"]
    assert [d["status"] for d in listed] == ["offline"]

    x86 = {**ARM_BOARD, "arch": "x86_64", "cpu_flags": ["avx2"]}
    beat = _as_device(credential).post("/api/v1/agent/beat/", {"hardware": x86}, format="json")
    assert beat.status_code == 200, beat.content
    assert beat.json()["status"] == "online"
    assert beat.json()["serving"] == [{"profile": "arm-cpu-mnn", "meets": False, "unmet": "it is x86_64, not aarch64"}]
    bad = _as_device(credential).post("/api/v1/agent/beat/", {"hardware": {"arch": "aarch64"}}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_hardware"
    assert "HardwareInfo.host is missing" in bad.json()["message"]


def test_credentials_are_refused_readably_and_revocation_is_immediate(personas):
    credential = _register(_enroll(personas, ["arm-cpu-mnn"])["token"]).json()["credential"]
    device = Device.objects.get()
    for header, said in [
        ("Device sld_nope", "malformed"),
        ("Device sld_0123456789ab_wrong", "not valid"),
        (f"Device {credential[:-2]}xx", "not valid"),
    ]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        answer = client.post("/api/v1/agent/beat/", {}, format="json")
        assert answer.status_code == 401 and said in answer.json()["message"], answer.content
    # A user's token is no device, and a device credential opens no user endpoint.
    assert client_for(personas.admin).post("/api/v1/agent/beat/", {}, format="json").status_code == 403
    assert _as_device(credential).get("/api/v1/models/").status_code == 401

    assert client_for(personas.approver).post(f"/api/v1/devices/{device.pk}/revoke/").status_code == 403
    assert client_for(personas.outsider).post(f"/api/v1/devices/{device.pk}/revoke/").status_code == 404
    revoked = client_for(personas.admin).post(f"/api/v1/devices/{device.pk}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    refused = _as_device(credential).post("/api/v1/agent/beat/", {}, format="json")
    assert refused.status_code == 401 and "was revoked" in refused.json()["message"]


def test_enrollment_tokens_expire_name_real_profiles_and_need_an_admin(personas):
    client = client_for(personas.admin)
    unknown = client.post("/api/v1/devices/enrollments/", {"team": "vision", "profiles": ["tpu"]}, format="json")
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_profile"
    assert "arm-cpu-mnn" in unknown.json()["message"]
    long = client.post(
        "/api/v1/devices/enrollments/", {"team": "vision", "profiles": ["x86-cpu"], "hours": 1000}, format="json"
    )
    assert long.status_code == 400 and long.json()["code"] == "invalid_expiry"
    scientist = client_for(personas.owner).post(
        "/api/v1/devices/enrollments/", {"team": "vision", "profiles": ["x86-cpu"]}, format="json"
    )
    assert scientist.status_code == 403

    token = _enroll(personas, ["x86-cpu"])["token"]
    DeviceEnrollment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    late = _register(token)
    assert late.status_code == 401 and late.json()["code"] == "enrollment_expired"
    assert _register("sle_x").json()["code"] == "malformed_enrollment_token"
    assert Device.objects.count() == 0


def test_a_name_is_one_device_per_team_and_other_teams_see_none(personas):
    _register(_enroll(personas, ["x86-cpu"])["token"], name="edge")
    token = _enroll(personas, ["x86-cpu"])["token"]
    taken = _register(token, name="edge")
    assert taken.status_code == 409 and taken.json()["code"] == "device_name_taken"
    # The refused registration spent nothing: the token still registers under another name.
    assert _register(token, name="edge-2").status_code == 201
    assert client_for(personas.outsider).get("/api/v1/devices/").json()["results"] == []
    listed = client_for(personas.viewer).get("/api/v1/devices/?team=vision").json()["results"]
    assert [d["name"] for d in listed] == ["edge-2", "edge"]  # newest first, as every list


def test_the_agent_probes_the_machine_it_runs_on(tmp_path):
    """`python -m slipway_agent probe` (what registration sends) is this machine's probe; the
    connect command is run as given against a real server in tests/integration/test_device_agent.py."""
    shown = subprocess.run(
        [sys.executable, "-m", "slipway_agent", "--state", str(tmp_path / "state"), "probe"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    body = json.loads(shown.stdout)
    assert body["hardware"] == json.loads(json.dumps(describe_hardware().to_dict()))
    assert body["runtimes"]["onnxruntime"]


def test_a_rotated_credential_keeps_the_old_one_for_its_grace_period_until_the_new_one_is_used(personas):
    old = _register(_enroll(personas, ["arm-cpu-mnn"])["token"]).json()["credential"]
    first = _as_device(old).post("/api/v1/agent/rotate/")
    assert first.status_code == 201, first.content
    new = first.json()["credential"]
    assert new.startswith("sld_") and new != old
    # The answer was lost: the old credential still works, and rotates again.
    again = _as_device(old).post("/api/v1/agent/rotate/")
    assert again.status_code == 201
    newest = again.json()["credential"]
    assert _as_device(new).post("/api/v1/agent/beat/", {}, format="json").status_code == 401  # replaced at once
    assert _as_device(old).post("/api/v1/agent/beat/", {}, format="json").status_code == 200
    # The new one's first use ends the old one's grace.
    assert _as_device(newest).post("/api/v1/agent/beat/", {}, format="json").status_code == 200
    gone = _as_device(old).post("/api/v1/agent/beat/", {}, format="json")
    assert gone.status_code == 401 and "not valid" in gone.json()["message"]
    assert AuditEvent.objects.filter(action="device.credential_rotated").count() == 2


def test_an_old_credential_past_its_grace_period_is_refused(personas):
    old = _register(_enroll(personas, ["arm-cpu-mnn"])["token"]).json()["credential"]
    assert _as_device(old).post("/api/v1/agent/rotate/").status_code == 201
    Device.objects.update(previous_valid_until=timezone.now() - timedelta(seconds=1))
    assert _as_device(old).post("/api/v1/agent/beat/", {}, format="json").status_code == 401
