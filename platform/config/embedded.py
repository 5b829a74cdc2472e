"""`make run`: the embedded default's two processes, supervised.

scripts/run.sh prepares (browser app, migrations, static files, the first login), then runs
`python -m config.embedded`, which

  * serves the app with gunicorn and platform/docker/gunicorn.conf.py, as the production
    image does, sized for a laptop (WEB_CONCURRENCY=2 processes x WEB_THREADS=8 threads);
  * runs one Celery worker (with beat, for the reconciler) that writes its log to
    <data folder>/worker.log, and starts it again whenever it dies, waiting longer after each
    quick death (1 s, 2 s, 4 s ... at most 60 s), with a line on the terminal and in that log;
  * stops both on Ctrl-C or SIGTERM, the worker warm first (running steps get a grace period;
    a step cut short is re-run by the reconciler).

Both processes keep their files under the data folder (config/runtime_files.py). Only the standard
library and config.runtime_files are imported: Django is loaded by the children, not here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from config.runtime_files import confined_environment

REPO_DIR = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO_DIR / "platform" / "docker" / "gunicorn.conf.py"
# Laptop sizes for the web server (production's defaults are 3 x 8); the environment wins.
LAPTOP_WEB_SIZES = {"WEB_CONCURRENCY": "2", "WEB_THREADS": "8"}
# How long a stopping worker may finish its running steps before it is killed.
WORKER_STOP_GRACE_SECONDS = 15.0


def say(message: str, *also: IO[str]) -> None:
    """One timestamped line on the terminal (and in each file given)."""
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} [make run] {message}\n"
    for stream in (sys.stdout, *also):
        stream.write(line)
        stream.flush()


@dataclass(frozen=True)
class Backoff:
    """How long to wait before restart n (0-based) of a process that keeps dying."""

    first_seconds: float = 1.0
    factor: float = 2.0
    max_seconds: float = 60.0
    # A process that ran at least this long before it died counts as healthy: the next wait
    # starts again from first_seconds.
    healthy_after_seconds: float = 60.0

    def delay(self, quick_deaths: int) -> float:
        return min(self.max_seconds, self.first_seconds * self.factor**quick_deaths)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class SupervisedProcess:
    """A child process that is started again, after a backoff, whenever it dies.

    It runs in a process group of its own, so that after it dies whatever it left behind (a
    Celery pool process, the embedded beat) is killed with the group before the next start.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        backoff: Backoff = Backoff(),  # frozen: one shared default is safe
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.backoff, self.clock = backoff, clock
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.quick_deaths = 0
        self.restart_due: float | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, process_group=0
            )
        self.started_at = self.clock()
        with open(self.log_path, "a") as log:
            say(f"{self.name} started (pid {self.process.pid}); its log: {self.log_path}", log)

    def check(self) -> None:
        """Notice a death (and schedule the restart), or start again once the wait is over."""
        if self.restart_due is not None:
            if self.clock() >= self.restart_due:
                self.restart_due = None
                self.restarts += 1
                self.start()
            return
        if self.process is None or self.process.poll() is None:
            return
        ran = self.clock() - self.started_at
        if ran >= self.backoff.healthy_after_seconds:
            self.quick_deaths = 0
        wait = self.backoff.delay(self.quick_deaths)
        self.quick_deaths += 1
        self._kill_leftovers()
        with open(self.log_path, "a") as log:
            say(
                f"{self.name} (pid {self.process.pid}) {describe_exit(self.process.returncode)} after {ran:.0f} s; "
                f"starting it again in {wait:g} s (restart {self.restarts + 1}). Its log: {self.log_path}",
                log,
            )
        self.restart_due = self.clock() + wait

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL for the whole group after the grace period."""
        self.restart_due = None
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within {grace_seconds:.0f} s; killing it")
        self._kill_leftovers()
        self.process.wait()

    def _kill_leftovers(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left in the group
            os.killpg(self.process.pid, signal.SIGKILL)


def child_environment(data_dir: Path) -> dict[str, str]:
    """The environment both processes run with: the embedded settings, the repository on the
    import path, the laptop web sizes unless set, and every folder under the data folder."""
    paths = [str(REPO_DIR), str(REPO_DIR / "platform"), os.environ.get("PYTHONPATH", "")]
    env = {**LAPTOP_WEB_SIZES, **os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        SLIPWAY_DATA_DIR=str(data_dir),
        PYTHONPATH=os.pathsep.join(p for p in paths if p),
        PYTHONUNBUFFERED="1",
    )
    env.update(confined_environment(data_dir))
    return env


def web_argv(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "--bind", f"{host}:{port}",
        "config.wsgi:application",
    ]  # fmt: skip


def worker_argv(data_dir: Path) -> list[str]:
    # run_worker takes the queues of the hardware profiles this machine meets (x86-cpu's on an
    # x86_64 machine, arm-cpu-mnn's on an aarch64 one, the GPU profile's where nvidia-smi shows
    # a GPU) and an import queue for each framework installed here (PyTorch, TensorFlow, ...);
    # -B runs beat in the worker, for the reconciler that re-queues the steps of a dead worker.
    return [
        sys.executable, str(REPO_DIR / "manage.py"), "run_worker", "--",
        "-B", "--concurrency=2", "--loglevel=INFO", "--pidfile=", f"--schedule={data_dir / 'celerybeat-schedule'}",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", type=Path, required=True)
    options = parser.parse_args(argv)
    data_dir = options.data_dir.resolve()
    env = child_environment(data_dir)
    os.environ.update(env)  # this process's own temporary files too

    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    worker = SupervisedProcess("worker", worker_argv(data_dir), env, data_dir / "worker.log")
    worker.start()
    web = subprocess.Popen(web_argv(options.host, options.port), env=env, stdin=subprocess.DEVNULL)
    say(f"web server (gunicorn, pid {web.pid}) on http://{options.host}:{options.port}/")
    status = 0
    while not stopping:
        if web.poll() is not None:
            say(f"the web server {describe_exit(web.returncode)}; stopping the worker too")
            status = 1
            break
        worker.check()
        time.sleep(0.5)

    say("stopping: web server and worker")
    if web.poll() is None:
        web.send_signal(signal.SIGTERM)
    worker.stop(WORKER_STOP_GRACE_SECONDS)
    try:
        web.wait(timeout=40)
    except subprocess.TimeoutExpired:
        web.kill()
        web.wait()
    return status


if __name__ == "__main__":
    sys.exit(main())
