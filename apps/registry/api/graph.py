"""A version's model graph for the browser to draw, with each backend's verdict per node.

The graph is read by the inspect step in the sandbox (`workers.engine.graph_view`) and kept in
its own row (`InspectionGraph`), not in the reports every version page loads; this route serves
it when someone opens the drawing. Each hardware profile's validate report is mapped onto the
drawn nodes here (`workers.engine.graph_support`), so a node the browser draws red is one the
backend refused.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.api.scoping import TeamScoped
from apps.core.api.errors import ApiError
from apps.pipeline.models import InspectionGraph, Job, JobKind, JobStatus
from apps.registry.models import ModelVersion
from workers.engine.graph_support import node_support
from workers.engine.reports import ValidateReport
from workers.engine.typed import read

_SHAPE = {
    "type": "array",
    "items": {"oneOf": [{"type": "integer"}, {"type": "string"}], "nullable": True},
    "description": "Dims: a size, a symbolic name, or null when unknown.",
}

GRAPH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The main graph (`workers/engine/graph_view.py`), nodes in topological order.",
    "properties": {
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "description": "The label support reports give the node."},
                    "op": {"type": "string"},
                    "in": {"type": "array", "items": {"type": "string"}, "description": "Values read ('' = absent)."},
                    "out": {"type": "array", "items": {"type": "string"}},
                    "name": {"type": "string", "description": "The node's own name, where it differs from id."},
                    "dom": {"type": "string", "description": "Operator domain, when not ai.onnx."},
                    "attrs": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "Attributes as short text; tensors as dtype and shape, never data.",
                    },
                    "alt": {"type": "string", "description": "The label backends that number nodes in file order use."},
                    "note": {"type": "string", "description": "Why part of the node is not drawn (its subgraphs)."},
                    "inner": {"type": "integer", "description": "Nodes inside its subgraphs."},
                },
                "required": ["id", "op", "in", "out"],
            },
        },
        "values": {
            "type": "object",
            "description": "Value name -> dtype (t), shape (s), and w: 1 for weights (initializers).",
            "additionalProperties": {
                "type": "object",
                "properties": {"t": {"type": "string"}, "s": _SHAPE, "w": {"type": "integer"}},
            },
        },
        "inputs": {"type": "array", "items": {"type": "string"}},
        "outputs": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["nodes", "values", "inputs", "outputs"],
}


class NodeOutcomeSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["supported", "unsupported", "fallback", "unknown"])
    nodes = serializers.ListField(child=serializers.CharField(), help_text="Node ids (the graph's `id`).")
    reason = serializers.CharField(allow_blank=True)
    device = serializers.CharField(allow_blank=True, help_text="Where these nodes run, when the backend says.")
    after_rewrite = serializers.CharField(
        allow_blank=True, help_text="The rewrite chain after which the backend runs these nodes; empty when none."
    )


class BackendNodesSerializer(serializers.Serializer):
    profile = serializers.CharField()
    backend = serializers.CharField()
    verdict = serializers.CharField(help_text="The backend's verdict on the whole model (full, partial, none...).")
    method = serializers.CharField(allow_blank=True, help_text="How support was found out (runtime, probe...).")
    report_only = serializers.BooleanField(help_text="A reference column: checked, not built for.")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Drawn nodes per status.")
    groups = NodeOutcomeSerializer(many=True, help_text="Every drawn node is in exactly one group.")


@extend_schema_field({**GRAPH_SCHEMA, "nullable": True})
class GraphField(serializers.JSONField):
    pass


class VersionGraphSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    run_id = serializers.IntegerField()
    node_count = serializers.IntegerField(help_text="Nodes of the main graph.")
    omitted = serializers.CharField(
        allow_blank=True, help_text="Why the graph is not drawn (too many nodes); empty when `graph` is given."
    )
    graph = GraphField(allow_null=True)
    support = BackendNodesSerializer(many=True, help_text="Per profile validated, each backend's verdict per node.")
    notes = serializers.ListField(child=serializers.CharField(), help_text="Profiles without a verdict, and why.")


class VersionGraph(TeamScoped, APIView):
    """The version's model graph, from its latest run's inspection, coloured per backend."""

    team_path = "model__team"

    def rows(self) -> QuerySet[ModelVersion]:
        return ModelVersion.objects.select_related("model__team")

    @extend_schema(
        responses={
            200: VersionGraphSerializer,
            404: OpenApiResponse(description="No such version, or no graph yet (inspection not finished, or older)."),
        }
    )
    def get(self, request: Request, pk: int) -> Response:
        version = self.one(pk)
        return Response(version_graph(version))


def version_graph(version: ModelVersion) -> dict[str, Any]:
    """The graph of `version`'s latest run and every validated profile's per-node verdicts; an
    ApiError (404) saying why when there is no graph to draw."""
    run = version.runs.order_by("-id").first()
    inspect = run.jobs.filter(kind=JobKind.INSPECT, status=JobStatus.SUCCEEDED).order_by("-id").first() if run else None
    if run is None or inspect is None:
        raise ApiError(
            "no_graph",
            f"{version} has no graph yet: its model is drawn once the inspect step of its pipeline has finished. "
            "Try again when the pipeline is past inspection.",
            status.HTTP_404_NOT_FOUND,
        )
    stored = InspectionGraph.objects.filter(job=inspect).first()
    if stored is None:
        raise ApiError(
            "no_graph",
            f"{version} was inspected before Slipway drew graphs, so there is no graph to show. "
            "Re-run the pipeline to draw it.",
            status.HTTP_404_NOT_FOUND,
        )
    data = stored.data
    drawn = not data.get("omitted")
    nodes: list[dict[str, Any]] = data.get("nodes") or []
    graph = {
        "nodes": nodes,
        "values": data.get("values") or {},
        "inputs": data.get("inputs") or [],
        "outputs": data.get("outputs") or [],
    }
    validations = run.jobs.filter(kind=JobKind.VALIDATE).select_related("profile").order_by("sequence")
    support, notes = _support(validations, nodes) if drawn else ([], [])
    return {
        "version": version.pk,
        "run_id": run.pk,
        "node_count": data.get("node_count", len(nodes)),
        "omitted": data.get("omitted", ""),
        "graph": graph if drawn else None,
        "support": support,
        "notes": notes,
    }


def _support(jobs: Any, nodes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each validated profile's backends, node by node; a sentence for each profile without a verdict."""
    support: list[dict[str, Any]] = []
    notes: list[str] = []
    for job in jobs:
        profile = job.profile.slug if job.profile else "?"
        if job.status != JobStatus.SUCCEEDED:
            notes.append(_unvalidated(job, profile))
            continue
        report = read(ValidateReport, job.result)
        if report is None:
            notes.append(f"The op-support report for {profile} could not be read; re-run the pipeline to colour it.")
            continue
        support.extend(asdict(each) for each in node_support(nodes, report))
    return support, notes


def _unvalidated(job: Job, profile: str) -> str:
    if job.status == JobStatus.FAILED:
        return f"Op support on {profile} failed ({job.error or 'no reason given'}), so its nodes are not coloured."
    return f"Op support on {profile} is not checked yet ({job.status}); its colours come when it is."
