"""Supervise a child Python process that does risky engine work: its own process group with
resource limits, a JSON payload on stdin, JSON-line messages on stdout, a bounded log of
everything else, and a kill of the whole group at the deadline or when the caller is
interrupted. The sandbox and the benchmark harness both run their children through it, and
their children start with the child-side helpers at the end of this module."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from workers.engine.isolation import (
    SandboxView,
    Wrapped,
    child_environment,
    prepare_view,
    private_folders,
    process_limit,
    wrap,
)

LOG_TAIL_LINES = 200


@dataclass(frozen=True)
class ChildOutcome:
    returncode: int
    timed_out: bool
    log: str  # the last LOG_TAIL_LINES lines of stderr and of non-JSON stdout


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and everything it started, then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _limits(memory_bytes: int | None, cores: Sequence[int] | None, processes: int | None) -> Callable[[], None]:
    def apply() -> None:
        import resource

        os.setsid()
        if cores:
            os.sched_setaffinity(0, cores)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        if processes:
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))

    return apply


def run_child(
    args: Sequence[str],
    payload: dict[str, Any],
    *,
    env: dict[str, str],
    cwd: str,
    timeout: float,
    on_message: Callable[[dict[str, Any]], None],
    memory_bytes: int | None = None,
    cores: Sequence[int] | None = None,
    on_start: Callable[[int], None] | None = None,
    view: SandboxView | None = None,
) -> ChildOutcome:
    """Run `python <args>` under supervision; `on_message` gets every JSON line it prints.

    `view` puts the child inside the isolation boundary (workers/engine/isolation.py), seeing
    only those host folders, with an environment reduced to `env`'s PYTHONPATH and the
    allow-listed runtime settings; `cwd` must be one of its writable folders. `on_start(pid)`
    runs once the child exists (e.g. to sample its memory). Exceptions in the caller's thread
    (a worker's time limit, say) kill the child group before they propagate.
    """
    processes = None
    wrapped = Wrapped([sys.executable, *args], (), None, [])
    if view is not None:
        env = child_environment(env, private_folders(cwd, env))
        processes = process_limit()
        prepare_view(view)
        wrapped = wrap(wrapped.argv, view, cwd, env.get("PYTHONPATH", ""))
    try:
        proc = subprocess.Popen(
            wrapped.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            preexec_fn=_limits(memory_bytes, cores, processes),
            close_fds=True,
            pass_fds=wrapped.pass_fds,
        )
    finally:
        wrapped.started()
    log_tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    timed_out = threading.Event()

    def drain_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            log_tail.append(raw.decode("utf-8", "replace").rstrip())

    def kill_on_deadline() -> None:
        if proc.poll() is None:
            timed_out.set()
            kill_group(proc)

    stderr_thread = threading.Thread(target=drain_stderr, daemon=True)
    stderr_thread.start()
    timer = threading.Timer(timeout, kill_on_deadline)
    timer.daemon = True
    timer.start()
    try:
        if on_start is not None:
            on_start(wrapped.child_pid(proc.pid))
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(payload).encode())
        proc.stdin.close()
        for raw in proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                log_tail.append(raw.decode("utf-8", "replace").rstrip())
                continue
            if isinstance(message, dict):
                on_message(message)
        returncode = proc.wait()
        if view is not None and wrapped.pass_fds and 128 < returncode < 128 + 65:
            returncode = 128 - returncode  # bwrap exits 128+N when its child dies of signal N
    except BaseException:
        kill_group(proc)
        raise
    finally:
        timer.cancel()
        stderr_thread.join(timeout=5)
    return ChildOutcome(returncode=returncode, timed_out=timed_out.is_set(), log="\n".join(log_tail))


# ---- child side --------------------------------------------------------------------------


class NetworkForbidden(OSError):
    """Raised in an engine child when code tries to open a network connection."""


def forbid_network() -> None:
    """No engine child needs the network, and a model file must not be able to phone home or
    download code: connections and name lookups fail inside the child. (Native code could
    still open sockets; production workers add a network policy for that.)"""
    import socket

    def refuse(*args: object, **kwargs: object) -> Any:
        raise NetworkForbidden("network access is disabled inside Slipway's sandbox")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.getaddrinfo = refuse
    socket.create_connection = refuse
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ[name] = "http://127.0.0.1:9"  # the discard port: nothing answers


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[Any]:
    """Send everything written to stdout (by Python or by native libraries, MNN listing the
    CPU's features at import) to stderr, and yield a stream on the real stdout, so that a
    program's own output (JSON) is the only thing there. What C code printed and still holds in
    its buffer is flushed to stderr before stdout is put back."""
    import ctypes

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(saved, "w")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield real
    finally:
        sys.stdout.flush()
        ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        real.close()


def open_channel() -> Callable[[dict[str, Any]], None]:
    """Move the JSON-lines protocol to a private descriptor and return its `send`: whatever
    Python code or native libraries print to stdout from now on goes to stderr, which the
    parent keeps as the log."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message, default=str) + "\n")
        channel.flush()

    return send
