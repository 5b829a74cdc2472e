"""API representations of the accounts app: what its endpoints read and write."""

from __future__ import annotations

from rest_framework import serializers

from apps.accounts.models import ApiToken, Invitation, Membership, Role, Team
from apps.accounts.scoping import role_in

REVIEW_ROLES = (Role.APPROVER, Role.ADMIN)


def reviewer_count(team: Team) -> int:
    """Members whose role may approve (apps.accounts.permissions: approvers and admins)."""
    return team.memberships.filter(role__in=REVIEW_ROLES).count()


class TeamDetailSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    members = serializers.IntegerField(source="memberships.count", read_only=True)
    reviewers = serializers.SerializerMethodField(
        help_text="Members who may approve (approvers and admins). With four-eyes on, a version needs a reviewer "
        "other than its uploader."
    )

    class Meta:
        model = Team
        fields = ["slug", "name", "four_eyes", "role", "members", "reviewers", "created_at"]

    def get_role(self, team: Team) -> str | None:
        return role_in(self.context["request"].user, team)

    def get_reviewers(self, team: Team) -> int:
        return reviewer_count(team)


class InvitationSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    accepted_by = serializers.CharField(source="accepted_by.username", read_only=True, default=None, allow_null=True)
    state = serializers.ChoiceField(choices=["pending", "accepted", "revoked", "expired"], read_only=True)
    prefix = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = [
            "id",
            "role",
            "note",
            "prefix",
            "state",
            "created_by",
            "created_at",
            "expires_at",
            "accepted_by",
            "accepted_at",
            "revoked_at",
        ]

    def get_prefix(self, invitation: Invitation) -> str:
        return f"slwinv_{invitation.key_id}_…"


class InvitationCreatedSerializer(InvitationSerializer):
    code = serializers.CharField(help_text="The one-time code: shown in this response only.")
    link = serializers.CharField(help_text="The browser link that redeems the code (the code is in its fragment).")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "code", "link"]


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True, help_text="Empty when none is set.")

    class Meta:
        model = Membership
        fields = ["username", "email", "role", "created_at"]


class TokenSerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)
    prefix = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at", "active"]

    def get_prefix(self, token: ApiToken) -> str:
        return f"slw_{token.key_id}_…"


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.CharField(help_text="The token's value: shown in this response only.")
    message = serializers.CharField()

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token", "message"]
