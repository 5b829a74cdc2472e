"""The Docker image driver: a Triton image that carries one model version, built and pushed by the Docker Engine.

`build_context` writes a build context:

    Dockerfile            FROM nvcr.io/nvidia/tritonserver:<version>-py3, the model, a health check
    models/<model>/...    the Triton repository entry, as `triton_repository` writes it
    slipway/workers/...   python mode only: Slipway's engine, which model.py runs
    requirements.txt      python mode only: the engine backend's runtime, pinned to this worker's versions

The image starts Triton in explicit model-control mode with the model loaded, so the
Triton driver can manage it afterwards like any other server, and with
`--strict-readiness=false`, so that /v2/health/ready means "the server is up" (the
HEALTHCHECK asks for the model's own readiness instead).

`DockerEngine` talks to the Docker Engine API over its unix socket (http.client, no
extra dependency): `build` sends the context as a tar stream from a temporary file (never
read whole into memory), `push` sends the image to its registry. Without an engine it
says so; `build_context` needs none, so a CI system can build the context elsewhere.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import importlib.metadata
import json
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from workers.engine.targets.base import DeploymentSpec, TargetError, TargetSettings
from workers.engine.targets.triton_repository import LocalStore, TritonRepository, prepare_version

DEFAULT_TRITON_VERSION = "24.10"
IMAGE_MODEL_REPOSITORY = "/models"
IMAGE_SLIPWAY_ROOT = "/opt/slipway"
DOCKER_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class ImageSettings:
    """The image to make: `repository` ("registry.example.com/team/mlp") and `tag` (default
    "<model>-v<version>"), on Triton `triton_version` (an NGC release such as "24.10")."""

    repository: str
    tag: str = ""
    triton_version: str = DEFAULT_TRITON_VERSION
    backend_mode: str = "native"
    extra_requirements: tuple[str, ...] = ()

    def tag_for(self, spec: DeploymentSpec) -> str:
        """The image's tag for the version."""
        return self.tag or f"{spec.model_name.lower()}-v{spec.version}"

    def reference(self, spec: DeploymentSpec) -> str:
        """ "<repository>:<tag>"."""
        return f"{self.repository}:{self.tag_for(spec)}"


@dataclass(frozen=True)
class BuildContext:
    """A written build context: its directory, Dockerfile text and every file in it (relative)."""

    path: Path
    image: str
    dockerfile: str
    files: tuple[str, ...]


def build_context(spec: DeploymentSpec, image: ImageSettings, out_dir: Path) -> BuildContext:
    """Write the build context of an image serving `spec` into `out_dir` (which must not exist yet)."""
    if image.backend_mode not in ("native", "python"):
        raise TargetError(
            "invalid_target", f"The backend mode must be 'native' or 'python', not {image.backend_mode!r}."
        )
    python = image.backend_mode == "python"
    if out_dir.exists():
        raise TargetError("invalid_target", f"The build context {out_dir} exists already; give a new directory.")
    staging = out_dir.with_name(f".{out_dir.name}.building")
    try:
        (staging / "models").mkdir(parents=True)
        # The image's own server: the paths are where the Dockerfile puts Slipway.
        settings = TargetSettings(
            name="image",
            url="http://127.0.0.1:8000",
            repository=str(staging / "models"),
            backend_mode="python" if python else "native",
            python_paths=(IMAGE_SLIPWAY_ROOT,) if python else (),
        )
        prepared = prepare_version(spec, settings)
        TritonRepository(LocalStore(settings.location)).push(prepared, spec.model_name, [spec.version])
        if python:
            _copy_engine(staging / "slipway")
            requirements = _requirements(spec.engine_backend, image.extra_requirements)
            (staging / "requirements.txt").write_text("\n".join(requirements) + "\n")
        dockerfile = render_dockerfile(spec, image, digest=json.dumps(prepared.hashes, sort_keys=True))
        (staging / "Dockerfile").write_text(dockerfile)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = tuple(sorted(str(path.relative_to(out_dir)) for path in out_dir.rglob("*") if path.is_file()))
    return BuildContext(out_dir, image.reference(spec), dockerfile, files)


