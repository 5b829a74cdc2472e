"""The browser app's sign-in route."""

from django.urls import path

from apps.web.api import views

urlpatterns = [
    path("session/", views.SessionView.as_view(), name="session"),
]
