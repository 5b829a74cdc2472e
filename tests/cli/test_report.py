"""`slipway report`: a compact table per hardware profile, op support, recommendation, gates;
the report of a real pipeline run (recorded from the integration test) reads as a person needs."""

from __future__ import annotations

import json

from slipway_cli.commands.report import render
from tests.cli.conftest import finished, job, version_in
from tests.cli.fake_api import FakeApi, Reply

REAL = "/api/v1/versions/1/"


def test_report_of_a_real_run(api: FakeApi, cli):
    real = finished()
    api.add("GET", REAL, (200, real["version"]))
    api.add("GET", f"{REAL}review/", (200, real["review"]))
    result = cli("report", "1")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "scorer v1 (id 1, team ml): ready"
    assert "  inputs: input float32[batch, 16]" in lines
    assert "  parameters: 676, FLOPs per sample: 1,348" in lines

    header = next(line for line in lines if "VARIANT" in line)
    assert header.split() == [
        "VARIANT",
        "BACKEND",
        "PRECISION",
        "P50",
        "B1",
        "P99",
        "B1",
        "THRU",
        "B1",
        "BEST",
        "THRU",
        "PARITY",
    ]
    winner = next(line for line in lines if "* ort-opt-basic" in line)
    assert winner.split()[2:4] == ["onnxruntime", "fp32"]
    assert "0.006 ms" in winner and "0.049 ms" in winner and "98,214/s" in winner
    assert "pass (cos 1, max abs 0)" in winner
    int8 = next(line for line in lines if "ort-int8-dynamic" in line and "int8" in line.split())
    assert "pass (cos 0.999959, max abs 0.419)" in int8
    original = next(line for line in lines if "(original)" in line)
    assert "0.041 ms" in original and "reference" in original
    openvino = next(line for line in lines if line.strip().startswith("ov-ir-fp16 "))
    assert "not measured" in openvino and "fp16-weights" in openvino

    assert "  Recommended (*): ort-opt-basic" in lines
    assert any(line.startswith("    Use 'ort-opt-basic' (onnxruntime, fp32): p99 0.049 ms") for line in lines)
    assert "    ort-opt-extended: Slower: p99 0.053 ms vs 0.049 ms for 'ort-opt-basic' at batch 1." in lines
    assert any(line.startswith("    ov-ir-fp32: Not benchmarked: ") for line in lines)
    assert "    onnxruntime 1.32.0: full" in lines and "    openvino 2026.4.1: full" in lines

    assert "Gates: 1 of 2 failed" in lines
    assert any(
        line.startswith("  FAIL  p99 impossibly fast (max_p99_latency, x86-cpu): 0.049 vs threshold 1e-06")
        for line in lines
    )


def test_report_json_prints_the_raw_objects(api: FakeApi, cli):
    real = finished()
    api.add("GET", REAL, (200, real["version"]))
    api.add("GET", f"{REAL}review/", (200, real["review"]))
    result = cli("report", "1", "--json")
    assert result.code == 0
    assert json.loads(result.out) == {"version": real["version"], "review": real["review"]}


def test_report_of_an_unfinished_version_shows_its_steps(api: FakeApi, cli):
    running = version_in(
        "processing",
        [job("inspect", "succeeded", None, 1.0), job("optimize", "running", progress=0.6, progress_message="int8")],
    )
    api.add("GET", "/api/v1/versions/17/", (200, running))
    api.add(
        "GET",
        "/api/v1/versions/17/review/",
        Reply(
            409,
            {"code": "no_evidence", "message": "Version 3 of scorer has a pipeline run that is running.", "fields": {}},
        ),
    )
    result = cli("report", "17")
    assert result.code == 0, result.err
    assert "scorer v3 (id 17, team vision): processing" in result.out
    assert "optimize   x86-cpu      running     60%  int8" in result.out
    assert "Gates: not evaluated. Version 3 of scorer has a pipeline run that is running." in result.out

    result = cli("report", "17", "--json")
    assert json.loads(result.out)["review"] is None


