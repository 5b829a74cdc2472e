"""API representations of the approvals app: what its endpoints read and write."""

from __future__ import annotations

from rest_framework import serializers

from apps.approvals.models import Decision, Policy
from apps.deployments.api.serializers import OptionSpecSerializer


class DecisionSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", read_only=True)
    version_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Decision
        fields = [
            "id",
            "version_id",
            "kind",
            "actor",
            "comment",
            "evidence_sha256",
            "gates",
            "gates_passed",
            "override_reason",
            "single_reviewer",
            "created_at",
        ]


class DecisionDetailSerializer(DecisionSerializer):
    class Meta(DecisionSerializer.Meta):
        fields = [*DecisionSerializer.Meta.fields, "evidence"]


class GateSerializer(serializers.Serializer):
    policy_id = serializers.IntegerField(
        allow_null=True,
        help_text="Null for the built-in measured_evidence gate, which fails on a profile with nothing measured.",
    )
    name = serializers.CharField()
    kind = serializers.CharField(help_text="A policy kind, or measured_evidence for the built-in gate.")
    profile = serializers.CharField()
    passed = serializers.BooleanField()
    value = serializers.JSONField(allow_null=True)
    threshold = serializers.JSONField(allow_null=True)
    message = serializers.CharField()


class VersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField()
    model = serializers.CharField()
    number = serializers.IntegerField()
    status = serializers.CharField()
    url = serializers.CharField()


class ApprovalStateSerializer(serializers.Serializer):
    approved = serializers.BooleanField()
    current = serializers.BooleanField(help_text="The approval still matches the version's evidence.")
    decision_id = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()


class FourEyesSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(
        help_text="The rule applies to this version: the team followed it at the upload or has turned it on since "
        "(turning it off applies only to later uploads)."
    )
    you_uploaded = serializers.BooleanField()
    blocks_you = serializers.BooleanField(
        help_text="The rule stops you deciding this version now: you uploaded it and it awaits review."
    )


class ReviewSerializer(serializers.Serializer):
    version = VersionRefSerializer()
    evidence = serializers.JSONField(help_text="The snapshot an approval binds to.")
    evidence_sha256 = serializers.CharField()
    gates = GateSerializer(many=True)
    gates_passed = serializers.BooleanField()
    approval = ApprovalStateSerializer()
    four_eyes = FourEyesSerializer()
    you_can_review = serializers.BooleanField()


class RerunSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    version = VersionRefSerializer()


class PolicySerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", read_only=True)
    model = serializers.SerializerMethodField()
    profile = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True)

    class Meta:
        model = Policy
        fields = [
            "id",
            "team",
            "model",
            "name",
            "kind",
            "profile",
            "params",
            "enabled",
            "created_by",
            "created_at",
            "updated_at",
        ]

    def get_model(self, policy: Policy) -> str | None:
        return policy.model.slug if policy.model else None

    def get_profile(self, policy: Policy) -> str | None:
        return policy.profile.slug if policy.profile else None


class PolicyKindSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="The value of a policy's `kind`.")
    label = serializers.CharField(help_text="The kind's name for people.")  # type: ignore[assignment]
    help = serializers.CharField(help_text="What the params look like, in words.")
    params = OptionSpecSerializer(many=True, help_text="The parameters the kind takes, each checked as declared.")
    at_least_one = serializers.BooleanField(
        help_text="Whether at least one of the (each optional) parameters must be given."
    )
