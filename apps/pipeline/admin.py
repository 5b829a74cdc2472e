from django.contrib import admin

from apps.pipeline.models import InspectionGraph, Job, PipelineRun, Trial


class JobInline(admin.TabularInline):
    model = Job
    extra = 0
    fields = ("sequence", "kind", "status", "progress", "attempt", "worker_host", "error")
    readonly_fields = fields
    can_delete = False


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ("id", "version", "status", "created_at", "finished_at")
    list_filter = ("status",)
    inlines = [JobInline]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "progress",
        "attempt",
        "queue",
        "worker_host",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "kind", "queue")
    # Job state is written by workers through apps.pipeline.services; the admin only shows it.
    readonly_fields = [f.name for f in Job._meta.fields]


@admin.register(InspectionGraph)
class InspectionGraphAdmin(admin.ModelAdmin):
    """The graph an inspect job read for the browser's drawing: shown, never edited."""

    list_display = ("id", "job", "created_at")
    list_select_related = ("job__run__version__model",)
    readonly_fields = ("job", "data", "created_at")

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ("id", "version", "status", "input_name", "requested_by", "created_at", "finished_at")
    list_filter = ("status",)
    # Trials are written by the API and the worker (apps.pipeline.trials); the admin only shows them.
    readonly_fields = [f.name for f in Trial._meta.fields]
