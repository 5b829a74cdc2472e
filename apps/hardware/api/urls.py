"""Routes of the runtimes app: hardware profiles and the worker fleet."""

from django.urls import path

from apps.hardware.api import views

urlpatterns = [
    path("profiles/", views.HardwareProfileList.as_view(), name="profile-list"),
    path("workers/", views.WorkerList.as_view(), name="worker-list"),
]
