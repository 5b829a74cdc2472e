"""API representations of webhooks and deliveries. The signing secret is in none of them:
the views add it to the response of a create or a rotation, once."""

from __future__ import annotations

from rest_framework import serializers

from apps.webhooks.models import Webhook, WebhookDelivery
from apps.webhooks.services import NAME_LIMIT


class WebhookSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    allow_private_by = serializers.CharField(source="allow_private_by.username", read_only=True, default=None)

    class Meta:
        model = Webhook
        fields = [
            "id",
            "team",
            "name",
            "url",
            "events",
            "active",
            "allow_private",
            "allow_private_by",
            "allow_private_at",
            "created_by",
            "created_at",
            "updated_at",
            "secret_rotated_at",
        ]
        read_only_fields = fields


class WebhookCreateInput(serializers.Serializer):
    team = serializers.CharField(required=False, allow_blank=True, default="", help_text="Team slug.")
    # Blank and unknown values get the service's sentences.
    name = serializers.CharField(max_length=NAME_LIMIT, allow_blank=True)
    url = serializers.CharField(max_length=2000, help_text="http(s) URL that receives the POSTs.")
    events = serializers.ListField(child=serializers.CharField(max_length=40), allow_empty=True)
    active = serializers.BooleanField(required=False, default=True)
    allow_private = serializers.BooleanField(
        required=False, default=False, help_text="Allow a private/loopback address (team admins only)."
    )


class WebhookUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_LIMIT, allow_blank=True, required=False)
    url = serializers.CharField(max_length=2000, required=False)
    events = serializers.ListField(child=serializers.CharField(max_length=40), allow_empty=True, required=False)
    active = serializers.BooleanField(required=False)
    allow_private = serializers.BooleanField(required=False)


class DeliverySerializer(serializers.ModelSerializer):
    webhook_id = serializers.IntegerField(read_only=True)
    redelivery_of_id = serializers.IntegerField(read_only=True, allow_null=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, default=None)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "webhook_id",
            "event_id",
            "event",
            "status",
            "attempts",
            "max_attempts",
            "next_attempt_at",
            "last_response_code",
            "last_response_body",
            "error",
            "duration_ms",
            "delivered_at",
            "created_at",
            "redelivery_of_id",
            "requested_by",
            "payload",
            "attempt_log",
        ]
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    """A webhook as created or with a rotated secret: the only responses holding the secret."""

    secret = serializers.CharField(help_text="The signing secret: shown in this response only.")
    secret_notice = serializers.CharField()

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret", "secret_notice"]
