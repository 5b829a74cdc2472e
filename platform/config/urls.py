"""URL configuration: admin, health check, and the public REST API under /api/v1/."""

from django.contrib import admin
from django.urls import include, path

from apps.core.views import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("apps.core.api.urls")),
]
