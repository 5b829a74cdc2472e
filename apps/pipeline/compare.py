"""Two versions of a model, or two variants, side by side on one hardware profile, computed when asked.

A side is a version's recommended variant on the profile (what it would ship), a variant named
explicitly, or the version's original model in plain onnxruntime. Each side's figures come
from the latest pipeline run of its version: the benchmark point (latency and throughput with
their 95 % intervals, as `workers.engine.timing` reads them), parity against its own FP32
original (per output), the op-support check of its runtime, and the size of its file.

Verdicts respect noise: a latency or throughput change is only called when the intervals say
so (`latency_change`); an accuracy change only when it is larger than what the parity
measurement itself can resolve (`accuracy_change`). Figures without an interval (runs from
before intervals were recorded) are shown as measured, with "no interval", and get no verdict.

The result types and the verdicts drawn from two sides are in `comparison`; this module finds
each side's figures. The "previous approved version" card of a version is `previous_approved(version)`: the same
comparison, made when the version is read, so it follows later approvals and revocations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from rest_framework import status

from apps.accounts.scoping import visible_teams
from apps.core.api.errors import ApiError
from apps.pipeline.comparison import (
    LATENCY_STATISTICS,
    ORIGINAL,
    Comparison,
    Figure,
    OutputAccuracy,
    Ref,
    Side,
    accuracy_changes,
    size_change,
    summary_sentence,
    support_change,
    throughput_change,
    timing_change,
)
from apps.pipeline.models import Job, JobKind, JobStatus, PipelineRun
from apps.registry.models import Artifact, ArtifactKind, ModelVersion, VersionStatus
from workers.engine.reports import BenchmarkEntry, BenchmarkPoint, ParityReport, RecommendReport, ValidateReport
from workers.engine.timing import Estimate, estimate_from_point
from workers.engine.typed import read

REF_HELP = (
    "a version id (17) or MODEL:NUMBER (scorer:3, or scorer:latest), optionally followed by /VARIANT "
    f"(17/ort-int8, scorer:3/{ORIGINAL} for the original model in plain onnxruntime)"
)
_REF = re.compile(r"^(?:(?P<id>\d+)|(?P<model>[-a-zA-Z0-9_]+):(?P<number>\d+|latest))(?:/(?P<variant>[^/\s]+))?$")

# ---- references ---------------------------------------------------------------------------


def parse_ref(text: str, which: str) -> Ref:
    """A reference as typed (see REF_HELP); `which` ("a" or "b") names the parameter in the
    error sentence. Raises ApiError "bad_ref" (400) when it names nothing."""
    text = (text or "").strip()
    if not text:
        raise ApiError("bad_ref", f"Give {which}=: {REF_HELP}.")
    match = _REF.match(text)
    if match is None:
        raise ApiError("bad_ref", f"'{text}' ({which}=) does not name a version or a variant: give {REF_HELP}.")
    if match["id"]:
        return Ref(text, version_id=int(match["id"]), variant=match["variant"])
    number = None if match["number"] == "latest" else int(match["number"])
    return Ref(text, model=match["model"], number=number, variant=match["variant"])


def resolve_version(user: Any, ref: Ref, team: str | None = None) -> ModelVersion:
    """The version `ref` names among the user's teams; a 404 with a sentence otherwise (outsiders
    learn nothing: a version of another team is "not found" like one that does not exist)."""
    versions: QuerySet[ModelVersion] = ModelVersion.objects.filter(model__team__in=visible_teams(user)).select_related(
        "model", "model__team", "source_artifact"
    )
    if ref.version_id is not None:
        found = versions.filter(pk=ref.version_id).first()
        if found is None:
            raise _not_found(f"There is no version with id {ref.version_id} in your teams.")
        return found
    versions = versions.filter(model__slug=ref.model)
    if team:
        versions = versions.filter(model__team__slug=team)
    teams = sorted(set(versions.values_list("model__team__slug", flat=True)))
    if len(teams) > 1:
        raise ApiError(
            "ambiguous_model",
            f"Several of your teams ({', '.join(teams)}) have a model called '{ref.model}'; "
            "add team=<team slug> to say which.",
        )
    if not teams:
        where = f"team {team}" if team else "your teams"
        raise _not_found(f"There is no model '{ref.model}' in {where}.")
    if ref.number is None:
        latest = versions.order_by("-number").first()
        assert latest is not None  # the model has a version: `teams` came from one
        return latest
    found = versions.filter(number=ref.number).first()
    if found is None:
        highest = max(versions.values_list("number", flat=True))
        raise _not_found(f"Model {ref.model} has no version {ref.number} (its latest is {highest}).")
    return found


def _not_found(sentence: str) -> ApiError:
    return ApiError("not_found", sentence, status.HTTP_404_NOT_FOUND)


# ---- evidence of one version ----------------------------------------------------------------


@dataclass(frozen=True)
class _Evidence:
    """The latest run of a version and its jobs, read once."""

    run: PipelineRun | None
    jobs: tuple[Job, ...]
    profiles: tuple[str, ...]  # the profiles the run has steps for
    running: bool

    def reports(self, profile: str) -> dict[str, Any]:
        """Step kind -> result of the succeeded steps for `profile` (and those run once per version)."""
        found: dict[str, Any] = {}
        for job in self.jobs:  # in sequence order: a later attempt of a step wins
            if job.status != JobStatus.SUCCEEDED or not isinstance(job.result, dict):
                continue
            if job.profile is None or job.profile.slug == profile:
                found[job.kind] = job.result
        return found


def _evidence(version: ModelVersion) -> _Evidence:
    run = version.runs.order_by("-id").first()
    if run is None:
        return _Evidence(None, (), (), False)
    jobs = tuple(run.jobs.select_related("profile").order_by("sequence"))
    profiles = tuple(sorted({j.profile.slug for j in jobs if j.profile is not None}))
    running = any(j.status in (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING) for j in jobs)
    return _Evidence(run, jobs, profiles, running)


def _variant_artifacts(version: ModelVersion, run: PipelineRun | None, profile: str) -> dict[str, Artifact]:
    if run is None:
        return {}
    artifacts = Artifact.objects.filter(
        version=version, kind=ArtifactKind.VARIANT, job__run=run, metadata__profile=profile
    ).order_by("id")
    return {a.name.split("/", 1)[-1]: a for a in artifacts}


def _original_artifact(version: ModelVersion) -> Artifact | None:
    """The model the variants were built from: its ONNX conversion, else the upload itself."""
    imported = version.artifacts.filter(kind=ArtifactKind.ONNX).order_by("-id").first()
    return imported or version.source_artifact


def choose_profile(a: _Evidence, b: _Evidence, wanted: str | None, a_name: str, b_name: str) -> str:
    """The profile to compare on: the one asked for, or the only one both were run on."""
    common = sorted(set(a.profiles) & set(b.profiles))
    if wanted:
        for name, ev in ((a_name, a), (b_name, b)):
            if wanted not in ev.profiles:
                on = f"it was run on {', '.join(ev.profiles)}" if ev.profiles else "its pipeline has not run yet"
                raise ApiError(
                    "profile_not_run", f"{name} was not run on profile {wanted} ({on}); choose a profile it ran on."
                )
        return wanted
    if len(common) == 1:
        return common[0]
    if not common:
        raise ApiError(
            "no_common_profile",
            f"{a_name} and {b_name} were not run on a common hardware profile "
            f"({a_name}: {', '.join(a.profiles) or 'none'}; {b_name}: {', '.join(b.profiles) or 'none'}), "
            "so there is nothing measured alike to compare; run one of them on the other's profile.",
        )
    raise ApiError(
        "profile_needed",
        f"{a_name} and {b_name} were both run on {', '.join(common)}; add profile=<slug> to say which to compare.",
    )


# ---- which variant, and which benchmark point -----------------------------------------------


def _label(version: ModelVersion) -> str:
    return f"{version.model.slug} v{version.number}"


@dataclass(frozen=True)
class _Choice:
    variant: str | None
    chosen: str
    note: str = ""


def _choose_variant(
    ref: Ref, reports: Mapping[str, Any], running: bool, variants: Mapping[str, Artifact], label: str, profile: str
) -> _Choice:
    """The variant named by `ref`, else the one the version's recommendation picked."""
    if ref.variant:
        if ref.variant == ORIGINAL or ref.variant in variants:
            return _Choice(ref.variant, "named")
        known = ", ".join([ORIGINAL, *variants]) if variants else f"{ORIGINAL} (no variants were built)"
        raise _not_found(f"{label} has no variant '{ref.variant}' on profile {profile}; it has {known}.")
    recommend = read(RecommendReport, reports.get(JobKind.RECOMMEND))
    if recommend is None:
        state = "its pipeline is still running" if running else "it has no recommendation"
        return _Choice(
            None,
            "none",
            f"{label} has no recommended variant on {profile} ({state}); name a variant, e.g. "
            f"{label.replace(' v', ':')}/{ORIGINAL}.",
        )
    if recommend.winner is not None and recommend.winner.name:
        return _Choice(recommend.winner.name, "recommended")
    return _Choice(ORIGINAL, "original (no variant won)")


