"""Audit trail routes."""

from django.urls import path

from apps.audit.api import views

urlpatterns = [
    path("audit/", views.AuditEventList.as_view(), name="audit-list"),
    path("audit/export/", views.AuditExport.as_view(), name="audit-export"),
]
