"""The deployment files: docker-compose.yml, platform/docker/*, .dockerignore.

No Docker engine is needed: the compose file is parsed and the Dockerfiles and entrypoint
are read as text, checking what the Python side relies on (import path, settings module,
queues, the GPU request, the settings variables each container gets). One test starts gunicorn
with platform/docker/gunicorn.conf.py to check the answers it gives on its own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_DIR = ROOT / "platform" / "docker"
ENTRYPOINT = DOCKER_DIR / "entrypoint.sh"
DOCKERFILES = {
    "web": DOCKER_DIR / "web.Dockerfile",
    "worker-cpu": DOCKER_DIR / "worker-cpu.Dockerfile",
    "worker-gpu": DOCKER_DIR / "worker-gpu.Dockerfile",
}

# Every variable the settings read that a deployment may set (platform/config/settings): each
# `env*("NAME", ...)` call, and for strings its `NAME_FILE` form; plus what the worker reads.
_SETTINGS_SOURCE = "\n".join(p.read_text() for p in (ROOT / "platform" / "config" / "settings").glob("*.py"))
_READ = re.findall(r"env(str|bool|int|list|choice)\(\s*\"([A-Z0-9_]+)\"", _SETTINGS_SOURCE)
SETTINGS_ENV = (
    {name for _, name in _READ}
    | {f"{name}_FILE" for kind, name in _READ if kind == "str"}
    | set(re.findall(r"os\.environ(?:\.get|\.setdefault)?\(\s*\"([A-Z0-9_]+)\"", _SETTINGS_SOURCE))
    | {"SLIPWAY_WORKER_PROFILE"}  # labels the worker containers (cpu, gpu) for operators
)
# Read by the interpreter, Django's bootstrap, the entrypoint or gunicorn.conf.py, not by the settings.
PROCESS_ENV = {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "SLIPWAY_ROLE", "WEB_CONCURRENCY", "WEB_THREADS"}
GUNICORN_CONF = DOCKER_DIR / "gunicorn.conf.py"

APP_SERVICES = ("web", "worker-cpu", "worker-gpu", "beat")
ALL_SERVICES = {*APP_SERVICES, "postgres", "redis"}
DATA_DIR = "/var/lib/slipway"

EXPECTED_COMMANDS = {
    # sizes, timeouts, limits and JSON error answers: platform/docker/gunicorn.conf.py
    "web": "gunicorn --config platform/docker/gunicorn.conf.py --bind 0.0.0.0:8000 config.wsgi:application",
    # run_worker adds an import queue per framework installed in the image (apps/pipeline run_worker).
    "worker-cpu": "python manage.py run_worker --queues cpu,default -- -n cpu@%h"
    " --concurrency=${WORKER_CONCURRENCY:-2} --prefetch-multiplier=1 -O fair",
    "worker-gpu": "python manage.py run_worker --queues gpu -- -n gpu@%h"
    " --concurrency=1 --prefetch-multiplier=1 -O fair",
    "beat": "celery -A config.celery_app beat --schedule /var/lib/slipway/celerybeat-schedule",
}
EXPECTED_ROLES = {"web": "web", "worker-cpu": "worker", "worker-gpu": "worker", "beat": "beat"}


@cache
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"no service {name!r} in docker-compose.yml"
    return services[name]


def argv(value: str | list[str]) -> list[str]:
    """A compose command or healthcheck test as an argument list."""
    return shlex.split(value) if isinstance(value, str) else [str(item) for item in value]


def environment(name: str) -> dict[str, str | None]:
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: (pair[1] if len(pair) == 2 else None) for pair in pairs}
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def option(args: list[str], short: str, long: str) -> str | None:
    """The value of `-Q gpu`, `--queues gpu` or `--queues=gpu` in an argument list."""
    for i, arg in enumerate(args):
        if arg in (short, long) and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return None


def dockerfile_logical_lines(path: Path) -> list[str]:
    """Instructions with their backslash continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_compose_defines_exactly_the_platform_services() -> None:
    assert set(compose()["services"]) == ALL_SERVICES


@pytest.mark.parametrize("name", APP_SERVICES)
def test_process_commands(name: str) -> None:
    assert argv(service(name)["command"]) == shlex.split(EXPECTED_COMMANDS[name])


def test_commands_point_at_modules_that_exist() -> None:
    for module in ("config.wsgi", "config.celery_app", "config.settings.prod"):
        relative = Path(*module.split(".")).with_suffix(".py")
        assert (ROOT / "platform" / relative).is_file(), f"{module} not found under platform/"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_use_the_repo_import_path_and_production_settings(name: str) -> None:
    env = environment(name)
    assert "/app/platform" in (env.get("PYTHONPATH") or "").split(":")
    assert "/app" in (env.get("PYTHONPATH") or "").split(":")
    assert env.get("DJANGO_SETTINGS_MODULE") == "config.settings.prod"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_pass_only_known_settings_variables(name: str) -> None:
    unknown = set(environment(name)) - SETTINGS_ENV - PROCESS_ENV
    assert not unknown, f"{name} passes variables the settings do not read: {sorted(unknown)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_only_web_migrates(name: str) -> None:
    assert environment(name).get("SLIPWAY_ROLE") == EXPECTED_ROLES[name]
    assert "migrate" not in argv(service(name)["command"])


