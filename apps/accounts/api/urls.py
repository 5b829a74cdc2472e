"""Team, member and token routes."""

from django.urls import path

from apps.accounts.api import views

urlpatterns = [
    path("teams/<slug:slug>/", views.TeamDetail.as_view(), name="team-detail"),
    path("teams/<slug:slug>/members/", views.MemberListAdd.as_view(), name="member-list"),
    path("teams/<slug:slug>/members/<str:username>/", views.MemberDetail.as_view(), name="member-detail"),
    path("teams/<slug:slug>/invitations/", views.InvitationListCreate.as_view(), name="invitation-list"),
    path("teams/<slug:slug>/invitations/<int:pk>/", views.InvitationDetail.as_view(), name="invitation-detail"),
    path("tokens/", views.TokenListCreate.as_view(), name="token-list"),
    path("tokens/<int:pk>/", views.TokenDetail.as_view(), name="token-detail"),
]
