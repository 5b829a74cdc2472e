"""API representation of an audit event: the fields the list and the CSV export show, in order."""

from __future__ import annotations

from rest_framework import serializers

from apps.audit.models import AuditEvent

FIELDS = [
    "id",
    "created_at",
    "actor",
    "actor_id",
    "via",
    "team",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "request_id",
    "ip",
]


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = FIELDS
