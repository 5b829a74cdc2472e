"""The device agent's own rules, without a Slipway server: it waits out a server that restarts,
drops a lease it lost, refuses downloaded bytes that are not the artifact, and keeps its
credential to itself (issue 18, ADR 0016)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from slipway_agent import agent
from workers.engine.work import ArtifactMismatch, ArtifactRef, sha256_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """A loopback HTTP server answering each request with the next (status, body, headers)."""

    def __init__(self, port: int, answers: list[tuple[int, Any, dict[str, str]]]) -> None:
        self.answers, self.seen = answers, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.seen.append((self.command, self.path, self.headers.get("Authorization"), self.rfile.read(length)))
                status, body, headers = owner.answers.pop(0) if owner.answers else (500, {}, {})
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_call_waits_out_a_server_that_is_down_then_busy(monkeypatch):
    monkeypatch.setattr(agent, "MAX_BACKOFF_SECONDS", 0.5)
    port = _free_port()
    api = agent.Api(f"http://127.0.0.1:{port}", "sld_x_y", timeout=5)
    servers: list[_Server] = []
    # Nothing listens for a second (the server restarting), then it answers 503 once, then 200.
    timer = threading.Timer(1.0, lambda: servers.append(_Server(port, [(503, {}, {}), (200, {"ok": 1}, {})])))
    timer.start()
    try:
        started = time.monotonic()
        answer = api.call("POST", "/agent/beat/", json={}, retry_for=30)
        assert answer.json() == {"ok": 1} and time.monotonic() - started >= 1.0
        assert [seen[2] for seen in servers[0].seen] == ["Device sld_x_y"] * 2
    finally:
        timer.cancel()
        for server in servers:
            server.close()


def test_a_lost_lease_and_a_refusal_are_told_apart_and_not_retried():
    port = _free_port()
    server = _Server(
        port,
        [
            (409, {"code": "lease_lost", "message": "This device does not hold job 3 at attempt 1"}, {}),
            (401, {"code": "authentication_failed", "message": "The device 'b' was revoked."}, {}),
        ],
    )
    api = agent.Api(f"http://127.0.0.1:{port}", "sld_x_y", timeout=5)
    try:
        with pytest.raises(agent.LeaseLost, match="does not hold job 3"):
            api.call("POST", "/agent/jobs/3/result/", json={}, retry_for=30)
        with pytest.raises(agent.Refused, match="revoked") as refused:
            api.call("POST", "/agent/lease/", json={}, retry_for=30)
        assert refused.value.status == 401 and len(server.seen) == 2
    finally:
        server.close()


def test_downloaded_bytes_that_are_not_the_artifact_are_discarded(tmp_path: Path):
    port = _free_port()
    real = tmp_path / "real.onnx"
    real.write_bytes(b"the model")
    ref = ArtifactRef(id=5, name="x86-cpu/ort-int8", sha256=sha256_of(real), size=9, format="onnx")
    server = _Server(port, [(200, b"the modem", {}), (200, b"the model", {})])
    fetch = agent.fetcher(agent.Api(f"http://127.0.0.1:{port}", "sld_x_y", timeout=5), job=3, attempt=2)
    try:
        with pytest.raises(ArtifactMismatch, match="does not match its content hash") as mismatch:
            fetch(ref, tmp_path / "got" / "model.onnx")
        assert mismatch.value.code == "artifact_mismatch"
        assert not (tmp_path / "got" / "model.onnx").exists()  # nothing of it is kept
        assert fetch(ref, tmp_path / "got" / "model.onnx").read_bytes() == b"the model"
        assert server.seen[0][1] == "/api/v1/agent/jobs/3/artifacts/5/?attempt=2"
    finally:
        server.close()


def test_the_credential_is_kept_to_this_user(tmp_path: Path):
    state = agent.State(tmp_path / "state")
    state.save("https://slipway.example", {"id": 1, "name": "pi", "team": "ml"}, "sld_a_b")
    assert (state.credential_file.stat().st_mode & 0o777) == 0o600
    assert state.load() == ("https://slipway.example", "sld_a_b")
    state.credential_file.chmod(0o644)
    with pytest.raises(PermissionError, match="readable by others"):
        state.load()
    with pytest.raises(FileNotFoundError, match="not registered"):
        agent.State(tmp_path / "elsewhere").load()


def test_told_to_stop_while_the_server_is_down_the_agent_stops_at_once(monkeypatch):
    """SIGTERM sets the stop event: a retry that waits for an unreachable server gives up then,
    instead of retrying forever."""
    monkeypatch.setattr(agent, "MAX_BACKOFF_SECONDS", 30.0)
    stop = threading.Event()
    api = agent.Api(f"http://127.0.0.1:{_free_port()}", "sld_x_y", timeout=5, stop=stop)
    threading.Timer(1.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(agent.Stopped, match="stopped while the server can't be reached"):
        api.call("POST", "/agent/lease/", json={})  # retry_for=None: forever, but for the stop
    assert time.monotonic() - started < 5
