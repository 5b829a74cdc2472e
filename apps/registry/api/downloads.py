"""Downloads: an artifact's bytes, a version's reports (JSON or CSV) and a decision's evidence.

Each is a file (`Content-Disposition: attachment`) for anyone who may see the team; an
outsider gets a 404 like everywhere. Every download is written to the audit trail, so a team
can tell who took a copy of a model or of its evidence. Errors stay in the one JSON body.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from django.http import FileResponse, HttpResponse, HttpResponseNotModified
from django.http.response import HttpResponseBase
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import renderers, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.accounts.models import Team
from apps.accounts.permissions import Action, not_found, require
from apps.approvals.api.serializers import GateSerializer, VersionRefSerializer
from apps.approvals.evidence import evidence_hash
from apps.approvals.models import Decision
from apps.approvals.services import version_payload
from apps.audit.services import record
from apps.core.api.errors import ApiError, Conflict
from apps.core.api.schema import REPORTS_SCHEMA
from apps.pipeline.models import JobStatus
from apps.registry.models import Artifact, ArtifactKind, ModelVersion
from apps.registry.storage import artifact_storage

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, fallback: str = "file") -> str:
    """`text` with only letters, digits, '.', '_' and '-' (runs of others become one '_'), no
    leading dots: a file name no browser, shell or header parser can misread."""
    return _UNSAFE.sub("_", text).lstrip("._")[:200] or fallback


def _extension(artifact: Artifact) -> str:
    """The file extension a download of `artifact` gets: zip for bundles of several files,
    the uploaded file's own for a source, else the format's name (onnx, npz, tflite...)."""
    fmt = artifact.format.lower()
    if fmt.endswith("zip"):
        return "zip"
    if artifact.kind == ArtifactKind.SOURCE and (suffix := PurePosixPath(artifact.original_filename).suffix):
        return safe_name(suffix.lstrip("."), "bin")
    return safe_name(fmt, "bin")


def download_filename(artifact: Artifact) -> str:
    """`<model-slug>-v<number>-<artifact name>.<ext>`, e.g. scorer-v3-x86-cpu_ort-int8.onnx."""
    version = artifact.version
    stem = f"{version.model.slug}-v{version.number}-{artifact.name}"
    return f"{safe_name(stem)}.{_extension(artifact)}"


def _attachment(filename: str) -> str:
    return f'attachment; filename="{filename}"'


class AnyAccept(DefaultContentNegotiation):
    """These answers are files whatever the Accept header asks for (a browser's link, curl,
    `Accept: application/octet-stream`); refusing with 406 would help no one. Errors are JSON."""

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


class DownloadView(APIView):
    """A GET that answers a file to whoever may see the object's team (token scope `read`)."""

    token_scopes = {"GET": "read"}
    renderer_classes = [renderers.JSONRenderer]
    content_negotiation_class = AnyAccept

    def viewable(self, team: Team) -> None:
        require(self.request.user, team, Action.VIEW)  # outsiders: 404; every role may view

    def audit(self, action: str, obj: Any, team: Team, after: dict[str, Any]) -> None:
        """Record the download. A HEAD asks for the headers only and takes no copy: not recorded."""
        if self.request.method != "HEAD":
            record(action, obj, actor=self.request.user, team=team, after=after)


# ---- artifacts --------------------------------------------------------------------------


class ArtifactDownload(DownloadView):
    """Download an artifact's bytes: the upload, its ONNX conversion, a variant, or a data set.

    `X-Slipway-SHA256` (and the `ETag`) carry the sha256 of the body, so the client can check
    what it received; a request with that ETag in `If-None-Match` gets 304 and no body."""

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The artifact's bytes, as an attachment; X-Slipway-SHA256 and the ETag carry their sha256.",
            ),
            409: OpenApiResponse(description="The stored file does not match the artifact's record (its size)."),
            410: OpenApiResponse(description="The artifact's file is missing from the artifact storage."),
        },
    )
    def get(self, request: Request, pk: int) -> HttpResponseBase:
        artifact = Artifact.objects.select_related("version__model__team").filter(pk=pk).first()
        if artifact is None:
            raise not_found()
        version = artifact.version
        team = version.model.team
        self.viewable(team)
        etag = f'"{artifact.sha256}"'
        if etag in parse_etags(request.headers.get("If-None-Match", "")):
            # The client holds these bytes already: nothing is sent, so nothing is downloaded.
            not_modified = HttpResponseNotModified()
            not_modified["ETag"] = etag
            return not_modified
        blob = _open_blob(artifact)
        response = FileResponse(blob, content_type="application/octet-stream")
        filename = download_filename(artifact)
        response["Content-Disposition"] = _attachment(filename)
        response["Content-Length"] = str(artifact.size)
        response["ETag"] = etag
        response["X-Slipway-SHA256"] = artifact.sha256
        response["Cache-Control"] = "private"
        try:
            self.audit(
                "artifact.downloaded",
                artifact,
                team,
                after={
                    "name": artifact.name,
                    "kind": artifact.kind,
                    "sha256": artifact.sha256,
                    "size": artifact.size,
                    "version_id": version.pk,
                    "filename": filename,
                },
            )
        except BaseException:
            response.close()  # no download without its audit record; the file is not left open
            raise
        return response


