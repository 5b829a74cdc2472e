"""No verdict without evidence (issue 15, docs/adr/0009): one profile's failure is that profile's
own, a version is ready only for profiles with measured numbers and says why the others have
none, and nobody approves numbers that were never measured."""

from __future__ import annotations

import pytest

from apps.approvals.models import Decision
from apps.hardware.models import HardwareProfile
from apps.pipeline import services as jobs
from apps.pipeline.models import Job, JobKind, JobStatus, PipelineRun, RunStatus
from apps.pipeline.outcomes import ProfileStatus, profile_outcomes
from apps.registry.models import ModelVersion, VersionStatus
from tests.conftest import client_for
from tests.finished import finished_version

pytestmark = pytest.mark.django_db

NOTHING_MEASURED = (
    "Nothing could be measured on arm-cpu-mnn: every benchmark failed, the original model's included. "
    "the original model (onnxruntime): The onnxruntime runtime failed running model.onnx at batch size 1, "
    "concurrency 1: Concat: axis 1 sizes differ (20 vs 21)."
)


@pytest.fixture(autouse=True)
def no_broker(broker):
    """Messages to workers are recorded, not sent."""


def _drive(run: PipelineRun, failing: dict[tuple[str, str | None], str]) -> None:
    """Run the pipeline's state machine as workers do: claim the queued job, then complete it,
    or fail it with the sentence given for its (kind, profile)."""
    while (queued := run.jobs.filter(status=JobStatus.QUEUED).select_related("profile").first()) is not None:
        job = jobs.claim(queued.pk, "worker-1", f"task-{queued.pk}")
        assert job is not None
        key = (job.kind, job.profile.slug if job.profile else None)
        if key in failing:
            assert jobs.fail(job, "nothing_measured", failing[key])
        else:
            assert jobs.complete(job, jobs.StepOutcome(result={"profile": key[1]}))


def _two_profile_version(personas) -> ModelVersion:
    version = finished_version(team=personas.team, uploader=personas.owner)
    version.profiles.set(HardwareProfile.objects.filter(slug__in=["arm-cpu-mnn", "x86-cpu"]))
    return version


def test_one_profiles_failure_leaves_the_others_steps_to_run_and_the_version_ready_for_them(personas):
    version = _two_profile_version(personas)
    run = jobs.start_pipeline(version, personas.owner)
    _drive(run, {(JobKind.PARITY, "arm-cpu-mnn"): "Every variant failed its parity check."})

    by_step = {(j.kind, j.profile.slug if j.profile else None): j for j in run.jobs.select_related("profile")}
    # x86-cpu's steps all ran, the op-support matrix (validate) included.
    assert all(by_step[(kind, "x86-cpu")].status == JobStatus.SUCCEEDED for kind in jobs.PROFILE_STEPS)
    assert by_step[(JobKind.BENCHMARK, "arm-cpu-mnn")].status == JobStatus.CANCELLED
    assert (
        by_step[(JobKind.BENCHMARK, "arm-cpu-mnn")].error == "Not run: the accuracy parity step of this profile failed."
    )
    assert by_step[(JobKind.VALIDATE, "arm-cpu-mnn")].status == JobStatus.SUCCEEDED

    version.refresh_from_db()
    assert version.status == VersionStatus.READY
    assert "ready for review on x86-cpu only" in version.status_reason
    assert "arm-cpu-mnn has no measured evidence (Accuracy parity: Every variant failed its parity check.)" in (
        version.status_reason
    )
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED

    body = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/").json()
    assert body["profile_readiness"] == [
        {
            "profile": "arm-cpu-mnn",
            "status": "failed",
            "reason": "Accuracy parity: Every variant failed its parity check.",
            "step": "parity",
            "service_note": "",
            "hardware_note": "",
        },
        {"profile": "x86-cpu", "status": "ready", "reason": "", "step": None, "service_note": "", "hardware_note": ""},
    ]


def test_a_version_with_no_measured_profile_fails_and_says_why_for_each(personas):
    version = _two_profile_version(personas)
    run = jobs.start_pipeline(version, personas.owner)
    _drive(
        run,
        {
            (JobKind.BENCHMARK, "arm-cpu-mnn"): NOTHING_MEASURED,
            (JobKind.BENCHMARK, "x86-cpu"): NOTHING_MEASURED.replace("arm-cpu-mnn", "x86-cpu"),
        },
    )
    version.refresh_from_db()
    assert version.status == VersionStatus.FAILED
    assert version.status_reason.startswith("No profile has measured evidence: arm-cpu-mnn: Benchmark: Nothing")
    assert "x86-cpu: Benchmark: Nothing could be measured on x86-cpu" in version.status_reason
    assert PipelineRun.objects.get(pk=run.pk).status == RunStatus.FAILED
    assert [o.status for o in profile_outcomes(run)] == [ProfileStatus.FAILED, ProfileStatus.FAILED]
    recommend = run.jobs.filter(kind=JobKind.RECOMMEND)
    assert all(j.status == JobStatus.CANCELLED for j in recommend)


