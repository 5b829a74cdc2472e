"""URL configuration: the browser app, admin, health check, and the public REST API under /api/v1/."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from apps.core.views import admin_login, healthz
from apps.web.views import spa

urlpatterns = [
    # The browser app: one page for /app/ and every route under it (its router draws the rest).
    path("", RedirectView.as_view(url="/app/", permanent=False)),
    re_path(r"^app(?:/(?P<path>.*))?$", spa, name="app"),
    # Ahead of the admin's own route for it: its login form, rate-limited like the API's sign-in.
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("apps.core.api.urls")),
    # The OpenAPI 3 schema of /api/v1 (docs/openapi.yaml is its committed copy) and its readers.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]

# Under /api/ even a path no route matches, a request Django itself refuses, or a crash,
# answers in the API's error body (with DEBUG off, as in every settings module by default).
handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
