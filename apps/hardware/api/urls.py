"""Routes of the hardware app: hardware profiles, the worker fleet, devices and their agents."""

from django.urls import path

from apps.hardware.api import views

urlpatterns = [
    path("profiles/", views.HardwareProfileList.as_view(), name="profile-list"),
    path("workers/", views.WorkerList.as_view(), name="worker-list"),
    path("devices/", views.DeviceList.as_view(), name="device-list"),
    path("devices/enrollments/", views.DeviceEnrollmentCreate.as_view(), name="device-enrollment-create"),
    path("devices/<int:pk>/revoke/", views.DeviceRevoke.as_view(), name="device-revoke"),
    path("agent/register/", views.AgentRegister.as_view(), name="agent-register"),
    path("agent/beat/", views.AgentBeat.as_view(), name="agent-beat"),
    path("agent/rotate/", views.AgentRotate.as_view(), name="agent-rotate"),
    path("agent/lease/", views.AgentLease.as_view(), name="agent-lease"),
    path("agent/jobs/<int:job>/progress/", views.AgentLeaseProgress.as_view(), name="agent-lease-progress"),
    path("agent/jobs/<int:job>/result/", views.AgentLeaseResult.as_view(), name="agent-lease-result"),
    path(
        "agent/jobs/<int:job>/artifacts/<int:artifact>/",
        views.AgentLeaseArtifact.as_view(),
        name="agent-lease-artifact",
    ),
]
