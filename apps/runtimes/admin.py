from django.contrib import admin

from apps.runtimes.models import HardwareProfile


@admin.register(HardwareProfile)
class HardwareProfileAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "device_kind", "backends", "precisions", "queue", "enabled")
    list_filter = ("device_kind", "enabled")