def _open_blob(artifact: Artifact) -> Any:
    """The artifact's stored file, open for reading; a 410 when it is gone, a 409 when the
    stored bytes can't be the artifact's (another size): never a 500 or a truncated download."""
    storage = artifact_storage()
    what = f"The file of artifact {artifact.pk} ({artifact.name} of {artifact.version})"
    redo = (
        # Blobs are stored by sha256: uploading the same file again puts this copy back too.
        "upload the same file again"
        if artifact.kind in (ArtifactKind.SOURCE, ArtifactKind.CALIBRATION, ArtifactKind.VALIDATION)
        else "re-run the version's pipeline to build a new one"
    )
    try:
        if not storage.exists(artifact.storage_key):
            raise FileNotFoundError(artifact.storage_key)
        stored_size = storage.size(artifact.storage_key)
        blob = storage.open(artifact.storage_key, "rb")
    except FileNotFoundError:
        raise ApiError(
            "artifact_missing",
            f"{what} is missing from Slipway's artifact storage, so it can't be downloaded. Ask an admin to "
            f"restore the artifact storage from a backup, or {redo}.",
            status.HTTP_410_GONE,
        ) from None
    if stored_size != artifact.size:
        blob.close()
        raise Conflict(
            "artifact_damaged",
            f"{what} in Slipway's artifact storage has {stored_size} bytes but the artifact has {artifact.size}, "
            f"so the stored copy is damaged and was not sent. Ask an admin to restore it from a backup, or {redo}.",
        )
    return blob


# ---- reports ----------------------------------------------------------------------------


@extend_schema_field(REPORTS_SCHEMA)
class ReportsField(serializers.JSONField):
    """The version's reports, typed in the schema as VersionDetail's `reports`."""


class VersionReportSerializer(serializers.Serializer):
    version = VersionRefSerializer()
    run_id = serializers.IntegerField(help_text="The pipeline run the reports come from: the version's latest.")
    run_status = serializers.CharField()
    reports = ReportsField()


def version_reports(version: ModelVersion) -> dict[str, Any]:
    """Each finished step's report from the latest run, as VersionDetail shows them: by step
    kind, then by profile for the steps that run per hardware profile. A 409 when no step of
    the latest run has finished yet, so a download is never an empty file without a word."""
    run = version.runs.order_by("-id").first()
    reports: dict[str, Any] = {}
    if run is not None:
        for job in run.jobs.select_related("profile").order_by("sequence"):
            if job.status != JobStatus.SUCCEEDED or job.result is None:
                continue
            if job.profile is not None:
                reports.setdefault(job.kind, {})[job.profile.slug] = job.result
            else:
                reports[job.kind] = job.result
    if run is None or not reports:
        raise Conflict(
            "no_reports",
            f"{version} has no finished pipeline step yet, so there is no report to download. "
            "Wait for its pipeline to finish (the version page, or `slipway report`), then try again.",
        )
    return {"version": version_payload(version), "run_id": run.pk, "run_status": run.status, "reports": reports}


CSV_COLUMNS = ("report", "profile", "variant", "metric", "value")
# Step reports read per profile, in pipeline order; import and inspect run once per version.
_PROFILE_REPORTS = ("validate", "optimize", "parity", "benchmark", "recommend")
_SCALARS = (str, int, float, bool)


