"""Routes of the registry: teams, models, versions and their jobs."""

from django.urls import path

from apps.registry.api import downloads, graph, views

urlpatterns = [
    path("teams/", views.TeamList.as_view(), name="team-list"),
    path("models/", views.ModelListCreate.as_view(), name="model-list"),
    path("models/<slug:slug>/", views.ModelDetail.as_view(), name="model-detail"),
    path("models/<slug:slug>/versions/", views.VersionListUpload.as_view(), name="version-list"),
    path("versions/", views.VersionList.as_view(), name="version-list-all"),
    path("versions/<int:pk>/", views.VersionDetail.as_view(), name="version-detail"),
    path("jobs/<int:pk>/", views.JobDetail.as_view(), name="job-detail"),
    path("artifacts/<int:pk>/download/", downloads.ArtifactDownload.as_view(), name="artifact-download"),
    path("versions/<int:pk>/graph/", graph.VersionGraph.as_view(), name="version-graph"),
    path("versions/<int:pk>/report/", downloads.VersionReportDownload.as_view(), name="version-report"),
    path("decisions/<int:pk>/evidence/", downloads.DecisionEvidenceDownload.as_view(), name="decision-evidence"),
]