def _benchmark_entry(benchmark: Mapping[str, Any], variant: str | None) -> BenchmarkEntry | None:
    """The variant's entry in a stored benchmark report (the original's for ORIGINAL), or None."""
    if not variant or not benchmark:
        return None
    raw = benchmark.get("baseline") if variant == ORIGINAL else (benchmark.get("variants") or {}).get(variant)
    if not isinstance(raw, Mapping) or not raw:
        return None
    return read(BenchmarkEntry, raw)


def _points_of(benchmark: Mapping[str, Any], variant: str | None) -> tuple[list[BenchmarkPoint], str]:
    """The variant's benchmark points, or [] and why there are none."""
    if not variant:
        return [], "no variant to measure"
    if not benchmark:
        return [], "not benchmarked on this profile yet"
    entry = _benchmark_entry(benchmark, variant)
    if entry is None:
        return [], "not benchmarked"
    if not entry.points:
        return [], f"not measured: {entry.error or 'its benchmark has no points'}"
    return list(entry.points), ""


def common_point(a_points: Sequence[BenchmarkPoint], b_points: Sequence[BenchmarkPoint]) -> tuple[int, int] | None:
    """The (batch, concurrency) both sides measured, the smallest first (batch 1, concurrency 1
    is what every sweep starts with); the smallest of one side when the other has none; None
    when both have points but none in common (then neither is compared)."""
    a_keys, b_keys = {p.key for p in a_points}, {p.key for p in b_points}
    both = a_keys & b_keys if a_keys and b_keys else a_keys | b_keys
    return min(both) if both else None


