"""Fixtures for the CLI tests: a fake API server, and the CLI run in-process against it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slipway_cli.main import main
from tests.cli.fake_api import FakeApi

DATA = Path(__file__).parent / "data"
TOKEN = "slw_0123456789ab_s3cr3t-t0ken-value-never-printed"


@dataclass
class Result:
    code: int
    out: str
    err: str


class Stdin(io.StringIO):
    def __init__(self, text: str = "", tty: bool = False):
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries happen as in real use, without the pauses between them."""
    monkeypatch.setattr("slipway_cli.client.RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr("slipway_cli.commands.push.UPLOAD_RETRY_DELAYS", (0.0, 0.0))


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi() as server:
        yield server


@pytest.fixture
def cli_env(api: FakeApi, tmp_path: Path) -> dict[str, str]:
    """What a CI job sets: the server and a token; the config file is elsewhere (absent)."""
    return {
        "SLIPWAY_URL": api.url,
        "SLIPWAY_TOKEN": TOKEN,
        "SLIPWAY_CONFIG": str(tmp_path / "config" / "slipway.json"),
        "SLIPWAY_POLL_SECONDS": "0.01",
    }


@pytest.fixture
def cli(cli_env: dict[str, str]):
    """Run `slipway ARGS` in this process; returns the exit code and both outputs."""

    def run(*args: str, env: dict[str, str] | None = None, stdin: Stdin | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(args), env=cli_env if env is None else env, stdin=stdin or Stdin(), stdout=out, stderr=err)
        result = Result(code, out.getvalue(), err.getvalue())
        assert TOKEN not in result.out + result.err, "the token was printed"
        return result

    return run


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def finished() -> dict[str, Any]:
    """A real finished version (from the integration test's run) and its review: two gates, one failing."""
    return load("ready_version.json")


def version_in(status: str, jobs: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A version detail body in the given state."""
    return {
        "id": 17,
        "team": "vision",
        "model": "scorer",
        "number": 3,
        "status": status,
        "status_reason": extra.pop("status_reason", ""),
        "latest_run": {"id": 5, "status": "running", "jobs": jobs or []},
        "reports": {},
        **extra,
    }


def job(kind: str, status: str, profile: str | None = "x86-cpu", progress: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {
        "id": hash((kind, profile)) % 10_000,
        "kind": kind,
        "profile": profile,
        "status": status,
        "progress": progress,
        "progress_message": extra.pop("progress_message", ""),
        "error": extra.pop("error", ""),
        **extra,
    }
