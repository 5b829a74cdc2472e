from django.contrib import admin

from apps.hardware.models import Device, DeviceEnrollment, HardwareProfile, Worker


@admin.register(HardwareProfile)
class HardwareProfileAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "device_kind", "backends", "precisions", "queue", "requirements", "enabled")
    list_filter = ("device_kind", "enabled")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "host", "cpu_model", "cores", "queues", "last_heartbeat_at", "stopped_at")
    readonly_fields = [f.name for f in Worker._meta.fields]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    """Devices are enrolled, registered and revoked through the app (apps/hardware/devices.py);
    here they can be read, never given a credential."""

    list_display = ("name", "team", "agent_version", "last_seen_at", "revoked_at")
    list_filter = ("team",)
    readonly_fields = [f.name for f in Device._meta.fields if f.name not in ("id", "key_hash")]
    exclude = ("key_hash",)

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(DeviceEnrollment)
class DeviceEnrollmentAdmin(admin.ModelAdmin):
    list_display = ("key_id", "team", "name", "created_by", "expires_at", "used_at")
    readonly_fields = [f.name for f in DeviceEnrollment._meta.fields if f.name not in ("id", "key_hash")]
    exclude = ("key_hash",)

    def has_add_permission(self, request: object) -> bool:
        return False