def _single_threaded_cpu(entry: BenchmarkEntry | None, point: BenchmarkPoint | None) -> bool:
    """Whether the point was measured by one thread on a CPU: there CPU time per inference is
    the stable figure (`workers.engine.recommend.benchmark_points` decides the same way)."""
    return bool(entry is not None and entry.single_threaded_cpu and point is not None and point.concurrency == 1)


# ---- one side -----------------------------------------------------------------------------


def _how(estimate: Estimate) -> str:
    trials = f"{estimate.trials} trial{'s' if estimate.trials != 1 else ''}"
    return f"95% interval from {trials} x {estimate.samples:,} samples"


def _figure(point: BenchmarkPoint | None, statistic: str, why_none: str) -> Figure:
    """The figure for `statistic` ("p50_ms", "p99_ms", "cpu_ms", "throughput") at `point`."""
    if point is None:
        return Figure(None, how=why_none)
    estimate = estimate_from_point(point, statistic)
    if estimate is not None:
        return Figure(estimate.value, estimate.low, estimate.high, estimate.samples, estimate.trials, _how(estimate))
    value = _num(point.figure(statistic))
    per_request = _num(point.cpu_ms_per_request)
    if statistic == "cpu_ms" and value is None and per_request is not None:
        # Runs from before CPU time was reported per inference recorded it per request.
        value = per_request / max(1, point.batch_size)
    samples = point.samples if point.samples is not None else point.requests
    if value is not None:
        how = f"no interval: measured once, {samples:,} samples" if samples else "no interval: measured once"
        return Figure(value, samples=samples, how=how)
    note = getattr(point, statistic.replace("_ms", "_note"), None) if statistic.endswith("_ms") else None
    return Figure(None, how=str(note or "not measured"))


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _parity_report(parity: Mapping[str, Any] | None) -> ParityReport | None:
    """The stored parity report by type, or None where there is none (or it can't be read)."""
    if not isinstance(parity, Mapping) or not parity:
        return None
    return read(ParityReport, parity)


