"""Read-only admin pages: changes go through apps.deployments' targets and deploying modules (URL check, permission,
audit trail, the worker), which a superuser can use through the API. Credentials are never
shown: EncryptedTextField is not editable, so no admin form renders it."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.deployments.models import Deployment, ServingTarget, TargetMetricSample


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ServingTarget)
class ServingTargetAdmin(_ReadOnlyAdmin):
    list_display = ("slug", "name", "team", "kind", "url", "backend_mode", "profile", "enabled", "healthy")
    list_filter = ("kind", "enabled", "healthy", "team")
    search_fields = ("slug", "name", "url")
    exclude = ("credentials",)


@admin.register(Deployment)
class DeploymentAdmin(_ReadOnlyAdmin):
    list_display = ("id", "target", "model", "version", "variant", "triton_version", "status", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("triton_model", "model__slug")
    list_select_related = ("target__team", "model", "version__model")


@admin.register(TargetMetricSample)
class TargetMetricSampleAdmin(_ReadOnlyAdmin):
    list_display = ("id", "target", "model_name", "model_version", "sampled_at", "request_success", "request_failure")
    list_filter = ("target",)
    search_fields = ("model_name",)
    list_select_related = ("target__team",)
