"""Review and policy routes."""

from django.urls import path

from apps.approvals.api import views

urlpatterns = [
    path("versions/<int:pk>/review/", views.ReviewView.as_view(), name="version-review"),
    path("versions/<int:pk>/approve/", views.ApproveView.as_view(), name="version-approve"),
    path("versions/<int:pk>/reject/", views.RejectView.as_view(), name="version-reject"),
    path("versions/<int:pk>/revoke/", views.RevokeView.as_view(), name="version-revoke"),
    path("versions/<int:pk>/rerun/", views.RerunView.as_view(), name="version-rerun"),
    path("versions/<int:pk>/decisions/", views.DecisionList.as_view(), name="version-decisions"),
    path("decisions/<int:pk>/", views.DecisionDetail.as_view(), name="decision-detail"),
    path("policies/", views.PolicyListCreate.as_view(), name="policy-list"),
    path("policies/kinds/", views.PolicyKindList.as_view(), name="policy-kinds"),
    path("policies/<int:pk>/", views.PolicyDetail.as_view(), name="policy-detail"),
]