def _scalars(data: Any, prefix: str = "", depth: int = 3) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for each number, string or flag in `data`, through nested objects;
    lists (raw samples, op lists) are left to the JSON download."""
    if not isinstance(data, dict) or depth < 0:
        return
    for key, value in sorted(data.items()):  # stored JSON keeps no order (jsonb): one a reader can follow
        name = f"{prefix}{key}"
        if isinstance(value, _SCALARS) or value is None:
            if value is not None and value != "":
                yield name, value
        elif isinstance(value, dict):
            yield from _scalars(value, f"{name}.", depth - 1)


_POINT_KEYS = ("batch_size", "batch", "concurrency")  # in the metric's name already


def _point_label(point: dict[str, Any]) -> str:
    batch = point.get("batch_size", point.get("batch"))
    return f"batch{batch}.concurrency{point.get('concurrency', 1)}."


def _report_rows(kind: str, profile: str, report: Any) -> Iterator[tuple[str, str, str, str, Any]]:
    """One report as (report, profile, variant, metric, value) rows."""
    if not isinstance(report, dict):
        return
    if kind == "validate":
        for backend, answer in (report.get("reports") or {}).items():
            if isinstance(answer, dict):
                for metric in ("verdict", "runtime_version", "summary"):
                    if answer.get(metric) not in (None, ""):
                        yield kind, profile, backend, metric, answer[metric]
        matrix = report.get("matrix") or {}
        if isinstance(matrix, dict) and "problems" in matrix:
            yield kind, profile, "", "operators_with_problems", matrix["problems"]
    elif kind == "optimize":
        for variant in report.get("variants") or []:
            if isinstance(variant, dict):
                for metric in ("backend", "precision", "format", "pass_name", "artifact_id"):
                    if variant.get(metric) not in (None, ""):
                        yield kind, profile, str(variant.get("name", "")), metric, variant[metric]
        for field, metric in (("errors", "error"), ("skipped", "skipped")):
            for backend, why in (report.get(field) or {}).items():
                yield kind, profile, backend, metric, why
    elif kind == "parity":
        for name, verdict in (report.get("variants") or {}).items():
            if not isinstance(verdict, dict):
                continue
            for metric in ("passed", "samples", "backend", "error"):
                if verdict.get(metric) not in (None, ""):
                    yield kind, profile, name, metric, verdict[metric]
            for output in verdict.get("outputs") or []:
                if isinstance(output, dict):
                    label = f"{output.get('name', '')}."
                    for metric, value in _scalars({k: v for k, v in output.items() if k != "name"}, label):
                        yield kind, profile, name, metric, value
            for reason in verdict.get("reasons") or []:
                yield kind, profile, name, "reason", reason
    elif kind == "benchmark":
        entries = {"original": report.get("baseline") or {}, **(report.get("variants") or {})}
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                continue
            for metric in ("backend", "runtime_version", "error"):
                if entry.get(metric) not in (None, ""):
                    yield kind, profile, name, metric, entry[metric]
            for point in entry.get("points") or []:
                if isinstance(point, dict):
                    figures = {k: v for k, v in point.items() if k not in _POINT_KEYS}
                    for metric, value in _scalars(figures, _point_label(point), depth=0):
                        yield kind, profile, name, metric, value
    elif kind == "recommend":
        winner = report.get("winner") or {}
        yield kind, profile, "", "winner", winner.get("name") if isinstance(winner, dict) else ""
        for metric in ("objective", "statistic", "use_baseline", "baseline_value", "summary"):
            if report.get(metric) not in (None, ""):
                yield kind, profile, "", metric, report[metric]
        candidates = [report.get("winner"), report.get("runner_up"), *(report.get("others") or [])]
        for candidate in candidates:
            if isinstance(candidate, dict):
                name = str(candidate.get("name", ""))
                for metric, value in _scalars({k: v for k, v in candidate.items() if k != "name"}, depth=0):
                    yield kind, profile, name, metric, value
    else:  # import, inspect: the version's own figures
        for metric, value in _scalars(report, depth=1):
            yield kind, profile, "", metric, value


def report_rows(reports: dict[str, Any]) -> Iterator[tuple[str, str, str, str, Any]]:
    """Every report of a version as (report, profile, variant, metric, value) rows."""
    for kind in ("import", "inspect"):
        if kind in reports:
            yield from _report_rows(kind, "", reports[kind])
    for kind in _PROFILE_REPORTS:
        for profile, report in (reports.get(kind) or {}).items():
            yield from _report_rows(kind, profile, report)


def _cell(value: Any) -> str:
    """A CSV cell. A text that a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
    return str(value)


