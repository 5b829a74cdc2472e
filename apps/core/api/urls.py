"""All routes of the public REST API (/api/v1/)."""

from django.urls import include, path

from apps.registry.api import views as registry
from apps.registry.api.compare import Compare
from apps.runtimes.api import views as runtimes

urlpatterns = [
    path("teams/", registry.TeamList.as_view(), name="team-list"),
    path("models/", registry.ModelListCreate.as_view(), name="model-list"),
    path("models/<slug:slug>/", registry.ModelDetail.as_view(), name="model-detail"),
    path("models/<slug:slug>/versions/", registry.VersionListUpload.as_view(), name="version-list"),
    path("versions/", registry.VersionList.as_view(), name="version-list-all"),
    path("versions/<int:pk>/", registry.VersionDetail.as_view(), name="version-detail"),
    path("jobs/<int:pk>/", registry.JobDetail.as_view(), name="job-detail"),
    path("compare/", Compare.as_view(), name="compare"),
    path("profiles/", runtimes.HardwareProfileList.as_view(), name="profile-list"),
    path("workers/", runtimes.WorkerList.as_view(), name="worker-list"),
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.approvals.api.urls")),
    path("", include("apps.audit.api.urls")),
    path("", include("apps.webhooks.api.urls")),
    path("", include("apps.deployments.api.urls")),
    path("", include("apps.web.api.urls")),
]
