"""`make run`'s supervisor (platform/config/embedded.py): a worker that dies is started again
after a growing wait, with a line on the terminal and in its log each time; both processes get
the production web server's settings file and folders under the data folder."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from config.embedded import GUNICORN_CONF, Backoff, SupervisedProcess, child_environment, web_argv, worker_argv


def test_backoff_grows_and_is_capped():
    backoff = Backoff(first_seconds=1, factor=2, max_seconds=60)
    assert [backoff.delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def _supervise_until(supervised: SupervisedProcess, predicate, what: str, timeout: float = 20.0):
    """Run the supervisor's loop (check, sleep) until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervised.check()
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_process_is_started_again_after_the_backoff_with_a_line_each_time(tmp_path, capsys):
    log = tmp_path / "worker.log"
    sleeper = [sys.executable, "-c", "import time; print('working', flush=True); time.sleep(60)"]
    supervised = SupervisedProcess(
        "worker", sleeper, dict(os.environ), log, Backoff(first_seconds=0.2, factor=2, healthy_after_seconds=30)
    )
    supervised.start()
    try:
        pids = [supervised.process.pid]
        for restart in (1, 2):
            _supervise_until(supervised, lambda r=restart: log.read_text().count("working") == r, "it to run")
            os.kill(pids[-1], signal.SIGKILL)
            _supervise_until(supervised, lambda r=restart: supervised.restarts == r, f"restart {restart}")
            pids.append(supervised.process.pid)
        assert len(set(pids)) == 3 and supervised.process.poll() is None
        terminal = capsys.readouterr().out
        assert f"worker (pid {pids[0]}) killed by SIGKILL" in terminal
        # quick deaths wait longer each time
        assert "starting it again in 0.2 s (restart 1)" in terminal
        assert "starting it again in 0.4 s (restart 2)" in terminal
        assert f"worker started (pid {pids[2]})" in terminal
        # the same lines, and the process's own output, are in its log file
        _supervise_until(supervised, lambda: log.read_text().count("working") == 3, "the output of all three")
        assert f"worker (pid {pids[1]}) killed by SIGKILL" in log.read_text()
    finally:
        supervised.stop(grace_seconds=5)
    assert supervised.process.poll() is not None


def test_both_processes_run_confined_with_the_shared_gunicorn_config(tmp_path, monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    env = child_environment(tmp_path)
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.dev" and env["SLIPWAY_DATA_DIR"] == str(tmp_path)
    assert env["HOME"] == str(tmp_path / "home") and env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["WEB_CONCURRENCY"] == "2" and env["ORT_DISABLE_TELEMETRY"] == "1"
    web = web_argv("127.0.0.1", 8123)
    assert web[1:3] == ["-m", "gunicorn"] and web[web.index("--config") + 1] == str(GUNICORN_CONF)
    assert Path(GUNICORN_CONF).is_file() and "127.0.0.1:8123" in web
    assert "run_worker" in worker_argv(tmp_path) and "-B" in worker_argv(tmp_path)
    assert not any(arg.startswith("--logfile") for arg in worker_argv(tmp_path))  # its output goes to the file
