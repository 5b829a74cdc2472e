"""Reading and exporting the audit trail.

Team admins and approvers see their teams' events; everyone sees the events they caused
themselves (their tokens, for instance). Filters: ?team=, ?action= (a prefix such as
`version.`), ?actor=, ?object_type=, ?object_id=, ?since= and ?until= (ISO 8601).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import Q, QuerySet
from django.http import StreamingHttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, renderers
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.accounts.models import Membership, Role
from apps.audit.api.serializers import FIELDS, AuditEventSerializer
from apps.audit.models import AuditEvent
from apps.core.api.errors import ApiError
from apps.core.api.schema import query


def visible_events(request: Request) -> QuerySet[AuditEvent]:
    user: Any = request.user
    events = AuditEvent.objects.all()
    if not user.is_superuser:
        teams = Membership.objects.filter(user=user, role__in=(Role.ADMIN, Role.APPROVER)).values("team_id")
        events = events.filter(Q(team_id__in=teams) | Q(actor_id=user.pk))
    params = request.query_params
    if team := params.get("team"):
        events = events.filter(team=team)
    if action := params.get("action"):
        events = events.filter(action__startswith=action)
    if actor := params.get("actor"):
        events = events.filter(actor=actor)
    if object_type := params.get("object_type"):
        events = events.filter(object_type=object_type)
    if object_id := params.get("object_id"):
        events = events.filter(object_id=object_id)
    for name, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
        if value := params.get(name):
            moment = parse_datetime(value)
            if moment is None:
                raise ApiError(
                    "invalid_filter", f"'{name}' must be an ISO 8601 date and time, e.g. 2026-12-01T00:00:00Z."
                )
            events = events.filter(**{lookup: moment})
    return events


FILTERS = [
    query("team", "Team slug"),
    query("action", "Action prefix, e.g. version. or token.created"),
    query("actor", "Username"),
    query("object_type", "e.g. modelversion"),
    query("object_id", "The object's id"),
    query("since", "ISO 8601 date and time (inclusive)"),
    query("until", "ISO 8601 date and time (exclusive)"),
]


@extend_schema_view(get=extend_schema(parameters=FILTERS))
class AuditEventList(generics.ListAPIView):
    """Audit events, newest first (cursor pagination)."""

    serializer_class = AuditEventSerializer
    ordering_fields = ["id", "created_at"]

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return visible_events(self.request)


class AuditExport(APIView):
    """Every matching event as one download, oldest first: ?format=csv (default) or json."""

    # Errors always come as JSON; `format` picks the export's own format (DRF's ?format=
    # override is off in the settings).
    renderer_classes = [renderers.JSONRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=["csv", "json"], description="csv (default) or json"),
            *FILTERS,
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/json"): AuditEventSerializer(many=True)},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        kind = request.query_params.get("format", "csv")
        if kind not in ("csv", "json"):
            raise ApiError("invalid_format", f"Unknown export format '{kind}'; use csv or json.")
        events = visible_events(request).order_by("id")
        if kind == "json":
            response = StreamingHttpResponse(_json_lines(events), content_type="application/json")
        else:
            response = StreamingHttpResponse(_csv_rows(events), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="slipway-audit.{kind}"'
        return response


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        field: (getattr(event, field).isoformat() if field == "created_at" else getattr(event, field))
        for field in FIELDS
    }


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(FIELDS)
    for event in events.iterator(chunk_size=500):
        row = _row(event)
        yield writer.writerow(
            [json.dumps(row[f]) if f in ("before", "after") and row[f] is not None else row[f] for f in FIELDS]
        )


def _json_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    yield "["
    for index, event in enumerate(events.iterator(chunk_size=500)):
        yield ("," if index else "") + json.dumps(_row(event))
    yield "]"