def test_op_support_problems_and_failed_steps_are_spelled_out():
    version = version_in(
        "failed",
        [job("validate", "succeeded"), job("optimize", "failed", error="MNN crashed converting the model.")],
        status_reason="optimize failed on x86-cpu",
        reports={
            "validate": {
                "x86-cpu": {
                    "reports": {
                        "openvino": {
                            "verdict": "partial",
                            "runtime_version": "2025.3",
                            "installed": True,
                            "ops": [
                                {"op_type": "NonMaxSuppression", "status": "unsupported"},
                                {"op_type": "TopK", "status": "fallback"},
                                {"op_type": "Conv", "status": "supported"},
                            ],
                            "remediation": {
                                "rewrites": [],
                                "summary": "No rewrite Slipway knows made openvino take the model (tried 1: ...).",
                            },
                        },
                        "mnn": {"verdict": "not_installed", "installed": False},
                    }
                }
            }
        },
    )
    text = render(version, None, "Version 3 of scorer has a pipeline run that is failed.")
    assert "  optimize failed on x86-cpu" in text
    assert "  optimize failed: MNN crashed converting the model." in text
    assert "    openvino 2025.3: partial; unsupported: NonMaxSuppression; falls back: TopK\n      No rewrite" in text
    assert "    mnn: not installed on the worker" in text


def test_reference_columns_are_marked_and_a_missing_converter_says_why():
    version = version_in(
        "processing",
        [job("validate", "succeeded")],
        reports={
            "validate": {
                "x86-cpu": {
                    "reports": {
                        "onnxruntime": {"verdict": "full", "runtime_version": "1.32.0", "installed": True, "ops": []},
                        "rknn": {
                            "verdict": "partial",
                            "runtime_version": "2.5.0",
                            "installed": True,
                            "ops": [{"op_type": "Erf", "status": "fallback"}],
                        },
                        "litert": {
                            "verdict": "not_installed",
                            "installed": False,
                            "method": "converter",
                            "notes": ["This machine runs LiteRT 2.3.0 but not its converter (onnx2tf)."],
                        },
                    },
                    "matrix": {"report_only": ["litert", "rknn"]},
                }
            }
        },
    )
    text = render(version, None, "not finished")
    assert "    onnxruntime 1.32.0: full" in text
    assert "    rknn 2.5.0 (reference only, not built): partial; falls back: Erf" in text
    assert (
        "    litert (reference only, not built): not installed on the worker: This machine runs LiteRT 2.3.0 but "
        "not its converter (onnx2tf)." in text
    )


def test_the_previous_approved_version_is_read_from_the_comparison_made_when_the_version_was_read():
    version = version_in(
        "ready",
        [job("recommend", "succeeded")],
        reports={"recommend": {"x86-cpu": {"winner": None, "summary": "Keep the original model."}, "gpu": {}}},
    )
    summary = "ort-int8 of v3 against ort-int8 of v2: no change in CPU time per inference beyond the noise."
    version["previous_approved"] = {
        "version_id": 7,
        "number": 2,
        "profiles": {"x86-cpu": {"summary": summary}},
        "not_compared": {"gpu": "scorer v2 (approved) was not run on gpu."},
    }
    text = render(version, None, "not reviewed")
    assert f"  Against v2 (approved): {summary}" in text
    assert "  Against v2 (approved): not compared: scorer v2 (approved) was not run on gpu." in text
    version["previous_approved"] = None
    assert "Against v" not in render(version, None, "not reviewed")


def test_timings_an_emulated_device_measured_are_said_to_be_emulated():
    real = finished()
    version = json.loads(json.dumps(real["version"]))
    profile = next(iter(version["reports"]["benchmark"]))
    version["reports"]["benchmark"][profile]["measured_on"] = {
        "kind": "device", "name": "pi-5", "arch": "aarch64", "cpu_model": "emulated aarch64 CPU (QEMU)", "cores": 2,
        "emulation": "QEMU user-mode emulation of aarch64 on an x86-64 host (AMD EPYC)",
    }  # fmt: skip
    text = render(version, real["review"])
    assert (
        "  TIMINGS EMULATED: measured on device pi-5 (aarch64, emulated aarch64 CPU (QEMU)) under QEMU user-mode "
        "emulation of aarch64 on an x86-64 host (AMD EPYC): not representative of the device; op support and parity "
        "are the ARM builds'."
    ) in text.splitlines()
    # a worker's own measurements add no line
    assert "TIMINGS EMULATED" not in render(real["version"], real["review"])