def render_dockerfile(spec: DeploymentSpec, image: ImageSettings, digest: str = "") -> str:
    """The Dockerfile text for the image; `digest` (the files' hashes) becomes a label."""
    name = spec.model_name
    files_sha = hashlib.sha256(digest.encode()).hexdigest()[:16] if digest else ""
    lines = [
        f"# Written by Slipway: model {name}, version {spec.version}, {image.backend_mode} mode.",
        f"FROM nvcr.io/nvidia/tritonserver:{image.triton_version}-py3",
        f'LABEL org.opencontainers.image.title="{name}" org.opencontainers.image.version="{spec.version}" \\',
        f'      io.slipway.model="{name}" io.slipway.version="{spec.version}" \\',
        f'      io.slipway.backend-mode="{image.backend_mode}" io.slipway.files-sha256="{files_sha}"',
    ]
    if image.backend_mode == "python":
        lines += [
            f"COPY requirements.txt {IMAGE_SLIPWAY_ROOT}/requirements.txt",
            f"RUN python3 -m pip install --no-cache-dir -r {IMAGE_SLIPWAY_ROOT}/requirements.txt",
            f"COPY slipway/ {IMAGE_SLIPWAY_ROOT}/",
        ]
    lines += [
        f"COPY models/ {IMAGE_MODEL_REPOSITORY}/",
        "EXPOSE 8000 8001 8002",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \\",
        f"  CMD curl -fsS http://127.0.0.1:8000/v2/models/{name}/ready || exit 1",
        "CMD "
        + json.dumps(
            [
                "tritonserver",
                f"--model-repository={IMAGE_MODEL_REPOSITORY}",
                "--model-control-mode=explicit",
                f"--load-model={name}",
                "--strict-readiness=false",
            ]
        ),
    ]
    return "\n".join(lines) + "\n"


def _requirements(engine_backend: str, extra: tuple[str, ...]) -> list[str]:
    """The backend's packages pinned to the versions on this worker, where installed (the
    image then runs what was benchmarked); unpinned otherwise."""
    from workers.engine.backends.registry import BACKENDS

    # What the stub's interpreter needs to run the backend's variants: the plug-in says.
    backend_class = BACKENDS.get(engine_backend)
    names = backend_class.serving_requirements if backend_class is not None else ()
    if not names:
        known = ", ".join(sorted(name for name, known_class in BACKENDS.items() if known_class.serving_requirements))
        raise TargetError(
            "unsupported_format",
            f"Slipway doesn't know which packages the '{engine_backend}' backend needs in an image; "
            f"known backends: {known}. Pass them as extra requirements.",
        )
    pinned = []
    for package in names:
        try:
            pinned.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(package)
    return pinned + list(extra)


