"""All routes of the public REST API (/api/v1/): each app's own, included by module name, so
that core imports no feature app."""

from django.urls import include, path

urlpatterns = [
    path("", include("apps.registry.api.urls")),
    path("", include("apps.pipeline.api.urls")),
    path("", include("apps.hardware.api.urls")),
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.approvals.api.urls")),
    path("", include("apps.audit.api.urls")),
    path("", include("apps.webhooks.api.urls")),
    path("", include("apps.deployments.api.urls")),
    path("", include("apps.web.api.urls")),
]
