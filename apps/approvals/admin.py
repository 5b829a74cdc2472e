from django.contrib import admin
from django.http import HttpRequest

from apps.approvals.models import Decision, Policy


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "model", "kind", "profile", "enabled", "updated_at")
    list_filter = ("kind", "enabled", "team")


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ("version", "kind", "actor", "gates_passed", "created_at")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in Decision._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