def _copy_engine(target: Path) -> None:
    """Slipway's framework-free engine (the `workers` package's engine only) into `target`."""
    workers = Path(__file__).resolve().parents[2]
    (target / "workers").mkdir(parents=True)
    shutil.copy2(workers / "__init__.py", target / "workers" / "__init__.py")
    shutil.copytree(
        workers / "engine", target / "workers" / "engine", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def write_tar(context: BuildContext, target: Path) -> Path:
    """The context as an uncompressed tar file (what the Engine API's /build takes)."""
    with tarfile.open(target, "w") as archive:
        for name in context.files:
            archive.add(context.path / name, arcname=name, recursive=False)
    return target


# --- the Docker Engine API ---------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, as the Docker Engine serves it."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


@dataclass(frozen=True)
class BuildResult:
    """A built image: its id, reference and the build's log."""

    image_id: str
    image: str
    log: tuple[str, ...]


@dataclass(frozen=True)
class PushOutcome:
    """A pushed image: its registry digest, and the push's status lines."""

    image: str
    digest: str
    log: tuple[str, ...]


class DockerEngine:
    """A Docker Engine reached over its unix socket."""

    def __init__(self, socket_path: str = DOCKER_SOCKET, timeout_seconds: float = 3600.0) -> None:
        self.socket_path = socket_path
        self.timeout_seconds = timeout_seconds

    def ping(self) -> bool:
        """Whether an engine answers on the socket."""
        try:
            with self._request("GET", "/_ping", timeout=5) as response:
                return response.status == 200
        except TargetError:
            return False

    def build(self, context: BuildContext) -> BuildResult:
        """Build the image from the context; TargetError("image_build_failed") with the engine's words."""
        with tempfile.TemporaryDirectory(prefix="slipway-context-") as scratch:
            archive = write_tar(context, Path(scratch) / "context.tar")
            query = urlencode({"t": context.image, "rm": "1", "forcerm": "1"})
            with (
                archive.open("rb") as body,
                self._request(
                    "POST",
                    f"/build?{query}",
                    body=body,
                    headers={"Content-Type": "application/x-tar", "Content-Length": str(archive.stat().st_size)},
                ) as response,
            ):
                messages = list(_json_lines(response))
        log = tuple(str(item.get("stream", "")).rstrip() for item in messages if item.get("stream"))
        errors = [str(item.get("error") or item.get("errorDetail", {}).get("message", "")) for item in messages]
        errors = [error for error in errors if error]
        image_id = next((str(item["aux"]["ID"]) for item in messages if "ID" in (item.get("aux") or {})), "")
        if errors or not image_id:
            reason = errors[-1] if errors else "the engine reported no image id"
            raise TargetError(
                "image_build_failed",
                f"Docker could not build {context.image}: {reason.strip()}",
                detail="\n".join(log[-50:]),
            )
        return BuildResult(image_id, context.image, log)

    def push(self, image: str, auth: Mapping[str, str] | None = None) -> PushOutcome:
        """Push "<repository>:<tag>" to its registry; `auth` is {"username", "password", "serveraddress"}."""
        repository, _, tag = image.rpartition(":")
        if not repository or "/" in tag:
            raise TargetError("invalid_target", f"The image '{image}' has no tag; name it as repository:tag.")
        # The engine wants the header even without credentials.
        credentials = base64.urlsafe_b64encode(json.dumps(dict(auth or {})).encode()).decode()
        with self._request(
            "POST",
            f"/images/{quote(repository, safe='/:')}/push?{urlencode({'tag': tag})}",
            headers={"X-Registry-Auth": credentials},
        ) as response:
            messages = list(_json_lines(response))
        errors = [str(item["error"]) for item in messages if item.get("error")]
        if errors:
            raise TargetError(
                "image_push_failed",
                f"Docker could not push {image}: {errors[-1]}. Check the registry address and credentials.",
                detail="\n".join(json.dumps(item) for item in messages[-20:]),
            )
        digest = next((str(item["aux"]["Digest"]) for item in messages if "Digest" in (item.get("aux") or {})), "")
        log = tuple(str(item.get("status", "")) for item in messages if item.get("status"))
        return PushOutcome(image, digest, log)

    @contextlib.contextmanager
    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[http.client.HTTPResponse]:
        connection = _UnixConnection(self.socket_path, timeout or self.timeout_seconds)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
        except OSError as exc:
            connection.close()
            raise TargetError(
                "docker_unreachable",
                f"No Docker Engine answers at {self.socket_path} ({exc.strerror or exc}); run the image build on a "
                "worker with Docker, or mount its socket into this worker.",
                detail=str(exc),
                transient=True,
            ) from exc
        try:
            if response.status >= 400:
                text = response.read().decode(errors="replace")
                try:
                    message = str(json.loads(text).get("message", text))
                except ValueError:
                    message = text
                raise TargetError(
                    "docker_rejected",
                    f"The Docker Engine refused {method} {path.split('?')[0]} ({response.status}): {message.strip()}",
                    detail=text[:4000],
                )
            yield response
        finally:
            connection.close()


def _json_lines(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The engine's progress stream: one JSON object per line."""
    for raw in response:
        line = raw.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            yield item