def _outputs(parity: ParityReport | None, variant: str, output_names: Sequence[str]) -> tuple[OutputAccuracy, ...]:
    if variant == ORIGINAL:
        # The original is the reference parity compares with: equal to itself by definition.
        return tuple(OutputAccuracy(name, True, 1.0, 0.0, None) for name in output_names)
    result = parity.variants.get(variant) if parity is not None else None
    if result is None:
        return ()
    return tuple(
        OutputAccuracy(
            name=out.name,
            passed=out.passed,
            cosine=_num(out.cosine),
            max_abs_error=_num(out.max_abs_error),
            top1_agreement=_num(out.top1_agreement),
            kind=out.kind or None,
            sqnr_db=_num(out.sqnr_db),
            worst_slice=out.worst_slice or None,
            worst_slice_sqnr_db=_num(out.worst_slice_sqnr_db),
        )
        for out in result.outputs
    )


def _inputs_description(parity: Mapping[str, Any] | None) -> str:
    """What parity ran on, as its report says ("the uploaded validation set", "generated: ...")."""
    inputs = (parity or {}).get("inputs")
    if isinstance(inputs, Mapping):
        source, description = inputs.get("source"), inputs.get("description")
        if isinstance(description, str) and description:
            return f"{source}: {description}" if isinstance(source, str) and source else description
        if isinstance(source, str) and source:
            return source
        if inputs.get("validation"):
            return "the uploaded validation set"
        if inputs:
            return "generated inputs"
    return ""


def _support(validate: Any, backend: str) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """The op-support verdict of the side's runtime, and the op types it can't run or runs elsewhere."""
    typed = read(ValidateReport, validate)
    report = typed.reports.get(backend) if typed is not None else None
    if report is None:
        return None, (), ()
    unsupported = tuple(sorted({op.op_type for op in report.ops if op.status == "unsupported"}))
    fallback = tuple(sorted({op.op_type for op in report.ops if op.status == "fallback"}))
    return report.verdict or "unknown", unsupported, fallback


@dataclass(frozen=True)
class _Draft:
    """One side before its benchmark point is fixed: the version, its evidence on the profile
    and the variant chosen, with that variant's benchmark entry and points."""

    ref: Ref
    version: ModelVersion
    evidence: _Evidence
    reports: dict[str, Any]
    variants: dict[str, Artifact]
    choice: _Choice
    entry: BenchmarkEntry | None
    points: list[BenchmarkPoint]
    why_unmeasured: str


def _draft(ref: Ref, version: ModelVersion, evidence: _Evidence, profile: str) -> _Draft:
    reports = evidence.reports(profile)
    variants = _variant_artifacts(version, evidence.run, profile)
    choice = _choose_variant(ref, reports, evidence.running, variants, _label(version), profile)
    benchmark = reports.get(JobKind.BENCHMARK) or {}
    points, why = _points_of(benchmark, choice.variant)
    entry = _benchmark_entry(benchmark, choice.variant)
    return _Draft(ref, version, evidence, reports, variants, choice, entry, points, why)