def reports_csv(reports: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in report_rows(reports):
        writer.writerow([_cell(cell) for cell in row])
    return out.getvalue()


class VersionReportDownload(DownloadView):
    """Download a version's reports (op support, variants, parity, benchmarks, recommendation)
    from its latest pipeline run: ?format=json (default) as VersionDetail's `reports`, or
    ?format=csv with one row per (report, profile, variant, metric, value)."""

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["json", "csv"], description="json (default) or csv")],
        responses={
            (200, "application/json"): OpenApiResponse(VersionReportSerializer, description="The reports, as JSON."),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="The reports, one row per (report, profile, variant, metric, value)."
            ),
            409: OpenApiResponse(description="No step of the version's latest pipeline run has finished yet."),
        },
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        kind = request.query_params.get("format", "json")
        if kind not in ("json", "csv"):
            raise ApiError("invalid_format", f"Unknown report format '{kind}'; use json or csv.")
        version = ModelVersion.objects.select_related("model__team").filter(pk=pk).first()
        if version is None:
            raise not_found()
        team = version.model.team
        self.viewable(team)
        bundle = version_reports(version)
        if kind == "csv":
            response = HttpResponse(reports_csv(bundle["reports"]), content_type="text/csv; charset=utf-8")
        else:
            response = HttpResponse(json.dumps(bundle, indent=2), content_type="application/json")
        filename = f"{safe_name(f'{version.model.slug}-v{version.number}-report')}.{kind}"
        response["Content-Disposition"] = _attachment(filename)
        self.audit(
            "version.report_downloaded",
            version,
            team,
            after={"format": kind, "run_id": bundle["run_id"], "reports": sorted(bundle["reports"])},
        )
        return response


# ---- decision evidence ------------------------------------------------------------------


class DecisionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField(help_text="approve, reject or revoke")
    actor = serializers.CharField(help_text="The reviewer's username.")
    created_at = serializers.DateTimeField()
    comment = serializers.CharField(allow_blank=True)
    override_reason = serializers.CharField(allow_blank=True)
    gates_passed = serializers.BooleanField()


class EvidenceBundleSerializer(serializers.Serializer):
    decision = DecisionRefSerializer()
    version = VersionRefSerializer()
    gates = GateSerializer(many=True, help_text="Each gate's result when the decision was made.")
    evidence = serializers.JSONField(help_text="The evidence snapshot the reviewer decided on.")
    evidence_sha256 = serializers.CharField(
        help_text="The sha256 the decision is bound to; the evidence hashes to it (checked before sending)."
    )
    hash_method = serializers.CharField(help_text="How to recompute evidence_sha256 from evidence.")


HASH_METHOD = (
    "sha256 of `evidence` as canonical JSON: keys sorted, no whitespace (separators ',' and ':'), non-ASCII "
    "escaped; in Python: hashlib.sha256(json.dumps(evidence, sort_keys=True, separators=(',', ':'), "
    "ensure_ascii=True).encode()).hexdigest()"
)


class DecisionEvidenceDownload(DownloadView):
    """Download the evidence a review decision was made on (the snapshot, its sha256, each
    gate's result, who decided, when and why) as one JSON file. The evidence is checked
    against the decision's hash first: a bundle that would not verify is refused (409)."""

    @extend_schema(
        responses={
            (200, "application/json"): OpenApiResponse(
                EvidenceBundleSerializer, description="The evidence bundle, as an attachment."
            ),
            409: OpenApiResponse(description="The stored evidence does not hash to the decision's sha256."),
        },
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        decision = Decision.objects.select_related("version__model__team", "actor").filter(pk=pk).first()
        if decision is None:
            raise not_found()
        version = decision.version
        team = version.model.team
        self.viewable(team)
        if not decision.evidence_sha256:
            raise Conflict(
                "no_evidence",
                f"Decision {decision.pk} ({decision.get_kind_display().lower()} {version}) was made without an "
                "evidence snapshot (the version had no finished pipeline), so there is no evidence to download.",
            )
        computed = evidence_hash(decision.evidence)
        if computed != decision.evidence_sha256:
            raise Conflict(
                "evidence_mismatch",
                f"The evidence stored with decision {decision.pk} hashes to {computed[:12]}..., not to the "
                f"{decision.evidence_sha256[:12]}... recorded when it was made, so it was changed afterwards and "
                "was not sent. Ask an admin to check the database and the audit trail.",
            )
        bundle = {
            "decision": {
                "id": decision.pk,
                "kind": decision.kind,
                "actor": decision.actor.get_username(),
                "created_at": decision.created_at.isoformat(),
                "comment": decision.comment,
                "override_reason": decision.override_reason,
                "gates_passed": decision.gates_passed,
            },
            "version": version_payload(version),
            "gates": decision.gates,
            "evidence": decision.evidence,
            "evidence_sha256": decision.evidence_sha256,
            "hash_method": HASH_METHOD,
        }
        response = HttpResponse(json.dumps(bundle, indent=2), content_type="application/json")
        filename = safe_name(f"{version.model.slug}-v{version.number}-decision-{decision.pk}-evidence.json")
        response["Content-Disposition"] = _attachment(filename)
        response["X-Slipway-Evidence-SHA256"] = decision.evidence_sha256
        self.audit(
            "decision.evidence_downloaded",
            decision,
            team,
            after={"decision_id": decision.pk, "version_id": version.pk, "evidence_sha256": decision.evidence_sha256},
        )
        return response
