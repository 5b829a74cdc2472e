from django.contrib import admin

from apps.registry.models import Artifact, ModelVersion, RegisteredModel


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "team", "created_by", "created_at")
    list_filter = ("team",)
    search_fields = ("name", "slug")


class ArtifactInline(admin.TabularInline):
    model = Artifact
    fk_name = "version"
    extra = 0
    fields = ("kind", "name", "format", "sha256", "size", "parent", "job", "created_at")
    readonly_fields = fields
    can_delete = False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "framework", "status", "created_by", "created_at")
    list_filter = ("status", "framework", "model__team")
    search_fields = ("model__slug", "model__name")
    # Status changes go through the state machine (apps.registry.lifecycle), not a form.
    readonly_fields = ("status", "status_reason", "status_changed_at", "source_artifact", "number")
    inlines = [ArtifactInline]


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "format", "version", "sha256", "size", "created_at")
    list_filter = ("kind", "format")
    search_fields = ("sha256", "name", "original_filename")
    readonly_fields = (
        "sha256",
        "size",
        "storage_key",
        "parent",
        "job",
        "tool_versions",
        "metadata",
    )
