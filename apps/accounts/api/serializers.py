"""API representations of the accounts app: what its endpoints read and write."""

from __future__ import annotations

from rest_framework import serializers

from apps.accounts.models import ApiToken, Membership, Team
from apps.accounts.scoping import role_in


class TeamDetailSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    members = serializers.IntegerField(source="memberships.count", read_only=True)

    class Meta:
        model = Team
        fields = ["slug", "name", "four_eyes", "role", "members", "created_at"]

    def get_role(self, team: Team) -> str | None:
        return role_in(self.context["request"].user, team)


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
