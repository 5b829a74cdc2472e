"""The agent's life: register, then beat and lease, run each order, post its result.

Network loss and server restarts are waited out with backoff (a lease the device held while
it was away is taken back by the server and re-leased, to this or another machine). A result
post is retried while the network is down; a 409 means the lease was lost and the result is
dropped. Nothing here imports Django or Celery.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from slipway_agent import __version__

logger = logging.getLogger("slipway_agent")

API = "/api/v1"
BEAT_SECONDS = 10.0  # progress posts while a step runs: the lease's heartbeat
IDLE_BEAT_SECONDS = 30.0
LEASE_WAIT_SECONDS = 20.0
RESULT_RETRY_SECONDS = 900.0
MAX_BACKOFF_SECONDS = 30.0


class Stopped(Exception):
    """The agent was told to stop (SIGTERM, SIGINT) while it waited for the server."""


class Refused(Exception):
    """The server refused the call for good (401: the credential; 4xx: the request): its sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class LeaseLost(Refused):
    """409: this device no longer holds the job at that attempt."""


def _refusal(response: requests.Response) -> Refused:
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = str(body.get("code") or response.status_code)
    message = str(body.get("message") or response.text[:300] or response.reason)
    if response.status_code == 409:
        return LeaseLost(409, code, message)
    return Refused(response.status_code, code, message)


def _transient(response: requests.Response) -> bool:
    return response.status_code in (429, 502, 503, 504) or response.status_code >= 500


class Api:
    """The server's agent endpoints, with the device credential."""

    def __init__(
        self, server: str, credential: str = "", timeout: float = 60.0, stop: threading.Event | None = None
    ) -> None:
        self.server = server.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        # Set when the agent is told to stop: a retry that waits for the server gives up at once.
        self.stop = stop or threading.Event()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"slipway-agent/{__version__}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Device {self.credential}"} if self.credential else {}

    def call(self, method: str, path: str, *, retry_for: float | None = None, **kwargs: Any) -> requests.Response:
        """One call; while the server can't be reached or answers 5xx/429, retried with backoff
        for `retry_for` seconds (None: forever). 4xx answers raise `Refused` (409: `LeaseLost`)."""
        deadline = None if retry_for is None else time.monotonic() + retry_for
        delay = 1.0
        while True:
            try:
                response = self.session.request(
                    method, f"{self.server}{API}{path}", headers=self._headers(), timeout=self.timeout, **kwargs
                )
                if not _transient(response):
                    if response.status_code >= 400:
                        raise _refusal(response)
                    return response
                problem = f"the server answered {response.status_code}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"the server can't be reached ({type(exc).__name__})"
            if deadline is not None and time.monotonic() + delay > deadline:
                raise ConnectionError(f"{method} {path}: {problem}, for {retry_for:.0f} s; giving up.")
            logger.warning("%s %s: %s; retrying in %.0f s", method, path, problem, delay)
            if self.stop.wait(delay):
                raise Stopped(f"{method} {path}: stopped while {problem}")
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


# ---- the device's state on disk ------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """Where the agent keeps its credential (mode 0600) and its server's address."""

    folder: Path

    @property
    def credential_file(self) -> Path:
        return self.folder / "credential"

    @property
    def config_file(self) -> Path:
        return self.folder / "agent.json"

    def save(self, server: str, device: dict[str, Any], credential: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.save_credential(credential)
        config = {"server": server, "device": {k: device.get(k) for k in ("id", "name", "team")}}
        self.config_file.write_text(json.dumps(config, indent=2))

    def save_credential(self, credential: str) -> None:
        """Replace the credential atomically, readable by this user only."""
        partial = self.credential_file.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(credential)
        os.replace(partial, self.credential_file)

    def credential_age_days(self) -> float:
        return (time.time() - self.credential_file.stat().st_mtime) / 86400

    def load(self) -> tuple[str, str]:
        """(server, credential); FileNotFoundError with a sentence when not registered."""
        if not self.credential_file.exists() or not self.config_file.exists():
            raise FileNotFoundError(
                f"This machine is not registered (nothing in {self.folder}). Run `python -m slipway_agent register "
                "--server URL --token sle_...` with an enrollment token from the Workers page."
            )
        mode = self.credential_file.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(
                f"{self.credential_file} is readable by others (mode {mode:o}); `chmod 600` it, or register again."
            )
        server = json.loads(self.config_file.read_text())["server"]
        return server, self.credential_file.read_text().strip()


# ---- what the machine is ---------------------------------------------------------------------


def probe() -> dict[str, Any]:
    from workers.engine.hardware import describe_hardware

    return describe_hardware().to_dict()


def runtimes() -> dict[str, str | None]:
    """Each backend's runtime version here (None: not installed). Some runtimes print on import
    (MNN lists the CPU's features): that goes to stderr, so stdout stays the agent's own."""
    from workers.engine.backends.registry import installed_backends
    from workers.engine.child import stdout_to_stderr

    with stdout_to_stderr():
        return installed_backends()


def register(server: str, token: str, name: str, state: State) -> dict[str, Any]:
    """Register with a one-time enrollment token; keeps the credential in `state`."""
    api = Api(server)
    body = {"token": token, "name": name, "hardware": probe(), "runtimes": runtimes(), "agent_version": __version__}
    answer = api.call("POST", "/agent/register/", json=body, retry_for=120).json()
    state.save(server, answer["device"], answer["credential"])
    return dict(answer["device"])


# ---- running orders ----------------------------------------------------------------------------


class LeaseBeat:
    """Posts the lease's progress every BEAT_SECONDS (its heartbeat) and when it moves; notices
    when the lease was lost."""

    def __init__(self, api: Api, job: int, attempt: int) -> None:
        self.api, self.job, self.attempt = api, job, attempt
        self.fraction, self.message = 0.0, "started"
        self.lost = ""
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lease-{job}")

    def __enter__(self) -> LeaseBeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout=30)

    def update(self, fraction: float, message: str) -> None:
        self.fraction, self.message = min(1.0, max(0.0, float(fraction))), str(message)[:200]
        self._changed.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._post()
            self._changed.wait(BEAT_SECONDS)
            self._changed.clear()
            time.sleep(1.0)  # at most one progress post a second

    def _post(self) -> None:
        if self.lost:
            return
        body = {"attempt": self.attempt, "progress": self.fraction, "message": self.message}
        try:
            self.api.call("POST", f"/agent/jobs/{self.job}/progress/", json=body, retry_for=BEAT_SECONDS)
        except LeaseLost as exc:
            self.lost = exc.message
            logger.warning("job %s: lease lost: %s", self.job, exc.message)
        except (Refused, ConnectionError) as exc:
            logger.warning("job %s: progress not recorded: %s", self.job, exc)
        except Stopped:
            return