def _point_of(draft: _Draft, key: tuple[int, int] | None) -> tuple[BenchmarkPoint | None, str]:
    """The draft's point at `key`, or None and why it has none there."""
    if not draft.points:
        return None, draft.why_unmeasured
    if key is None:
        return None, "no benchmark point (batch and concurrency) in common with the other side"
    point = next((p for p in draft.points if p.key == key), None)
    if point is None:
        return None, f"not measured at batch {key[0]}, concurrency {key[1]}"
    return point, ""


def build_side(draft: _Draft, point: BenchmarkPoint | None, why_unmeasured: str) -> Side:
    """Everything shown for one side, its timings read at `point`."""
    version, variant, reports = draft.version, draft.choice.variant, draft.reports
    notes = [draft.choice.note] if draft.choice.note else []
    latency = {statistic: _figure(point, statistic, why_unmeasured) for statistic in LATENCY_STATISTICS}
    throughput = _figure(point, "throughput", why_unmeasured)

    artifact: Artifact | None
    if variant == ORIGINAL:
        artifact = _original_artifact(version)
        backend, precision = "onnxruntime", "as uploaded"
    elif variant:
        artifact = draft.variants.get(variant)
        metadata = artifact.metadata if artifact is not None else {}
        backend, precision = str(metadata.get("backend", "")), str(metadata.get("precision", ""))
    else:
        artifact, backend, precision = None, "", ""

    parity = _parity_report(reports.get(JobKind.PARITY))
    inspect = reports.get(JobKind.INSPECT) or {}
    output_names = [str(o.get("name")) for o in inspect.get("outputs") or [] if isinstance(o, Mapping)]
    outputs = _outputs(parity, variant, output_names) if variant else ()
    verdict = parity.variants.get(variant or "") if parity is not None else None
    passed: bool | None
    if variant == ORIGINAL:
        passed = True
    else:
        passed = verdict.passed if verdict is not None else None
        if verdict is not None and verdict.error:
            notes.append(f"Parity could not run {variant}: {verdict.error}")
        elif passed is False and verdict is not None:
            reasons = " ".join(verdict.reasons) or "no reason recorded."
            notes.append(f"{variant} did not pass parity against its original: {reasons}")
    samples = verdict.samples if verdict is not None else None
    if samples is None and parity is not None:
        samples = parity.inputs.samples

    support = _support(reports.get(JobKind.VALIDATE), backend)
    benchmark = reports.get(JobKind.BENCHMARK) or {}
    entry = draft.entry
    measured_on = ", ".join(str(x) for x in (benchmark.get("worker_host"), entry and entry.cpu_model) if x)
    runtime_version = entry.runtime_version if entry is not None else None
    return Side(
        ref=draft.ref.text,
        version_id=version.pk,
        model=version.model.slug,
        team=version.model.team.slug,
        number=version.number,
        status=version.status,
        variant=variant,
        chosen=draft.choice.chosen,
        backend=backend,
        precision=precision,
        size_bytes=artifact.size if artifact is not None else None,
        point={"batch": point.batch_size, "concurrency": point.concurrency} if point is not None else None,
        latency=latency,
        throughput=throughput,
        parity_passed=passed,
        parity_samples=samples if isinstance(samples, int) and not isinstance(samples, bool) else None,
        parity_inputs=_inputs_description(reports.get(JobKind.PARITY)),
        outputs=outputs,
        support_verdict=support[0],
        unsupported_ops=support[1],
        fallback_ops=support[2],
        measured_on=measured_on,
        runtime_version=str(runtime_version) if runtime_version else None,
        notes=tuple(notes),
    )


# ---- the comparison -------------------------------------------------------------------------