def test_a_failing_version_step_still_stops_every_profile(personas):
    version = _two_profile_version(personas)
    run = jobs.start_pipeline(version, personas.owner)
    _drive(run, {(JobKind.INSPECT, None): "The ONNX checker rejected the model: bad node."})
    version.refresh_from_db()
    assert version.status == VersionStatus.FAILED and version.status_reason.startswith("Inspect: ")
    assert set(run.jobs.exclude(kind=JobKind.INSPECT).values_list("status", flat=True)) == {JobStatus.CANCELLED}
    reasons = {o.profile: o.reason for o in profile_outcomes(run)}
    assert reasons["x86-cpu"] == (
        "its steps did not run because the inspect step failed: The ONNX checker rejected the model: bad node."
    )


def _partly_measured(personas) -> ModelVersion:
    """x86-cpu fully measured; arm-cpu-mnn's benchmark measured nothing and failed (as the
    benchmark step now does), through the state machine's real failure path."""
    version = finished_version(team=personas.team, uploader=personas.owner, status=VersionStatus.PROCESSING)
    arm = HardwareProfile.objects.get(slug="arm-cpu-mnn")
    version.profiles.add(arm)
    run = version.runs.get()
    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    benchmark = Job.objects.create(
        run=run, kind=JobKind.BENCHMARK, sequence=10, profile=arm, status=JobStatus.QUEUED, queue="cpu"
    )
    Job.objects.create(run=run, kind=JobKind.RECOMMEND, sequence=11, profile=arm, status=JobStatus.PENDING)
    claimed = jobs.claim(benchmark.pk, "worker-1", "task-1")
    assert claimed is not None
    jobs.fail(claimed, "nothing_measured", NOTHING_MEASURED)
    version.refresh_from_db()
    assert version.status == VersionStatus.READY
    return version


def test_the_review_fails_the_built_in_evidence_gate_for_the_unmeasured_profile(personas):
    version = _partly_measured(personas)
    review = client_for(personas.approver).get(f"/api/v1/versions/{version.pk}/review/").json()
    assert review["gates_passed"] is False
    (gate,) = review["gates"]
    assert gate["policy_id"] is None and gate["kind"] == "measured_evidence" and gate["profile"] == "arm-cpu-mnn"
    assert gate["message"] == f"The arm-cpu-mnn profile has no measured evidence: Benchmark: {NOTHING_MEASURED}"
    assert review["evidence"]["profiles"]["arm-cpu-mnn"]["evidence_missing"] == gate["message"]
    assert "evidence_missing" not in review["evidence"]["profiles"]["x86-cpu"]


def test_approving_with_an_unmeasured_profile_needs_an_override_that_is_recorded(personas):
    version = _partly_measured(personas)
    url = f"/api/v1/versions/{version.pk}/approve/"
    refused = client_for(personas.approver).post(url, {"comment": "x86 looks fine"}, format="json")
    assert refused.status_code == 409, refused.json()
    assert refused.json()["code"] == "gates_failed"
    assert (
        "Measured evidence (arm-cpu-mnn): The arm-cpu-mnn profile has no measured evidence" in refused.json()["message"]
    )
    assert ModelVersion.objects.get(pk=version.pk).status == VersionStatus.READY

    override = "We ship on x86 only; arm is measured in v4."
    approved = client_for(personas.approver).post(url, {"override_reason": override}, format="json")
    assert approved.status_code == 201, approved.json()
    decision = Decision.objects.get(pk=approved.json()["id"])
    assert decision.override_reason == override and decision.gates_passed is False
    assert decision.evidence["profiles"]["arm-cpu-mnn"]["evidence_missing"]


def test_a_version_with_nothing_measured_anywhere_cannot_be_approved_even_with_an_override(personas):
    """What older runs left behind: a benchmark that 'succeeded' with every entry failed, and a
    version that went ready on it."""
    version = finished_version(team=personas.team, uploader=personas.owner)
    failed = {"error": "The onnxruntime runtime failed running model.onnx: Concat: axis 1 sizes differ.", "points": []}
    Job.objects.filter(run__version=version, kind=JobKind.BENCHMARK).update(
        result={"profile": "x86-cpu", "baseline": failed, "variants": {"ort-int8": failed, "ort-opt": failed}}
    )
    url = f"/api/v1/versions/{version.pk}/approve/"
    response = client_for(personas.approver).post(url, {"override_reason": "trust me"}, format="json")
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "no_measured_evidence"
    assert "nothing was measured on any of its profiles" in response.json()["message"]
    assert "an override can't stand in for evidence" in response.json()["message"]
    assert ModelVersion.objects.get(pk=version.pk).status == VersionStatus.READY
    assert not Decision.objects.filter(version=version).exists()


def test_a_fully_measured_version_has_the_evidence_it_had(personas):
    """The evidence-missing key appears only where evidence is missing, so approvals made before
    it existed still match their evidence hash."""
    version = finished_version(team=personas.team, uploader=personas.owner)
    review = client_for(personas.approver).get(f"/api/v1/versions/{version.pk}/review/").json()
    assert review["gates"] == [] and review["gates_passed"] is True
    assert "evidence_missing" not in review["evidence"]["profiles"]["x86-cpu"]
