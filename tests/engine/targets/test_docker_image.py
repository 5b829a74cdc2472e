"""A Triton image: its build context, and the Docker Engine API calls that build and push it (to a stand-in engine)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import socketserver
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.targets.conftest import make_mlp, mlp_spec
from workers.engine.targets.base import TargetError
from workers.engine.targets.docker_image import DockerEngine, ImageSettings, build_context, write_tar
from workers.engine.targets.triton_repository import (
    ENTRY_MARKER_NAME,
    MANIFEST_NAME,
    PYTHON_MODEL_NAME,
    SYS_PATH_PARAMETER,
)


@pytest.fixture
def spec(tmp_path: Path) -> Any:
    return mlp_spec(make_mlp(tmp_path / "variant" / "mlp.onnx"), 2, name="mlp")


def test_a_native_context_holds_the_dockerfile_and_the_repository_entry(spec: Any, tmp_path: Path) -> None:
    context = build_context(spec, ImageSettings("registry.example.com/team/mlp"), tmp_path / "context")
    assert context.image == "registry.example.com/team/mlp:mlp-v2"
    assert context.files == (
        "Dockerfile",
        "models/mlp/2/model.onnx",
        f"models/mlp/2/{MANIFEST_NAME}",
        "models/mlp/config.pbtxt",
        f"models/mlp/{ENTRY_MARKER_NAME}",
    )
    lines = context.dockerfile.splitlines()
    assert "FROM nvcr.io/nvidia/tritonserver:24.10-py3" in lines
    assert "COPY models/ /models/" in lines
    assert "  CMD curl -fsS http://127.0.0.1:8000/v2/models/mlp/ready || exit 1" in lines
    command = json.loads(lines[-1].removeprefix("CMD "))
    assert command == [
        "tritonserver",
        "--model-repository=/models",
        "--model-control-mode=explicit",
        "--load-model=mlp",
        "--strict-readiness=false",
    ]
    assert 'platform: "onnxruntime_onnx"' in (context.path / "models/mlp/config.pbtxt").read_text()
    assert not (tmp_path / ".context.building").exists()


def test_a_python_context_carries_slipways_engine_and_pinned_runtimes(spec: Any, tmp_path: Path) -> None:
    import onnxruntime

    image = ImageSettings(
        "registry.example.com/team/mlp", tag="candidate", triton_version="24.08", backend_mode="python"
    )
    context = build_context(spec, image, tmp_path / "context")
    assert context.image.endswith(":candidate")
    assert f"models/mlp/2/{PYTHON_MODEL_NAME}" in context.files
    assert "slipway/workers/engine/backends/registry.py" in context.files
    assert not any("__pycache__" in name for name in context.files)
    requirements = (context.path / "requirements.txt").read_text().split()
    assert f"onnxruntime=={onnxruntime.__version__}" in requirements
    config = (context.path / "models/mlp/config.pbtxt").read_text()
    assert f'key: "{SYS_PATH_PARAMETER}" value: {{ string_value: "/opt/slipway" }}' in config
    assert "FROM nvcr.io/nvidia/tritonserver:24.08-py3" in context.dockerfile
    assert "RUN python3 -m pip install --no-cache-dir -r /opt/slipway/requirements.txt" in context.dockerfile


def test_a_backend_without_declared_serving_packages_is_refused_with_the_known_ones(spec: Any, tmp_path: Path) -> None:
    from dataclasses import replace

    image = ImageSettings("registry.example.com/team/mlp", tag="candidate", backend_mode="python")
    with pytest.raises(TargetError) as caught:
        build_context(replace(spec, engine_backend="quantum"), image, tmp_path / "context")
    assert caught.value.code == "unsupported_format"
    assert "the 'quantum' backend needs in an image; known backends: mnn, ncnn, onnxruntime, openvino" in (
        caught.value.message
    )


def test_an_existing_context_directory_is_not_overwritten(spec: Any, tmp_path: Path) -> None:
    (tmp_path / "context").mkdir()
    with pytest.raises(TargetError, match="exists already"):
        build_context(spec, ImageSettings("r/mlp"), tmp_path / "context")


def test_the_tar_holds_the_context_files_by_relative_name(spec: Any, tmp_path: Path) -> None:
    context = build_context(spec, ImageSettings("r/mlp"), tmp_path / "context")
    with tarfile.open(write_tar(context, tmp_path / "context.tar")) as archive:
        assert sorted(archive.getnames()) == sorted(context.files)


# --- a stand-in Docker Engine on a unix socket -----------------------------------------------


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, replies: dict[str, list[dict[str, Any]]]) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        super().__init__(path, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Engine

    def do_GET(self) -> None:
        self._answer(b"OK", "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        kind = "build" if self.path.startswith("/build") else "push"
        lines = "".join(json.dumps(item) + "\n" for item in self.server.replies[kind])
        self._answer(lines.encode(), "application/json")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[_Engine]:
    # A short directory: unix socket paths are limited to 107 bytes.
    directory = tempfile.TemporaryDirectory(prefix="slipway-docker-", dir="/tmp")
    replies: dict[str, list[dict[str, Any]]] = {
        "build": [
            {"stream": "Step 1/6 : FROM nvcr.io/nvidia/tritonserver:24.10-py3\n"},
            {"aux": {"ID": "sha256:abc123"}},
        ],
        "push": [{"status": "Pushed"}, {"aux": {"Tag": "mlp-v2", "Digest": "sha256:feed", "Size": 1234}}],
    }
    server = _Engine(str(Path(directory.name) / "docker.sock"), replies)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        directory.cleanup()


def test_build_sends_the_context_as_a_tar_and_reads_the_image_id(engine: _Engine, spec: Any, tmp_path: Path) -> None:
    context = build_context(spec, ImageSettings("registry.example.com/team/mlp"), tmp_path / "context")
    docker = DockerEngine(engine.server_address)  # type: ignore[arg-type]
    assert docker.ping()
    result = docker.build(context)
    assert result.image_id == "sha256:abc123"
    assert result.log == ("Step 1/6 : FROM nvcr.io/nvidia/tritonserver:24.10-py3",)
    (sent,) = engine.requests
    assert sent["path"].startswith("/build?t=registry.example.com%2Fteam%2Fmlp%3Amlp-v2")
    assert sent["headers"]["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(sent["body"])) as archive:
        assert "Dockerfile" in archive.getnames()


def test_a_failed_build_is_told_in_the_engines_words(engine: _Engine, spec: Any, tmp_path: Path) -> None:
    engine.replies["build"] = [
        {"stream": "Step 1/6 : FROM ...\n"},
        {"error": "manifest for tritonserver:99.99-py3 not found"},
    ]
    context = build_context(spec, ImageSettings("r/mlp", triton_version="99.99"), tmp_path / "context")
    with pytest.raises(TargetError) as caught:
        DockerEngine(engine.server_address).build(context)  # type: ignore[arg-type]
    assert caught.value.code == "image_build_failed"
    assert "manifest for tritonserver:99.99-py3 not found" in caught.value.message


def test_push_sends_the_registry_credentials(engine: _Engine) -> None:
    auth = {"username": "ci", "password": "secret", "serveraddress": "registry.example.com"}
    outcome = DockerEngine(engine.server_address).push("registry.example.com/team/mlp:mlp-v2", auth)  # type: ignore[arg-type]
    assert outcome.digest == "sha256:feed"
    (sent,) = engine.requests
    assert sent["path"] == "/images/registry.example.com/team/mlp/push?tag=mlp-v2"
    assert json.loads(base64.urlsafe_b64decode(sent["headers"]["X-Registry-Auth"])) == auth


def test_without_an_engine_the_error_says_where_it_looked(tmp_path: Path) -> None:
    docker = DockerEngine(str(tmp_path / "no.sock"))
    assert not docker.ping()
    with pytest.raises(TargetError) as caught:
        docker.push("r/mlp:v1")
    assert caught.value.code == "docker_unreachable" and caught.value.transient
    assert f"No Docker Engine answers at {tmp_path / 'no.sock'}" in caught.value.message
