"""Fault injection for the reliability tests: private Redis and PostgreSQL servers, a Celery
worker that can be killed like a lost machine, and a gunicorn web server, all as child
processes of the test on free loopback ports.

The shared PostgreSQL (5432) and Redis (6379) are never touched: other suites use them at the
same time. Everything here is started by the test and stopped by it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---- Redis --------------------------------------------------------------------------------


# No RDB snapshots, no append-only file: what is in memory is all there is.
NO_PERSISTENCE = ("--save", "", "--appendonly", "no", "--daemonize", "no")


@dataclass
class RedisServer:
    """A throwaway redis-server without persistence: a restart loses every queued message."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            import pytest

            pytest.skip("redis-server is not installed here")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "no", *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _port_open(self.port), 10, f"redis-server on port {self.port}")
        return self

    def shutdown_nosave(self) -> None:
        """Stop it the way a crash would for its data: nothing is written, every message is lost."""
        import redis

        with contextlib.suppress(redis.exceptions.ConnectionError):
            redis.Redis(port=self.port).shutdown(nosave=True)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


# ---- PostgreSQL ---------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else (shutil.which(name) or "")


def postgres_skip_reason() -> str | None:
    if not _pg_bin("initdb") or not _pg_bin("pg_ctl"):
        return "PostgreSQL's initdb/pg_ctl are not installed here"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to own a throwaway cluster"
    return None


