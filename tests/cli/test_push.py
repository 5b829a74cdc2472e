"""`slipway push`: a streamed multipart upload with a known length, an Idempotency-Key reused
on its retries, upload progress, and --wait following the pipeline to its end."""

from __future__ import annotations

import email.policy
import io
import json
import os
import subprocess
import sys
import uuid
from email.parser import BytesParser
from pathlib import Path

import pytest

from slipway_cli.progress import UploadProgress
from tests.cli.conftest import job, version_in
from tests.cli.fake_api import DROP, FakeApi, Recorded, Reply

UPLOAD = "/api/v1/models/scorer/versions/"
VERSION = "/api/v1/versions/17/"
REPO = Path(__file__).resolve().parents[2]


def parse_multipart(request: Recorded) -> dict[str, tuple[str | None, bytes]]:
    """The body as the server's multipart parser would see it: field -> (filename, bytes)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    assert message.is_multipart()
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_payload(decode=True))
    return parts


def test_push_sends_every_field_and_file_in_one_streamed_body(api: FakeApi, cli, tmp_path):
    api.add("POST", UPLOAD, (201, version_in("processing")))
    model = tmp_path / "model.onnx"
    content = os.urandom(3 * 1024 * 1024 + 17) + b"\r\n--not-a-boundary\r\n"
    model.write_bytes(content)
    calibration = tmp_path / "calib.npz"
    calibration.write_bytes(b"PK\x03\x04 calibration arrays")
    result = cli(
        "push",
        str(model),
        "--model",
        "scorer",
        "--team",
        "vision",
        "--profile",
        "x86-cpu,nvidia-gpu",
        "--profile",
        "arm-cpu",
        "--calibration",
        str(calibration),
        "--tolerance",
        '{"min_cosine": 0.999}',
        "--inputs",
        '[{"name": "x", "shape": ["batch", 8], "dtype": "float32"}]',
        "--objective",
        "throughput_within_p99_budget",
        "--p99-budget-ms",
        "12.5",
        "--notes",
        "retrained on März data",
    )
    assert result.code == 0, result.err
    assert "Uploaded scorer v3 (id 17)" in result.out

    (request,) = api.calls("POST", UPLOAD)
    assert int(request.headers["content-length"]) == request.size == len(request.body)
    assert "transfer-encoding" not in request.headers
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=slipway-")
    parts = parse_multipart(request)
    assert parts["file"] == ("model.onnx", content)
    assert parts["calibration"] == ("calib.npz", b"PK\x03\x04 calibration arrays")
    assert parts["team"] == (None, b"vision")
    assert parts["profiles"] == (None, b"x86-cpu,nvidia-gpu,arm-cpu")
    assert json.loads(parts["tolerance"][1]) == {"min_cosine": 0.999}
    assert json.loads(parts["inputs"][1])[0]["shape"] == ["batch", 8]
    assert parts["objective"] == (None, b"throughput_within_p99_budget")
    assert parts["p99_budget_ms"] == (None, b"12.5")
    assert parts["notes"] == (None, "retrained on März data".encode())
    assert list(parts)[-2:] == ["file", "calibration"]  # small fields first, files last


def test_upload_progress_is_shown_as_plain_lines_off_a_terminal(api: FakeApi, cli, tmp_path):
    api.add("POST", UPLOAD, (201, version_in("processing")))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\0" * (5 * 1024 * 1024))
    result = cli("push", str(model), "--model", "scorer")
    assert result.code == 0
    lines = [line for line in result.err.splitlines() if line.startswith("Uploading model.onnx: ")]
    assert "\r" not in result.err
    assert any("100.0%" in line and "5.0 MiB of 5.0 MiB" in line and "/s" in line for line in lines), lines
    assert "sent 5.0 MiB in" in result.err


def test_progress_bar_redraws_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    out = Terminal()
    bar = UploadProgress("Uploading big.onnx", out, clock=lambda: now[0])
    for sent in range(0, 101, 10):
        now[0] += 1.0
        bar.update(sent * 1024 * 1024, 100 * 1024 * 1024)
    text = out.getvalue()
    assert text.count("\r") == 11 and "\n" not in text
    assert "[########################] 100.0%  100.0 MiB of 100.0 MiB" in text
    assert "50.0%  50.0 MiB of 100.0 MiB  8.3 MiB/s  0:06 left" in text


def test_a_dropped_connection_is_retried_with_the_same_idempotency_key(api: FakeApi, cli, tmp_path):
    api.add("POST", UPLOAD, DROP, (201, version_in("processing")))
    model = tmp_path / "model.onnx"
    model.write_bytes(os.urandom(2 * 1024 * 1024))
    result = cli("push", str(model), "--model", "scorer")
    assert result.code == 0, result.err
    first, second = api.calls("POST", UPLOAD)
    key = first.headers["idempotency-key"]
    assert uuid.UUID(key).version == 4
    assert second.headers["idempotency-key"] == key
    assert first.sha256 == second.sha256 and first.size == second.size  # the same body again
    assert "Retrying in 0 s (attempt 2 of 3) with the same Idempotency-Key" in result.err

    assert cli("push", str(model), "--model", "scorer").code == 0
    assert api.calls("POST", UPLOAD)[-1].headers["idempotency-key"] != key  # a new push, a new key


def test_a_retry_while_the_server_still_works_on_the_first_attempt_waits_for_it(api: FakeApi, cli, tmp_path):
    busy = {
        "code": "idempotency_in_progress",
        "message": "A request with the Idempotency-Key 'k' is still being processed; retry in a moment.",
        "fields": {},
    }
    api.add("POST", UPLOAD, DROP, Reply(409, busy), Reply(201, version_in("processing")))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = cli("push", str(model), "--model", "scorer", "--print-id")
    assert result.code == 0, result.err
    assert result.out == "17\n"
    assert len({r.headers["idempotency-key"] for r in api.calls("POST", UPLOAD)}) == 1
    assert "The server is still working on the previous attempt" in result.err


def test_push_gives_up_after_three_attempts(api: FakeApi, cli, tmp_path):
    api.add("POST", UPLOAD, DROP)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = cli("push", str(model), "--model", "scorer")
    assert result.code == 2
    assert len(api.calls("POST", UPLOAD)) == 3
    assert f"The connection to {api.url} was closed before the server answered" in result.err
    assert "check `slipway models list`" in result.err and "before pushing again" in result.err


def test_a_refused_upload_is_not_retried_and_its_field_errors_are_shown(api: FakeApi, cli, tmp_path):
    body = {
        "code": "invalid",
        "message": "tolerance: Unknown setting 'min_cos'.",
        "fields": {"tolerance": ["Unknown setting 'min_cos'."]},
    }
    api.add("POST", UPLOAD, Reply(400, body))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = cli("push", str(model), "--model", "scorer", "--tolerance", '{"min_cos": 1}')
    assert result.code == 2
    assert len(api.calls("POST", UPLOAD)) == 1
    assert "slipway: tolerance: Unknown setting 'min_cos'." in result.err
    assert "  tolerance: Unknown setting 'min_cos'." in result.err


def test_a_team_required_answer_names_the_team_option(api: FakeApi, cli, tmp_path):
    message = "You belong to several teams (fraud, vision); say which one with the 'team' field (its slug)."
    api.add("POST", UPLOAD, Reply(400, {"code": "team_required", "message": message, "fields": {}}))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = cli("push", str(model), "--model", "scorer")
    assert result.code == 2
    assert "slipway: You belong to several teams (fraud, vision); say which one with --team SLUG." in result.err
    assert "'team' field" not in result.err


def test_an_inputs_required_answer_names_the_inputs_option(api: FakeApi, cli, tmp_path):
    example = '[{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]'
    message = (
        "A TorchScript file does not record its input shapes, so Slipway needs them at upload: send the 'inputs' "
        f"field with each input's name, shape and dtype (one entry per argument of the module's forward, in order; "
        f'a name such as "batch" for each dim that varies), for example inputs={example} with your model\'s sizes. '
        "Nothing was stored."
    )
    api.add("POST", UPLOAD, Reply(400, {"code": "inputs_required", "message": message, "fields": {}}))
    model = tmp_path / "model.pt"
    model.write_bytes(b"PK")
    result = cli("push", str(model), "--model", "scorer")
    assert result.code == 2
    assert "pass --inputs with each input's name" in result.err
    assert f"for example --inputs '{example}' with your model's sizes" in result.err


def test_bad_arguments_are_refused_before_uploading(api: FakeApi, cli, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = cli("push", str(model), "--model", "scorer", "--tolerance", "{min_cosine: 0.9}")
    assert result.code == 2 and "--tolerance is not valid JSON" in result.err
    result = cli("push", str(tmp_path / "missing.onnx"), "--model", "scorer")
    assert result.code == 2 and "missing.onnx" in result.err and "No such file" in result.err
    result = cli("push", str(model), "--model", "my model")
    assert result.code == 2 and "is not a model slug" in result.err
    with pytest.raises(SystemExit) as usage:
        cli("push", str(model))  # --model is required
    assert usage.value.code == 2
    assert api.requests == []


def test_wait_follows_the_steps_until_ready(api: FakeApi, cli, tmp_path):
    api.add("POST", UPLOAD, (201, version_in("processing")))
    api.add(
        "GET",
        VERSION,
        (200, version_in("processing", [job("inspect", "running", None, 0.5, progress_message="checking the graph")])),
        (
            200,
            version_in(
                "processing",
                [
                    job("inspect", "succeeded", None, 1.0),
                    job("validate", "running", progress=0.4, progress_message="asking openvino"),
                ],
            ),
        ),
        (
            200,
            version_in("ready", [job("inspect", "succeeded", None, 1.0), job("validate", "succeeded", progress=1.0)]),
        ),
    )
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = cli("push", str(model), "--model", "scorer", "--wait", "--print-id")
    assert result.code == 0, result.err
    assert result.out == "17\n"
    assert "inspect" in result.err and "checking the graph" in result.err
    assert "validate   x86-cpu      running     40%  asking openvino" in result.err
    assert "scorer v3 (id 17) is ready" in result.err


def test_wait_exits_1_with_the_failing_steps_error(api: FakeApi, cli, tmp_path):
    failed = version_in(
        "failed",
        [
            job("inspect", "succeeded", None, 1.0),
            job("optimize", "failed", error="The model needs more memory than the 8 GiB sandbox allows."),
        ],
        status_reason="optimize failed",
    )
    api.add("POST", UPLOAD, (201, version_in("processing")))
    api.add("GET", VERSION, (200, failed))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = cli("push", str(model), "--model", "scorer", "--wait", "--json")
    assert result.code == 1
    assert json.loads(result.out)["status"] == "failed"
    assert "The pipeline of scorer v3 (id 17) failed." in result.err
    assert "optimize (x86-cpu): The model needs more memory than the 8 GiB sandbox allows." in result.err


def test_wait_exits_2_on_timeout(api: FakeApi, cli, tmp_path):
    api.add("POST", UPLOAD, (201, version_in("processing")))
    api.add("GET", VERSION, (200, version_in("processing", [job("benchmark", "running", progress=0.3)])))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = cli("push", str(model), "--model", "scorer", "--wait", "--timeout", "0.2")
    assert result.code == 2
    assert "Timed out after 0.2 s waiting for the pipeline of version 17; it is processing" in result.err
    assert "still running: benchmark" in result.err


def test_wait_rides_out_a_server_restart(api: FakeApi, cli, tmp_path):
    api.add("POST", UPLOAD, (201, version_in("processing")))
    api.add("GET", VERSION, Reply(502, b"<html>Bad Gateway</html>"), (200, version_in("ready")))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    result = cli("push", str(model), "--model", "scorer", "--wait")
    assert result.code == 0, result.err


def _peak_rss_kib(api_url: str, model: Path, tmp_path: Path) -> int:
    """Run `slipway push` in a fresh interpreter; its peak resident memory in KiB.

    Read from VmHWM, which starts afresh at exec; getrusage's ru_maxrss would include the
    forked pytest process's memory from before the exec."""
    script = (
        "import re, sys\n"
        "from slipway_cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "status = open('/proc/self/status').read()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))\n"
        "sys.exit(code)\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLIPWAY_URL": api_url,
        "SLIPWAY_TOKEN": "slw_abc_def",
        "SLIPWAY_CONFIG": str(tmp_path / "none.json"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script, "push", str(model), "--model", "scorer", "--print-id"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc (Linux)")
def test_a_200_mb_upload_runs_in_constant_memory(api: FakeApi, tmp_path):
    api.add("POST", UPLOAD, (201, version_in("processing")))
    small = tmp_path / "small.onnx"
    small.write_bytes(b"\0" * 1024)
    big = tmp_path / "big.onnx"
    with big.open("wb") as sparse:
        sparse.truncate(200 * 1024 * 1024)
    baseline = _peak_rss_kib(api.url, small, tmp_path)
    peak = _peak_rss_kib(api.url, big, tmp_path)
    received = api.calls("POST", UPLOAD)[-1]
    assert received.size == int(received.headers["content-length"]) > 200 * 1024 * 1024
    assert received.tail.endswith(b"--\r\n")
    print(f"peak RSS {baseline / 1024:.1f} MiB for 1 KiB, {peak / 1024:.1f} MiB for 200 MiB")
    assert (peak - baseline) < 16 * 1024, f"peak RSS grew by {(peak - baseline) / 1024:.1f} MiB for a 200 MiB upload"


def test_input_and_output_declarations_are_sent_from_a_file_or_inline(api: FakeApi, cli, tmp_path):
    api.add("POST", UPLOAD, (201, version_in("processing")))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    outputs = tmp_path / "outputs.json"
    outputs.write_text('{"output0": {"kind": "detection", "boxes": [0, 4], "scores": [4, 84]}}')
    result = cli(
        "push", str(model), "--model", "scorer",
        "--declare-inputs", '{"dims": {"height": {"typical": 640, "step": 32}}}',
        "--declare-outputs", str(outputs),
    )  # fmt: skip
    assert result.code == 0, result.err
    parts = parse_multipart(api.calls("POST", UPLOAD)[0])
    assert json.loads(parts["input_declarations"][1]) == {"dims": {"height": {"typical": 640, "step": 32}}}
    assert json.loads(parts["output_declarations"][1])["output0"]["scores"] == [4, 84]
    result = cli("push", str(model), "--model", "scorer", "--declare-outputs", str(tmp_path / "missing.json"))
    assert result.code == 2 and "missing.json" in result.err


def test_push_says_at_once_which_chosen_profile_nothing_serves(api: FakeApi, cli, tmp_path):
    """Issue 18: the upload's answer carries each waiting profile's service note; the CLI shows
    it right after the upload instead of leaving a CI job to wait in silence."""
    note = (
        "No worker serves arm-cpu-mnn, which needs an aarch64 CPU: its steps wait until one connects. "
        "Start a worker on such a machine with `python manage.py run_worker --queues arm64`."
    )
    readiness = [
        {"profile": "arm-cpu-mnn", "status": "processing", "reason": "", "step": None, "service_note": note},
        {"profile": "x86-cpu", "status": "processing", "reason": "", "step": None, "service_note": ""},
    ]
    api.add("POST", UPLOAD, (201, version_in("processing", profile_readiness=readiness)))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07")
    result = cli("push", str(model), "--model", "scorer", "--team", "vision", "--profile", "arm-cpu-mnn,x86-cpu")
    assert result.code == 0, result.err
    assert f"Warning: arm-cpu-mnn: {note}\n" in result.err
    assert "Warning: x86-cpu" not in result.err
