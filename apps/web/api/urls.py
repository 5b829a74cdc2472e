"""The browser app's sign-in route."""

from django.urls import path

from apps.web.api import views

urlpatterns = [
    path("session/", views.SessionView.as_view(), name="session"),
    path("invitations/preview/", views.InvitationPreview.as_view(), name="invitation-preview"),
    path("invitations/accept/", views.InvitationAccept.as_view(), name="invitation-accept"),
]