@dataclass
class PostgresCluster:
    """A throwaway cluster (initdb, trust auth) on a free port, socket in its own folder.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.
    """

    root: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=timeout)

    def init(self) -> PostgresCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            # Speed over durability: this cluster lives for one test module.
            conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 60\n")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def create_database(self, name: str) -> None:
        self._run(_pg_bin("createdb"), "-h", str(self.root), "-p", str(self.port), "-U", "postgres", name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# ---- Slipway processes --------------------------------------------------------------------


def manage(env: Mapping[str, str], *args: str, timeout: float = 300) -> str:
    """Run `manage.py <args>` with `env`; its output, or an assertion with the log."""
    run = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0, f"manage.py {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


@dataclass
class Worker:
    """A Celery worker (with embedded beat, so the reconciler runs) in its own session, so a
    SIGKILL to its process group takes the whole worker down at once, as a lost machine would."""

    env: Mapping[str, str]
    name: str
    log_path: Path
    beat: bool = True
    proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> Worker:
        """Start the process; `wait_ready` waits for it to consume."""
        args = [
            sys.executable,
            "manage.py",
            "run_worker",
            "--queues",
            "cpu,default",
            "--",
            "-n",
            f"{self.name}@%h",
            "--concurrency=1",
            "--prefetch-multiplier=1",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
        ]
        if self.beat:
            args += ["-B", "-s", str(self.log_path.with_suffix(".beat-schedule"))]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=dict(self.env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 120) -> Worker:
        proc = self.proc
        assert proc is not None

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited at start:\n{self.log()[-4000:]}")
            return " ready." in self.log()

        wait_until(ready, timeout, f"worker {self.name} to be ready", interval=0.2)
        return self

    def start(self, timeout: float = 120) -> Worker:
        return self.launch().wait_ready(timeout)

    def engine_children(self) -> list[psutil.Process]:
        """The sandbox and benchmark processes this worker is running right now."""
        assert self.proc is not None
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for process in tree:
            with contextlib.suppress(psutil.Error):
                if any(arg.startswith("workers.engine.") for arg in process.cmdline()):
                    found.append(process)
        return found

    def received(self, task_id: str) -> bool:
        """Whether this worker took the message of Celery task `task_id`."""
        return bool(task_id) and f"[{task_id}] received" in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_hard(self) -> None:
        """SIGKILL the worker's process group and every process under it (the pool child and the
        sandbox it runs, which has a session of its own): what an OOM kill of the container does."""
        assert self.proc is not None
        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP the whole worker: it holds its connections but consumes nothing."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)  # a paused worker can't act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill_hard()


@dataclass
class WorkerPool:
    """Workers on the same queues, replaced as they are killed: a takeover is measured without
    waiting for a new worker to boot (the replacement starts while the survivor takes over)."""

    env: Mapping[str, str]
    log_dir: Path
    prefix: str
    workers: list[Worker] = field(default_factory=list)
    started: int = 0

    def launch(self) -> Worker:
        self.started += 1
        name = f"{self.prefix}{self.started}"
        worker = Worker(self.env, name, self.log_dir / f"{name}.log").launch()
        self.workers.append(worker)
        return worker

    def ensure(self, count: int) -> list[Worker]:
        """At least `count` live workers, all ready."""
        self.workers = [w for w in self.workers if w.alive()]
        while len(self.workers) < count:
            self.launch()
        for worker in self.workers:
            worker.wait_ready()
        return self.workers

    def holder(self, task_id: str) -> Worker:
        """The live worker that took task `task_id`."""
        found = wait_until(
            lambda: next((w for w in self.workers if w.alive() and w.received(task_id)), None),
            10,
            f"the worker holding task {task_id}",
        )
        return found

    def logs(self) -> str:
        return "\n".join(f"==== {w.name}\n{w.log()[-3000:]}" for w in self.workers)

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


GUNICORN_OPTIONS = ("--workers", "1", "--threads", "4", "--timeout", "120")


@dataclass
class WebServer:
    """gunicorn serving Slipway with `env`, as in production (threads, persistent DB connections)."""

    env: Mapping[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{self.port}", *GUNICORN_OPTIONS],
            cwd=REPO,
            env=dict(self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited at start:\n{self.log_path.read_text()[-3000:]}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503)
            except requests.RequestException:
                return False

        wait_until(up, 60, "gunicorn to answer", interval=0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Api:
    """The REST API over HTTP with a bearer token."""

    base: str
    token: str

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, timeout: float = 15) -> requests.Response:
        return requests.get(f"{self.base}{path}", headers=self._headers(), timeout=timeout)

    def post(self, path: str, body: dict[str, Any] | None = None, timeout: float = 15) -> requests.Response:
        return requests.post(f"{self.base}{path}", headers=self._headers(), json=body, timeout=timeout)

    def upload(self, slug: str, path: Path, timeout: float = 60, **fields: str) -> requests.Response:
        with open(path, "rb") as fh:
            return requests.post(
                f"{self.base}/api/v1/models/{slug}/versions/",
                headers=self._headers(),
                files={"file": (path.name, fh)},
                data={"team": "vision", **fields},
                timeout=timeout,
            )

    def version(self, version_id: int) -> dict[str, Any]:
        response = self.get(f"/api/v1/versions/{version_id}/")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def finished(self, version_id: int, timeout: float = 180) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            body = self.version(version_id)
            return body if body["status"] in ("ready", "failed") else None

        return dict(wait_until(done, timeout, f"version {version_id} to finish its pipeline", interval=0.5))


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at `path` (needs CAP_SYS_ADMIN); skips the test with the reason when mounting
    is not permitted."""
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to fill the artifact storage: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ---- models and figures -------------------------------------------------------------------


def make_hanging_onnx(path: Path) -> Path:
    """A valid model that never finishes running: a Loop with 2**62 iterations of x + 1.

    Checking, shape inference and graph optimization don't execute it, so inspect, validate and
    optimize pass; the first step that runs it in onnxruntime (the parity reference) hangs.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.modelzoo import _finish

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["x_in", "one"], ["x_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [1, 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1, 4]),
        ],
        initializer=[numpy_helper.from_array(np.ones((1, 4), np.float32), "one")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trip", "keep_going", "x"], ["y"], body=body)],
        "hang",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[
            numpy_helper.from_array(np.array(2**62, np.int64), "trip"),
            numpy_helper.from_array(np.array(True), "keep_going"),
        ],
    )
    model = _finish(graph)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_weighty_onnx(path: Path, megabytes: float, seed: int) -> Path:
    """A MatMul model whose random weights take about `megabytes` MB (distinct per seed)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.modelzoo import _finish

    columns = max(1, int(megabytes * 2**20 / 4 / 256))
    weight = np.random.default_rng(seed).standard_normal((256, columns)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "weighty",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", columns])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(_finish(graph), str(path))
    return path


# A one-backend FP32 profile: the fault tests exercise the pipeline's machinery, and with it a
# pipeline takes seconds (x86-cpu's INT8 and OpenVINO builds take tens of seconds here).
FAST_PROFILE = {
    "slug": "faults-ort",
    "name": "ONNX Runtime FP32 (fault tests)",
    "device_kind": "cpu",
    "backends": ["onnxruntime"],
    "precisions": ["fp32"],
    "queue": "cpu",
    "options": {
        "batch_sizes": [1],
        "concurrency": [1],
        "max_seconds_per_point": 0.3,
        "warmup_runs": 2,
        "window_runs": 10,
        "max_windows": 3,
        "max_abs_error": 1e-3,
        "min_cosine": 0.99,
    },
}


def record(figure: dict[str, Any]) -> None:
    """Print a measured figure and, with $SLIPWAY_FAULTS_REPORT set, append it there (JSON lines)
    for docs/reliability/faults.md."""
    import json

    line = json.dumps(figure, default=str, sort_keys=True)
    print(f"FAULT-FIGURE {line}")
    target = os.environ.get("SLIPWAY_FAULTS_REPORT")
    if target:
        with open(target, "a") as fh:
            fh.write(line + "\n")
