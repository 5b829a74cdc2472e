"""Read-only admin pages: changes go through apps.webhooks.services (URL check, permission,
audit trail), which a superuser can use through the API. The signing secret is never shown:
EncryptedTextField is not editable, so no admin form renders it."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.webhooks.models import Webhook, WebhookDelivery


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Webhook)
class WebhookAdmin(_ReadOnlyAdmin):
    list_display = ("name", "team", "url", "active", "allow_private", "created_by", "created_at")
    list_filter = ("active", "allow_private", "team")
    search_fields = ("name", "url")
    exclude = ("secret",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_ReadOnlyAdmin):
    list_display = ("id", "webhook", "event", "status", "attempts", "last_response_code", "created_at", "delivered_at")
    list_filter = ("status", "event")
    search_fields = ("event_id",)
    list_select_related = ("webhook",)
