"""`slipway push --wait` does not pass a build whose version has a profile with nothing measured."""

from __future__ import annotations

from tests.cli.conftest import job, version_in
from tests.cli.fake_api import FakeApi
from tests.cli.test_gate import NOTHING_MEASURED

UPLOAD = "/api/v1/models/scorer/versions/"
VERSION = "/api/v1/versions/17/"


def _readiness(arm: str) -> list[dict]:
    ready = {"status": "ready", "reason": "", "step": None}
    failed = {"status": "failed", "reason": NOTHING_MEASURED, "step": "benchmark"}
    return [
        {"profile": "arm-cpu", **(ready if arm == "ready" else failed)},
        {"profile": "x86-cpu", **ready},
    ]


def test_push_wait_exits_1_naming_the_profile_with_nothing_measured(api: FakeApi, cli, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx bytes")
    api.add("POST", UPLOAD, (201, version_in("processing")))
    api.add(
        "GET",
        VERSION,
        (200, version_in("processing", [job("benchmark", "running", profile="arm-cpu", progress=0.5)])),
        (200, version_in("ready", profile_readiness=_readiness("failed"))),
    )
    result = cli("push", str(model), "--model", "scorer", "--profile", "x86-cpu,arm-cpu", "--wait", "--timeout", "10")
    assert result.code == 1, result.err
    assert "scorer v3 (id 17) has no measured evidence on arm-cpu:" in result.err
    assert "Concat: axis 1 sizes differ (20 vs 21)." in result.err


def test_the_report_says_why_each_variant_and_profile_has_no_numbers(api: FakeApi, cli):
    not_built = "ov-ir-int8 was not built: static INT8 needs calibration data; upload a calibration set (.npz)."
    version = version_in(
        "ready",
        profile_readiness=_readiness("failed"),
        reports={
            "optimize": {
                "arm-cpu": {
                    "variants": [{"name": "ort-opt", "backend": "onnxruntime", "precision": "fp32"}],
                    "errors": {},
                    "skipped": {},
                    "notes": {"openvino": [not_built]},
                }
            },
            "benchmark": {
                "arm-cpu": {
                    "baseline": {"error": "Concat: axis 1 sizes differ (20 vs 21).", "points": []},
                    "variants": {"ort-opt": {"error": "Concat: axis 1 sizes differ (20 vs 21).", "points": []}},
                }
            },
        },
    )
    api.add("GET", VERSION, (200, version))
    api.add("GET", "/api/v1/versions/17/review/", (200, {"gates": [], "gates_passed": True}))
    result = cli("report", "17")
    assert result.code == 0, result.err
    section = result.out.split("Profile arm-cpu", 1)[1]
    assert section.splitlines()[1] == f"  NO MEASURED EVIDENCE: {NOTHING_MEASURED}"
    assert f"  openvino: {not_built}" in section
    assert "  the original model was not benchmarked: Concat: axis 1 sizes differ (20 vs 21)." in section
    assert "  ort-opt was not benchmarked: Concat: axis 1 sizes differ (20 vs 21)." in section


def test_push_wait_exits_0_when_every_profile_was_measured(api: FakeApi, cli, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx bytes")
    api.add("POST", UPLOAD, (201, version_in("processing")))
    api.add("GET", VERSION, (200, version_in("ready", profile_readiness=_readiness("ready"))))
    result = cli("push", str(model), "--model", "scorer", "--wait", "--timeout", "10")
    assert result.code == 0, result.err
    assert "no measured evidence" not in result.err


def test_the_report_says_which_profile_waits_for_hardware_and_which_was_measured_elsewhere(api: FakeApi, cli):
    waiting = "No worker serves arm-cpu, which needs an aarch64 CPU: its steps wait until one connects."
    elsewhere = "Measured on cpu@box (x86_64, AMD EPYC), which is not the hardware x86-gpu names (an NVIDIA GPU)."
    readiness = [
        {"profile": "arm-cpu", "status": "processing", "reason": "", "step": None, "service_note": waiting},
        {"profile": "x86-cpu", "status": "ready", "reason": "", "step": None, "hardware_note": elsewhere},
    ]
    jobs = [job("validate", "queued", profile="arm-cpu"), job("benchmark", "succeeded", profile="x86-cpu")]
    api.add("GET", VERSION, (200, version_in("processing", jobs, profile_readiness=readiness)))
    api.add("GET", "/api/v1/versions/17/review/", (409, {"code": "no_evidence", "message": "not yet"}))
    result = cli("report", "17")
    assert result.code == 0, result.err
    arm = result.out.split("Profile arm-cpu", 1)[1].split("Profile x86-cpu", 1)[0]
    assert arm.splitlines()[1] == f"  WAITING FOR HARDWARE: {waiting}"
    x86 = result.out.split("Profile x86-cpu", 1)[1]
    assert x86.splitlines()[1] == f"  MEASURED ON OTHER HARDWARE: {elsewhere}"