def compare_versions(
    a_ref: Ref, a_version: ModelVersion, b_ref: Ref, b_version: ModelVersion, profile: str | None = None
) -> Comparison:
    """Side a (before) against side b (after) on `profile` (or the only profile both ran on)."""
    a_ev = _evidence(a_version)
    b_ev = a_ev if b_version.pk == a_version.pk else _evidence(b_version)
    chosen = choose_profile(a_ev, b_ev, profile, _label(a_version), _label(b_version))
    a_draft, b_draft = _draft(a_ref, a_version, a_ev, chosen), _draft(b_ref, b_version, b_ev, chosen)
    key = common_point(a_draft.points, b_draft.points)
    a_point, a_why = _point_of(a_draft, key)
    b_point, b_why = _point_of(b_draft, key)
    a_side, b_side = build_side(a_draft, a_point, a_why), build_side(b_draft, b_point, b_why)
    latency = tuple(timing_change(s, a_point, b_point) for s in LATENCY_STATISTICS)
    both_single_threaded = _single_threaded_cpu(a_draft.entry, a_point) and _single_threaded_cpu(b_draft.entry, b_point)
    headline_statistic = "cpu_ms" if both_single_threaded else "p50_ms"
    headline = next(c for c in latency if c.what == headline_statistic)
    if headline.verdict == "unknown" and headline_statistic == "cpu_ms":
        headline_statistic, headline = "p50_ms", latency[0]
    accuracy = accuracy_changes(a_side, b_side)
    notes = []
    if a_side.measured_on and b_side.measured_on and a_side.measured_on != b_side.measured_on:
        notes.append(
            f"The two sides were measured on different machines ({a_side.measured_on}; {b_side.measured_on}): "
            "timing differences may come from the hardware, not the model."
        )
    if a_side.parity_inputs and b_side.parity_inputs and a_side.parity_inputs != b_side.parity_inputs:
        notes.append(
            f"Parity used different inputs (a: {a_side.parity_inputs}; b: {b_side.parity_inputs}): "
            "accuracy figures are each against their own original on those inputs."
        )
    return Comparison(
        profile=chosen,
        a=a_side,
        b=b_side,
        headline=headline_statistic,
        latency=latency,
        throughput=throughput_change(a_point, b_point),
        accuracy=accuracy,
        size=size_change(a_side, b_side),
        support=support_change(a_side, b_side),
        summary=summary_sentence(a_side, b_side, headline, accuracy),
        notes=tuple(notes),
    )


def compare(user: Any, a: str, b: str, profile: str | None = None, team: str | None = None) -> Comparison:
    """`GET /compare/`: two references as the user typed them, resolved within the user's teams."""
    a_ref, b_ref = parse_ref(a, "a"), parse_ref(b, "b")
    a_version, b_version = resolve_version(user, a_ref, team), resolve_version(user, b_ref, team)
    return compare_versions(a_ref, a_version, b_ref, b_version, profile or None)


def previous_approved_version(version: ModelVersion) -> ModelVersion | None:
    """The model's newest approved version numbered below `version`."""
    return (
        ModelVersion.objects.filter(model_id=version.model_id, status=VersionStatus.APPROVED, number__lt=version.number)
        .select_related("model", "model__team", "source_artifact")
        .order_by("-number")
        .first()
    )


def previous_approved(version: ModelVersion) -> dict[str, Any] | None:
    """The result types and the verdicts drawn from two sides are in `comparison`; this module finds
    each side's figures. The "previous approved version" card, computed now: for each profile this version ran on,
        the previous approved version's recommended variant (a) against this version's (b), or the
        sentence saying why that profile can't be compared. None when the model has no earlier
        approved version. Being read, not stored, it follows approvals and revocations made since
        the pipeline ran."""
    previous = previous_approved_version(version)
    if previous is None:
        return None
    ours, theirs = _evidence(version), _evidence(previous)
    a_ref, b_ref = Ref(str(previous.pk), version_id=previous.pk), Ref(str(version.pk), version_id=version.pk)
    comparisons: dict[str, Any] = {}
    not_compared: dict[str, str] = {}
    for profile in ours.profiles:
        if profile not in theirs.profiles:
            not_compared[profile] = f"{_label(previous)} (approved) was not run on {profile}."
            continue
        try:
            comparisons[profile] = compare_versions(a_ref, previous, b_ref, version, profile).to_dict()
        except ApiError as exc:
            not_compared[profile] = exc.message
    return {
        "version_id": previous.pk,
        "number": previous.number,
        "profiles": comparisons,
        "not_compared": not_compared,
    }
