"""Review decisions bound to their evidence, and the policies (gates) versions are held to."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.accounts.models import Team


class PolicyKind(models.TextChoices):
    MAX_ACCURACY_DRIFT = "max_accuracy_drift", "Max accuracy drift"
    MAX_P99_LATENCY = "max_p99_latency", "Max p99 latency"
    REQUIRED_BACKENDS = "required_backends_supported", "Required backends fully supported"
    NO_CPU_FALLBACK = "no_cpu_fallback", "No CPU fallback on a GPU profile"


class Policy(models.Model):
    """A gate every version of a team (or of one model) must pass to be approved without an
    override. `params` depend on the kind (see apps.approvals.gates); `profile` limits the
    gate to one hardware profile (empty: every profile the version was built for)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="policies")
    model = models.ForeignKey(
        "registry.RegisteredModel", on_delete=models.CASCADE, null=True, blank=True, related_name="policies"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=40, choices=PolicyKind.choices)
    profile = models.ForeignKey(
        "runtimes.HardwareProfile", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    params = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.team.slug}: {self.name}"


class DecisionKind(models.TextChoices):
    APPROVE = "approve", "Approved"
    REJECT = "reject", "Rejected"
    REVOKE = "revoke", "Revoked"


class Decision(models.Model):
    """An approver's yes, no, or withdrawal of a yes, with the evidence it was made on.

    `evidence` is the snapshot the approver saw (artifact hashes, runtimes and versions,
    hardware profile, benchmark and parity numbers, recommendation) and `evidence_sha256`
    its hash: an approval only applies while the version's current evidence hashes the same.
    Decisions are never edited; a version's history is its list of decisions.
    """

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="decisions")
    kind = models.CharField(max_length=10, choices=DecisionKind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    comment = models.TextField(blank=True)
    evidence = models.JSONField(default=dict)
    evidence_sha256 = models.CharField(max_length=64)
    gates = models.JSONField(default=list, help_text="Each gate's result when the decision was made.")
    gates_passed = models.BooleanField(default=True)
    override_reason = models.TextField(
        blank=True, help_text="Why the version was approved although a gate failed (required then)."
    )
    single_reviewer = models.BooleanField(
        default=False,
        help_text="The approver also uploaded the version: allowed only while the team works in single-reviewer "
        "mode (four-eyes off), and shown on the decision wherever it appears.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["version", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.version} by {self.actor}"
