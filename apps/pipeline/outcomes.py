"""Per-profile readiness of a pipeline run: which hardware profiles have measured evidence,
and why the others don't (docs/adr/0009).

Derived from the run's jobs, which are the truth, so it can never disagree with them; the
version API, the evidence snapshot and the end of a run all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.pipeline.models import Job, JobStatus, PipelineRun

# The error code of the steps of a profile someone stopped waiting for (services.drop_profile).
DROPPED = "profile_dropped"


class ProfileStatus:
    """A profile's readiness within a run (ProfileOutcome.status)."""

    READY = "ready"
    FAILED = "failed"
    PROCESSING = "processing"


@dataclass(frozen=True)
class ProfileOutcome:
    """Where one hardware profile of a run stands: `ready` once all its steps succeeded (the
    benchmark and recommend steps fail when nothing was measured, so a ready profile has
    numbers), `failed` with the reason (the failing step's sentence, or why its steps never
    ran), `processing` while its steps are still to run."""

    profile: str
    status: str
    reason: str = ""
    step: str | None = None  # the step that failed, or the version's step that stopped the run

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "status": self.status, "reason": self.reason, "step": self.step}


def profile_outcomes(run: PipelineRun, jobs: list[Job] | None = None) -> list[ProfileOutcome]:
    """Each profile of the run, in plan order, with its readiness (see ProfileOutcome).

    `jobs`: the run's jobs with their profiles, when the caller already has them (a prefetch),
    to spare the query."""
    if jobs is None:
        jobs = list(run.jobs.select_related("profile").order_by("sequence"))
    jobs = sorted(jobs, key=lambda j: j.sequence)
    version_failure = next((j for j in jobs if j.profile_id is None and j.status == JobStatus.FAILED), None)
    by_profile: dict[str, list[Job]] = {}
    for job in jobs:
        if job.profile is not None:
            by_profile.setdefault(job.profile.slug, []).append(job)
    outcomes = []
    for slug, own in by_profile.items():
        failed = next((j for j in own if j.status == JobStatus.FAILED), None)
        if failed is not None:
            reason = f"{failed.get_kind_display()}: {failed.error}"
            outcomes.append(ProfileOutcome(slug, ProfileStatus.FAILED, reason, failed.kind))
        elif version_failure is not None:
            step = version_failure.get_kind_display().lower()
            reason = f"its steps did not run because the {step} step failed: {version_failure.error}"
            outcomes.append(ProfileOutcome(slug, ProfileStatus.FAILED, reason, version_failure.kind))
        elif any(j.status == JobStatus.CANCELLED for j in own):
            dropped = next((j for j in own if j.error_code == DROPPED), None)
            reason = dropped.error if dropped is not None else "its steps were cancelled before they ran."
            outcomes.append(ProfileOutcome(slug, ProfileStatus.FAILED, reason))
        elif all(j.status == JobStatus.SUCCEEDED for j in own):
            outcomes.append(ProfileOutcome(slug, ProfileStatus.READY))
        else:
            outcomes.append(ProfileOutcome(slug, ProfileStatus.PROCESSING))
    return outcomes
