"""Serving-target and deployment routes (/api/v1/targets/..., /api/v1/deployments/...)."""

from django.urls import path

from apps.deployments.api import views

urlpatterns = [
    path("targets/", views.TargetListCreate.as_view(), name="target-list"),
    path("targets/kinds/", views.TargetKindList.as_view(), name="target-kinds"),
    path("targets/<int:pk>/", views.TargetDetail.as_view(), name="target-detail"),
    path("targets/<int:pk>/check/", views.TargetCheck.as_view(), name="target-check"),
    path("deployments/", views.DeploymentListCreate.as_view(), name="deployment-list"),
    path("deployments/<int:pk>/", views.DeploymentDetail.as_view(), name="deployment-detail"),
    path("deployments/<int:pk>/metrics/", views.DeploymentMetrics.as_view(), name="deployment-metrics"),
    path("deployments/<int:pk>/rollback/", views.DeploymentRollback.as_view(), name="deployment-rollback"),
    path("deployments/<int:pk>/undeploy/", views.DeploymentUndeploy.as_view(), name="deployment-undeploy"),
]
