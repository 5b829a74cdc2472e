from django.contrib import admin

from apps.hardware.models import HardwareProfile, Worker


@admin.register(HardwareProfile)
class HardwareProfileAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "device_kind", "backends", "precisions", "queue", "requirements", "enabled")
    list_filter = ("device_kind", "enabled")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "host", "cpu_model", "cores", "queues", "last_heartbeat_at", "stopped_at")
    readonly_fields = [f.name for f in Worker._meta.fields]