def fetcher(api: Api, job: int, attempt: int) -> Callable[[Any, Path], Path]:
    """The order's `Fetch`: download an artifact of the lease and check its sha256."""
    from workers.engine.work import verify

    def fetch(ref: Any, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        path = f"/agent/jobs/{job}/artifacts/{ref.id}/"
        response = api.call("GET", path, params={"attempt": attempt}, stream=True, retry_for=300)
        with dest.open("wb") as handle:
            for block in response.iter_content(1 << 20):
                handle.write(block)
        return verify(ref, dest)

    return fetch


def run_order(api: Api, order_data: dict[str, Any], work_root: Path) -> None:
    """Run one leased order and post what it produced (its report, or why it could not run)."""
    from workers.engine import isolation, work
    from workers.engine.errors import ModelError
    from workers.engine.sandbox import SandboxError
    from workers.engine.typed import from_dict

    order = from_dict(work.WorkOrder, order_data)
    logger.info("job %s: %s for %s (attempt %s)", order.job, order.kind, order.profile, order.attempt)
    workdir = work_root / f"job-{order.job}-attempt-{order.attempt}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    body: dict[str, Any] = {"attempt": order.attempt}
    try:
        with LeaseBeat(api, order.job, order.attempt) as beat:
            try:
                done = work.run_order(order, fetcher(api, order.job, order.attempt), workdir, beat.update)
                body["result"] = {**done.result, "sandbox": isolation.describe().to_dict()}
                body["log"] = done.log[-20000:]
            except Stopped:
                raise  # told to stop: the lease is left to expire, and another machine takes it
            except (ModelError, SandboxError) as exc:
                body["error"] = {"code": exc.code, "message": exc.message}
                body["log"] = str(getattr(exc, "log", ""))[-20000:]
            except Exception as exc:
                body["error"] = {
                    "code": "agent_error",
                    "message": f"The agent hit an internal error ({type(exc).__name__}: {exc}); the log has details.",
                }
                body["log"] = traceback.format_exc()[-20000:]
        if beat.lost:
            logger.warning("job %s: not posting a result for a lost lease", order.job)
            return
        try:
            answer = api.call(
                "POST", f"/agent/jobs/{order.job}/result/", json=body, retry_for=RESULT_RETRY_SECONDS
            ).json()
            logger.info("job %s: recorded, now %s", order.job, answer.get("status"))
        except LeaseLost as exc:
            logger.warning("job %s: result refused: %s", order.job, exc.message)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


ROTATE_AFTER_DAYS = 30.0


def rotate(state: State) -> None:
    """Replace the device credential with a new one. Should the answer be lost, the old one
    still works for an hour on the server, so the next start rotates again."""
    server, credential = state.load()
    answer = Api(server, credential).call("POST", "/agent/rotate/", retry_for=120).json()
    state.save_credential(answer["credential"])
    logger.info("rotated the device credential")


def serve(
    state: State, *, once: bool = False, kinds: list[str] | None = None, stop: threading.Event | None = None
) -> int:
    """Lease and run orders until `stop` is set (or after one order with `once`). Returns the
    number run. Stopping while the server can't be reached ends the wait at once."""
    state.load()
    if state.credential_age_days() > ROTATE_AFTER_DAYS:
        rotate(state)
    server, credential = state.load()
    stop = stop or threading.Event()
    api = Api(server, credential, stop=stop)
    work_root = state.folder / "work"
    ran = 0
    last_beat = 0.0
    try:
        while not stop.is_set():
            if time.monotonic() - last_beat > IDLE_BEAT_SECONDS:
                api.call("POST", "/agent/beat/", json={"hardware": probe(), "agent_version": __version__})
                last_beat = time.monotonic()
            response = api.call("POST", "/agent/lease/", json={"kinds": kinds or [], "wait": LEASE_WAIT_SECONDS})
            if response.status_code == 204:
                # Nothing to do. Retry-After: the server had no slot to wait in; ask again later.
                stop.wait(min(60.0, float(response.headers.get("Retry-After") or 0)))
                continue
            run_order(api, response.json()["order"], work_root)
            ran += 1
            if once:
                break
    except Stopped as exc:
        logger.info("stopping: %s", exc)
    return ran
