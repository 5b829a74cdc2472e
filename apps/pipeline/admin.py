from django.contrib import admin

from apps.pipeline.models import Job, PipelineRun


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