def test_app_services_agree_on_settings() -> None:
    shared = {"DATABASE_URL", "CELERY_BROKER_URL", "SLIPWAY_DATA_DIR", "SLIPWAY_SECRET_KEY"}
    values = {name: {k: environment(name).get(k) for k in shared} for name in APP_SERVICES}
    assert all(v == values["web"] for v in values.values()), values
    web = values["web"]
    assert (web["CELERY_BROKER_URL"] or "").startswith("redis://redis:6379/")
    assert (web["DATABASE_URL"] or "").startswith("postgres://")
    assert "@postgres:5432/" in (web["DATABASE_URL"] or "")
    assert web["SLIPWAY_DATA_DIR"] == DATA_DIR


def test_required_secrets_fail_loudly_when_missing() -> None:
    required = re.compile(r"\$\{(SLIPWAY_SECRET_KEY|POSTGRES_PASSWORD):\?[^}]+\}")
    for name in APP_SERVICES:
        env = environment(name)
        assert required.fullmatch(env.get("SLIPWAY_SECRET_KEY") or ""), name
        assert "${POSTGRES_PASSWORD:?" in (env.get("DATABASE_URL") or ""), name
    password = service("postgres")["environment"]["POSTGRES_PASSWORD"]
    assert required.fullmatch(password)


def test_worker_profiles_and_queues() -> None:
    cpu, gpu = argv(service("worker-cpu")["command"]), argv(service("worker-gpu")["command"])
    assert set((option(cpu, "-Q", "--queues") or "").split(",")) == {"cpu", "default"}
    assert (option(gpu, "-Q", "--queues") or "").split(",") == ["gpu"]
    assert option(gpu, "-c", "--concurrency") == "1"
    assert environment("worker-cpu").get("SLIPWAY_WORKER_PROFILE") == "cpu"
    assert environment("worker-gpu").get("SLIPWAY_WORKER_PROFILE") == "gpu"


def test_gpu_worker_requests_an_nvidia_device_and_is_opt_in() -> None:
    gpu = service("worker-gpu")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert gpu.get("profiles") == ["gpu"]
    # Everything else starts with a plain `docker compose up`, on machines without a GPU.
    for name in ALL_SERVICES - {"worker-gpu"}:
        assert not service(name).get("profiles"), name
        assert "deploy" not in service(name), name


@pytest.mark.parametrize("name", ["worker-cpu", "worker-gpu"])
def test_worker_healthcheck_pings_its_own_node(name: str) -> None:
    node = option(argv(service(name)["command"]), "-n", "--hostname") or ""
    prefix = node.split("@", 1)[0]
    test = " ".join(argv(service(name)["healthcheck"]["test"]))
    # `$$` is compose's escape: the container's shell expands $HOSTNAME (= celery's %h).
    assert node == f"{prefix}@%h"
    assert f"celery -A config.celery_app inspect ping -d {prefix}@$$HOSTNAME" in test


