"""Naming a version on the command line, and waiting for its pipeline to finish."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from slipway_cli.client import ApiClient
from slipway_cli.errors import CliError, ExitCode
from slipway_cli.progress import StepProgress, job_line

# A version whose pipeline finished well; "failed" is the other way to finish.
FINISHED_WELL = frozenset({"ready", "approved", "rejected", "revoked"})
SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")
VERSION_HELP = "a version id (17), or MODEL:NUMBER (scorer:3; MODEL:latest for the newest)"


def poll_seconds(env: Mapping[str, str]) -> float:
    """How often --wait asks the server (SLIPWAY_POLL_SECONDS, default 2)."""
    try:
        return max(0.01, float(env.get("SLIPWAY_POLL_SECONDS") or "2"))
    except ValueError:
        raise CliError("SLIPWAY_POLL_SECONDS must be a number of seconds, e.g. 2.") from None


@dataclass(frozen=True)
class VersionRef:
    id: int
    label: str  # how messages name it: "scorer v3 (id 17)" or "version 17"


def check_slug(model: str) -> str:
    if not SLUG.match(model):
        raise CliError(f"'{model}' is not a model slug: use letters, digits, '-' and '_' only (e.g. fraud-scorer).")
    return model


def resolve_version(client: ApiClient, ref: str, team: str | None = None) -> VersionRef:
    """The version `ref` names: an id, or MODEL:NUMBER looked up in the model's versions."""
    ref = ref.strip()
    if ref.isdigit():
        return VersionRef(int(ref), f"version {int(ref)}")
    model, sep, number = ref.rpartition(":")
    if not sep or not model or not (number.isdigit() or number == "latest"):
        raise CliError(f"'{ref}' does not name a version: give {VERSION_HELP}.")
    check_slug(model)
    versions = client.get_all(f"models/{model}/versions/", {"team": team})
    if number == "latest":
        newest = max(versions, key=lambda v: v.get("number") or 0, default=None)
        if newest is None:
            raise CliError(f"Model {model} has no versions yet.")
        return VersionRef(int(newest["id"]), f"{model} v{newest['number']} (id {newest['id']})")
    wanted = int(number)
    highest = 0
    for version in versions:
        highest = max(highest, int(version.get("number") or 0))
        if version.get("number") == wanted:
            return VersionRef(int(version["id"]), f"{model} v{wanted} (id {version['id']})")
    latest = f"its latest is {highest}" if highest else "it has no versions yet"
    raise CliError(f"Model {model} has no version {wanted} ({latest}).")


def describe(version: dict[str, Any]) -> str:
    return f"{version.get('model')} v{version.get('number')} (id {version.get('id')})"


def failed_jobs(version: dict[str, Any]) -> list[dict[str, Any]]:
    run = version.get("latest_run") or {}
    return [job for job in run.get("jobs") or [] if job.get("status") == "failed"]


def report_failure(version: dict[str, Any], err: TextIO) -> None:
    """Why the pipeline failed: each failed step's error sentence, else the version's reason."""
    jobs = failed_jobs(version)
    err.write(f"The pipeline of {describe(version)} failed.\n")
    for job in jobs:
        where = f" ({job['profile']})" if job.get("profile") else ""
        err.write(f"  {job.get('kind')}{where}: {job.get('error') or 'failed without a message'}\n")
    if not jobs and version.get("status_reason"):
        err.write(f"  {version['status_reason']}\n")


def report_waiting_profiles(version: dict[str, Any], err: TextIO) -> None:
    """Say at once which chosen profiles nothing serves (no live worker meets their
    hardware), so their steps wait, and how to connect one (the server's `service_note`)."""
    for entry in version.get("profile_readiness") or []:
        if entry.get("service_note"):
            err.write(f"Warning: {entry.get('profile')}: {entry['service_note']}\n")


def unmeasured_profiles(version: dict[str, Any], only: str | None = None) -> list[dict[str, Any]]:
    """The profiles of the version's latest run with no measured evidence (the server's
    `profile_readiness`), or just `only` when it is one of them."""
    return [
        entry
        for entry in version.get("profile_readiness") or []
        if entry.get("status") == "failed" and (only is None or entry.get("profile") == only)
    ]


def report_unmeasured(version: dict[str, Any], unmeasured: list[dict[str, Any]], err: TextIO) -> None:
    """Say which profiles have nothing measured, and why."""
    names = ", ".join(str(entry.get("profile")) for entry in unmeasured)
    err.write(f"{describe(version)} has no measured evidence on {names}:\n")
    for entry in unmeasured:
        err.write(f"  {entry.get('profile')}: {entry.get('reason') or 'no reason given'}\n")


def wait_for_version(
    client: ApiClient, version_id: int, timeout: float, err: TextIO, *, interval: float = 2.0
) -> dict[str, Any]:
    """Poll the version until its pipeline finishes (well or not) and return it.

    Lost contact is retried until the deadline (the server may be restarting); a CliError
    with exit 2 when the deadline passes first.
    """
    deadline = time.monotonic() + timeout
    steps = StepProgress(err)
    lost = False
    version: dict[str, Any] | None = None
    while True:
        try:
            version = client.get(f"versions/{version_id}/")
            if lost:
                err.write("Back in contact with the server.\n")
                lost = False
        except CliError as exc:
            if not exc.transient:
                raise
            if not lost:
                err.write(f"Lost contact with the server, still trying: {exc.message}\n")
                lost = True
        if version is not None:
            steps.show((version.get("latest_run") or {}).get("jobs") or [])
            if version.get("status") in FINISHED_WELL or version.get("status") == "failed":
                return version
        if time.monotonic() >= deadline:
            where = f"; it is {version.get('status')}" if version else ""
            jobs = ((version or {}).get("latest_run") or {}).get("jobs") or []
            running = [job_line(job) for job in jobs if job.get("status") == "running"]
            raise CliError(
                f"Timed out after {timeout:g} s waiting for the pipeline of version {version_id}{where}. "
                "It keeps running on the server: wait longer with --timeout, or look later with "
                f"`slipway report {version_id}`.",
                [f"still running: {line}" for line in running],
                exit_code=ExitCode.ERROR,
            )
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
