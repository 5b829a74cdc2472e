"""The sandbox turns crashes, memory blow-ups and hangs of the child into readable errors."""

from __future__ import annotations

import pytest

from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError, SandboxLimits, run_in_sandbox

LIMITS = SandboxLimits(memory_bytes=1 * 2**30, timeout_seconds=30)


def test_result_and_progress_come_back_and_stdout_noise_is_logged():
    seen: list[tuple[float, str]] = []
    result, log = run_in_sandbox(
        "selftest", {"action": "echo", "value": [1, 2]}, LIMITS, lambda p, m: seen.append((p, m))
    )
    assert result == {"echo": [1, 2]}
    assert (0.5, "halfway") in seen
    assert "noise on stdout" in log


def test_a_segfault_in_the_child_is_a_readable_crash_not_a_dead_worker():
    with pytest.raises(SandboxError) as info:
        run_in_sandbox("selftest", {"action": "segfault"}, LIMITS, what="inspection")
    assert info.value.code == "crashed"
    assert "SIGSEGV" in info.value.message and "worker itself is unaffected" in info.value.message


def test_allocating_past_the_memory_limit_is_reported_as_out_of_memory():
    with pytest.raises(SandboxError) as info:
        run_in_sandbox("selftest", {"action": "allocate", "bytes": 2 * 2**30}, LIMITS, what="inspection")
    assert info.value.code == "out_of_memory"
    assert "1.0 GiB" in info.value.message


def test_a_hang_is_killed_at_the_deadline():
    with pytest.raises(SandboxError) as info:
        run_in_sandbox("selftest", {"action": "hang"}, SandboxLimits(memory_bytes=2**30, timeout_seconds=2))
    assert info.value.code == "timeout"
    assert "did not finish within 2 s" in info.value.message


def test_a_model_error_in_the_child_arrives_as_model_error():
    with pytest.raises(ModelError) as info:
        run_in_sandbox("selftest", {"action": "reject"}, LIMITS)
    assert info.value.code == "invalid_model"


def test_unknown_entrypoint_is_an_engine_error():
    with pytest.raises(SandboxError) as info:
        run_in_sandbox("no-such-entry", {}, LIMITS)
    assert info.value.code == "engine_error" and "KeyError" in info.value.message


def test_the_sandbox_has_no_network():
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(SandboxError) as info:
            run_in_sandbox("selftest", {"action": "connect", "port": port}, LIMITS)
    assert "NetworkForbidden" in info.value.message and "network access is disabled" in info.value.message


def test_the_optimize_entry_reports_what_it_did_not_build_and_why(tmp_path):
    """Static INT8 without calibration data is not built silently: the report says so."""
    from tests.modelzoo import make_mlp_onnx

    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    profile = {
        "name": "x86-cpu",
        "device_kind": "cpu",
        "backends": ["onnxruntime"],
        "precisions": ["fp32", "int8"],
        "queue": "cpu",
        "options": {},
    }
    payload = {
        "source": str(model),
        "format": "onnx",
        "workdir": str(tmp_path),
        "backend": "onnxruntime",
        "profile": profile,
        "calibration": None,
        "out_dir": str(tmp_path / "variants"),
    }
    built, _ = run_in_sandbox("optimize", payload, SandboxLimits(4 * 2**30, 300), writable=[tmp_path])
    assert "ort-int8-dynamic" in {v["name"] for v in built["variants"]}
    assert any("ort-int8-static-qdq was not built" in note and "calibration" in note for note in built["notes"])
