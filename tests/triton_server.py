"""Start a real Triton Inference Server for tests, on a free loopback port, and stop it cleanly.

The server is the `tritonserver` binary that the `nvidia-pytriton` wheel ships (CPU-only,
python backend only), or the one named by $SLIPWAY_TRITONSERVER, or one on PATH (an NVIDIA
image, with its backends in /opt/tritonserver/backends). It runs with
`--model-control-mode=explicit` on a given model repository, HTTP only, bound to
127.0.0.1; gRPC, SageMaker and Vertex AI endpoints are off, and so is the metrics endpoint
unless asked for (`metrics=True`: Prometheus text on a second free loopback port,
`server.metrics_url`), so by default only one port is needed.

The wheel's python backend needs its stub, built for this interpreter's Python version, in
`<backend dir>/python/`; the launcher assembles such a backend directory in the caller's
temp dir (nothing is written into site-packages), and gives every server its own
shared-memory prefix, so servers started by tests running side by side never share
/dev/shm regions.

    server = start_triton_server(repository, work_dir)   # ready when it returns
    ... server.url ...
    server.stop()

`triton_skip_reason()` says why no server can start here (None when one can); fixtures
turn it into `pytest.skip`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class TritonInstall:
    """Where a tritonserver binary and what it needs are."""

    binary: Path
    backends: Path | None  # a ready backend directory (NVIDIA image); None: assemble one from the wheel
    libraries: Path | None  # shared libraries the wheel's stub links against
    stub: Path | None  # the wheel's python-backend stub for this Python


def find_triton() -> TritonInstall | None:
    """The tritonserver to use here, or None."""
    named = os.environ.get("SLIPWAY_TRITONSERVER")
    if named:
        binary = Path(named)
        backends = binary.parent.parent / "backends"
        return TritonInstall(binary, backends if backends.is_dir() else None, None, None)
    wheel = _pytriton_dir()
    if wheel is not None:
        stub = wheel / "tritonserver" / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}"
        return TritonInstall(
            binary=wheel / "tritonserver" / "bin" / "tritonserver",
            backends=None,
            libraries=wheel.parent / "nvidia_pytriton.libs",
            stub=stub / "triton_python_backend_stub",
        )
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(Path(on_path), Path("/opt/tritonserver/backends"), None, None)
    return None


def _pytriton_dir() -> Path | None:
    # Found without importing pytriton: its __init__ pulls in much more than the binary.
    for entry in sys.path:
        candidate = Path(entry) / "pytriton"
        if (candidate / "tritonserver" / "bin" / "tritonserver").is_file():
            return candidate
    return None


def triton_skip_reason() -> str | None:
    """Why no Triton server can be started here, or None when one can."""
    install = find_triton()
    if install is None:
        return (
            "No tritonserver binary: install nvidia-pytriton (pip install --no-deps nvidia-pytriton), set "
            "SLIPWAY_TRITONSERVER, or put tritonserver on PATH."
        )
    if not os.access(install.binary, os.X_OK):
        return f"{install.binary} is not executable."
    if install.stub is not None and not install.stub.is_file():
        return f"nvidia-pytriton ships no python-backend stub for Python {sys.version_info[0]}.{sys.version_info[1]}."
    try:
        import tritonclient.http  # noqa: F401
    except ImportError:
        return "tritonclient is not installed (pip install 'tritonclient[http]')."
    return None


@dataclass
class TritonServer:
    """A running tritonserver process started by `start_triton_server`."""

    process: subprocess.Popen[bytes]
    url: str
    http_port: int
    repository: Path
    log_path: Path
    args: tuple[str, ...] = field(default=())
    metrics_url: str = ""  # http://127.0.0.1:<port>/metrics when started with metrics=True

    def logs(self, tail_chars: int | None = None) -> str:
        """The server's output so far (the last `tail_chars` characters)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail_chars:] if tail_chars else text

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM (Triton unloads its models and stops its stubs), then SIGKILL the process
        group after `timeout`; returns the exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                # The group is the server and its python stubs, all started here.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare_backends(install: TritonInstall, work_dir: Path) -> Path:
    """A backend directory whose python backend has the stub for this Python."""
    if install.backends is not None:
        return install.backends
    assert install.stub is not None
    source = install.binary.parent.parent / "backends"
    target = work_dir / "backends"
    if not (target / "python" / "triton_python_backend_stub").is_file():
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(install.stub, target / "python" / "triton_python_backend_stub")
    return target


def start_triton_server(
    repository: Path,
    work_dir: Path,
    *,
    extra_args: Sequence[str] = (),
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    attempts: int = 3,
    metrics: bool = False,
) -> TritonServer:
    """Start tritonserver on `repository` and return once /v2/health/ready answers 200.

    `work_dir` (a temp dir of the caller's) receives the backend directory and the log.
    With `metrics` the Prometheus metrics endpoint serves on another free loopback port
    (`server.metrics_url`), its counters refreshed every 100 ms rather than every 2 s.
    A port taken between choosing and binding it makes the start fail; it is retried on a
    new port up to `attempts` times. Raises RuntimeError with the log's tail when the
    server exits or is not ready within `ready_timeout`.
    """
    install = find_triton()
    if install is None:
        raise RuntimeError(triton_skip_reason() or "no tritonserver")
    work_dir.mkdir(parents=True, exist_ok=True)
    backends = prepare_backends(install, work_dir)
    env = dict(os.environ)
    if install.libraries is not None:
        # The stub is copied out of the wheel, so its $ORIGIN-relative library path no longer points there.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(install.libraries), env.get("LD_LIBRARY_PATH")]))
    last_error = ""
    for attempt in range(attempts):
        port = free_port()
        metrics_port = free_port() if metrics else 0
        log_path = work_dir / f"tritonserver-{port}.log"
        metrics_args = (
            ("--allow-metrics=true", "--allow-gpu-metrics=false", "--allow-cpu-metrics=false",
             "--metrics-address=127.0.0.1", f"--metrics-port={metrics_port}", "--metrics-interval-ms=100")
            if metrics
            else ("--allow-metrics=false",)
        )  # fmt: skip
        args = (
            str(install.binary),
            f"--model-repository={repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={backends}",
            "--http-address=127.0.0.1",
            f"--http-port={port}",
            "--allow-grpc=false",
            *metrics_args,
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
            "--exit-timeout-secs=5",
            f"--backend-config=python,shm-region-prefix-name=slipway_{os.getpid()}_{uuid.uuid4().hex[:8]}_",
            *extra_args,
        )
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=work_dir,
                start_new_session=True,  # its own process group, so stop() can reach the stubs too
                preexec_fn=_die_with_parent,
            )
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics else ""
        server = TritonServer(process, f"http://127.0.0.1:{port}", port, repository, log_path, args, metrics_url)
        if _wait_ready(server, ready_timeout):
            return server
        server.stop(timeout=5)
        last_error = server.logs(tail_chars=3000)
        if "address already in use" not in last_error.lower() or attempt == attempts - 1:
            break
    raise RuntimeError(f"tritonserver did not become ready; the end of its log:\n{last_error}")


@contextlib.contextmanager
def running_triton_server(repository: Path, work_dir: Path, **options: object) -> Iterator[TritonServer]:
    """`start_triton_server` as a context manager that always stops the server."""
    server = start_triton_server(repository, work_dir, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def _wait_ready(server: TritonServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            return False
        try:
            with urllib.request.urlopen(f"{server.url}/v2/health/ready", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so no server outlives a killed run."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        pr_set_pdeathsig = 1
        ctypes.CDLL(libc_name, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
