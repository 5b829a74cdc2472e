"""API representations of the web app: what its endpoints read and write."""

from __future__ import annotations

from rest_framework import serializers


class TeamRoleSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    role = serializers.CharField(help_text="viewer, data_scientist, approver or admin")
    four_eyes = serializers.BooleanField(help_text="Whoever uploaded a version may not approve it.")
    reviewers = serializers.IntegerField(help_text="Members who may approve (approvers and admins).")


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField()
    is_superuser = serializers.BooleanField(help_text="Acts as an admin in every team.")
    teams = TeamRoleSerializer(many=True)