def test_web_publishes_8000_waits_for_backing_services_and_checks_healthz() -> None:
    web = service("web")
    assert any(str(port).split(":")[-1] == "8000" for port in web["ports"])
    assert web["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert web["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(argv(web["healthcheck"]["test"]))


def test_backing_services_have_healthchecks_and_volumes() -> None:
    postgres, redis = service("postgres"), service("redis")
    assert str(postgres["image"]).startswith("postgres:16")
    assert "pg_isready" in " ".join(argv(postgres["healthcheck"]["test"]))
    assert str(redis["image"]).startswith("redis:7")
    assert "ping" in argv(redis["healthcheck"]["test"])
    assert postgres["volumes"] and redis["volumes"]


def test_every_service_restarts() -> None:
    for name in ALL_SERVICES:
        assert service(name).get("restart") in {"always", "unless-stopped", "on-failure"}, name


def test_app_services_share_one_named_artifact_volume() -> None:
    sources = set()
    for name in APP_SERVICES:
        mounts = []
        for volume in service(name).get("volumes", []):
            if isinstance(volume, str):
                source, target = volume.split(":")[:2]
            else:
                source, target = volume.get("source"), volume.get("target")
            if target == DATA_DIR:
                mounts.append(source)
        assert len(mounts) == 1, f"{name} must mount one volume at {DATA_DIR}"
        sources.add(mounts[0])
    assert len(sources) == 1
    assert sources <= set(compose().get("volumes") or {}), "artifact volume is not declared"


def test_dockerfiles_referenced_by_compose_exist() -> None:
    referenced = set()
    for name, svc in compose()["services"].items():
        build = svc.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
        dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
        assert context == ROOT, f"{name}: the build context must be the repository root"
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        referenced.add(dockerfile)
    assert referenced == {path.resolve() for path in DOCKERFILES.values()}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_conventions(name: str) -> None:
    lines = dockerfile_logical_lines(DOCKERFILES[name])
    text = "\n".join(lines)
    assert len([line for line in lines if line.startswith("FROM ")]) >= 2, "multi-stage build"
    assert "useradd --uid 10001" in text
    assert lines[[i for i, line in enumerate(lines) if line.startswith("USER ")][-1]] == "USER slipway:slipway"
    for variable in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        assert variable in text
    assert re.search(r"PYTHONPATH=/app:/app/platform\b", text)
    assert "DJANGO_SETTINGS_MODULE=config.settings.prod" in text
    installs = re.findall(r"pip install[^&;]*", text)
    assert installs
    for install in installs:
        assert "--no-cache-dir" in install, install
    assert any(re.search(r'"\.\[s3[\],]|--no-deps "\."', install) for install in installs)
    assert "platform/docker/entrypoint.sh /usr/local/bin/slipway-entrypoint" in text
    assert 'ENTRYPOINT ["/usr/local/bin/slipway-entrypoint"]' in lines


def test_web_dockerfile_builds_the_frontend_when_present_and_collects_static() -> None:
    text = "\n".join(dockerfile_logical_lines(DOCKERFILES["web"]))
    assert re.search(r"if \[ -f package\.json \]; then .*npm ci .*npm run build", text)
    assert re.search(r"COPY --from=frontend \S+/dist \./frontend/dist", text)
    assert "WORKDIR /app" in text
    collect = next(line for line in text.splitlines() if "manage.py collectstatic" in line)
    assert "SLIPWAY_SECRET_KEY=" in collect and "--noinput" in collect
    assert not re.search(r"^ENV .*SLIPWAY_SECRET_KEY", text, re.MULTILINE)


def test_gpu_dockerfile_installs_gpu_runtimes() -> None:
    text = DOCKERFILES["worker-gpu"].read_text()
    assert "onnxruntime-gpu" in text
    assert re.search(r"\btensorrt\b", text)
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in text


def test_entrypoint_is_valid_bash_that_execs_the_command() -> None:
    result = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert 'manage.py" migrate --noinput' in text
    assert text.rstrip().endswith('exec "$@"')


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".git", ".venv", "var", ".env", "**/node_modules", "frontend/dist"):
        assert required in patterns, required
    assert "**/__pycache__" in patterns


def test_cpu_worker_image_has_the_cpu_runtimes() -> None:
    text = (ROOT / "platform/docker/worker-cpu.Dockerfile").read_text()
    assert "ARG SLIPWAY_EXTRAS=s3,runtimes-cpu,sklearn" in text
    assert '--no-deps "pnnx' in text, "pnnx must not pull torch into the image"
    assert "download.pytorch.org/whl/cpu" in text, "torch, when asked for, must be the CPU build"


def test_one_gunicorn_config_for_the_image_compose_and_make_run() -> None:
    """Production (image CMD, compose) and `make run` serve with the same gunicorn settings file."""
    conf = "platform/docker/gunicorn.conf.py"
    assert GUNICORN_CONF.is_file()
    assert option(argv(service("web")["command"]), "-c", "--config") == conf
    cmd = next(line for line in dockerfile_logical_lines(DOCKERFILES["web"]) if line.startswith("CMD "))
    assert f'"--config", "{conf}"' in cmd
    # the worker and thread counts gunicorn.conf.py reads reach the web container
    assert {"WEB_CONCURRENCY", "WEB_THREADS"} <= set(environment("web"))
    embedded = (ROOT / "platform" / "config" / "embedded.py").read_text()
    assert '"platform" / "docker" / "gunicorn.conf.py"' in embedded
    assert "runserver" not in (ROOT / "scripts" / "run.sh").read_text()


def test_gunicorn_answers_its_own_errors_with_the_api_error_body(tmp_path: Path) -> None:
    """A URL or headers over gunicorn's limits never reach Django: gunicorn answers 414/431
    itself, and with gunicorn.conf.py in the same JSON body as every other API error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "platform")]),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "SLIPWAY_DATA_DIR": str(tmp_path),
        "WEB_CONCURRENCY": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def ask(request: bytes) -> tuple[int, dict[str, str], bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        return int(lines[0].split()[1]), headers, body

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                started = server.poll() is None and time.monotonic() < deadline
                assert started, server.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
                time.sleep(0.2)
        long_query = b"GET /api/v1/audit/?action=" + b"x" * 6000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
        huge_header = b"GET /api/v1/audit/ HTTP/1.1\r\nHost: localhost\r\nX-Filler: " + b"y" * 9000 + b"\r\n\r\n"
        garbage = b"NOT HTTP AT ALL\r\n\r\n"
        for request, status, code in (
            (long_query, 414, "uri_too_long"),
            (huge_header, 431, "request_headers_too_large"),
            (garbage, 400, "bad_request"),
        ):
            got, headers, body = ask(request)
            assert got == status and headers["content-type"] == "application/json", (got, headers, body[:200])
            error = json.loads(body)
            assert set(error) == {"code", "message", "fields"} and error["code"] == code
            assert error["message"].endswith(".") and int(headers["content-length"]) == len(body)
    finally:
        server.terminate()
        server.wait(timeout=30)
