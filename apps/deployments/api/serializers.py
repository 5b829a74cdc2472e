"""API representations of serving targets and deployments. Credentials are write-only: no
response holds them, only the names of those set (`credential_keys`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.deployments import metrics, services, targets
from apps.deployments.models import BackendMode, Deployment, ServingTarget
from workers.engine.targets.base import OPTION_TYPES


class TargetHealthSerializer(serializers.Serializer):
    checked_at = serializers.DateTimeField(allow_null=True, help_text="When a worker last asked the server.")
    healthy = serializers.BooleanField(allow_null=True, help_text="Live at the last check; null: never checked.")
    ready = serializers.BooleanField(allow_null=True)
    server_version = serializers.CharField()
    detail = serializers.CharField(help_text="What the check found, as a sentence.")
    check_requested_at = serializers.DateTimeField(allow_null=True, help_text="A check asked for and not done yet.")
    changed_at = serializers.DateTimeField(
        allow_null=True, help_text="Since when `healthy` is what it is (its last change); null: never checked."
    )


class TargetSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", read_only=True)
    profile = serializers.CharField(source="profile.slug", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    allow_private_by = serializers.CharField(source="allow_private_by.username", read_only=True, default=None)
    has_credentials = serializers.SerializerMethodField()
    credential_keys = serializers.SerializerMethodField()
    health = serializers.SerializerMethodField()

    class Meta:
        model = ServingTarget
        fields = [
            "id",
            "team",
            "name",
            "slug",
            "kind",
            "url",
            "repository",
            "backend_mode",
            "profile",
            "options",
            "has_credentials",
            "credential_keys",
            "enabled",
            "allow_private",
            "allow_private_by",
            "allow_private_at",
            "health",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_has_credentials(self, target: ServingTarget) -> bool:
        return target.credentials is not None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_credential_keys(self, target: ServingTarget) -> list[str]:
        return services.credential_keys(target)

    @extend_schema_field(TargetHealthSerializer)
    def get_health(self, target: ServingTarget) -> dict[str, Any]:
        return {
            "checked_at": target.health_checked_at,
            "healthy": target.healthy,
            "ready": target.health_ready,
            "server_version": target.server_version,
            "detail": target.health_detail or ("Not checked yet." if target.health_checked_at is None else ""),
            "check_requested_at": target.health_check_requested_at,
            "changed_at": target.health_changed_at,
        }


_ALLOW_PRIVATE_HELP = (
    "Allow a private or loopback URL or S3 endpoint, e.g. http://127.0.0.1:8000 (team admins only; audited)."
)
_BY_KIND = " One object per kind, by `kind`; GET /targets/kinds/ lists the same specs with their help, for forms."
_OPTIONS_HELP = "Non-secret settings of the kind's driver." + _BY_KIND
_CREDENTIALS_HELP = "Secrets, write-only (never shown again; the answer says which are set)." + _BY_KIND


class KindField(serializers.CharField):
    """A serving-target kind: documented as the kinds there are, checked by the service (whose
    sentence names them) rather than by the serializer."""


class OptionsField(serializers.JSONField):
    """A target's options: in the schema, one object per kind, from its driver's specs."""

    where = "options"


class CredentialsField(OptionsField):
    """A target's credentials: in the schema, one object per kind, from its driver's specs."""

    where = "credentials"


# The schema of these fields is made when the schema is, from the drivers registered then (not
# when this module is imported), as GET /targets/kinds/ is.
class KindFieldSchema(OpenApiSerializerFieldExtension):
    target_class = KindField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        return {"type": "string", "enum": sorted(targets.deployable_kinds())}


class OptionsFieldSchema(OpenApiSerializerFieldExtension):
    target_class = OptionsField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        from workers.engine.targets.base import credential_specs, option_specs, settings_schema
        from workers.engine.targets.registry import DRIVERS

        where = self.target.where
        specs = option_specs if where == "options" else credential_specs
        return {
            "anyOf": [
                settings_schema(specs(driver), title=f"{driver.label} {where} (kind {kind})")
                for kind, driver in sorted(DRIVERS.items())
            ]
        }


class OptionSpecSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The key in the target's options (or credentials), or in a policy's params.")
    type = serializers.ChoiceField(
        choices=list(OPTION_TYPES),
        help_text="string (one of `choices` when set), url (http:// or https://), integer or number (between "
        "`minimum` and `maximum` when set), boolean, path_list (absolute directories), string_list (one or more "
        "non-empty texts, each one of `choices` when set), text_map (an object of names to text; `secret_keys` "
        "belong in the credentials instead) or headers (HTTP header names to single-line values).",
    )
    help = serializers.CharField(help_text="What it is for, in words.")
    # Named as the spec names it; the serializer's metaclass takes it as a field (Field's own
    # `required` attribute is untouched), which the stubs can't tell.
    required = serializers.BooleanField(help_text="Whether a target of the kind must have it.")  # type: ignore[assignment]
    default = serializers.JSONField(allow_null=True, help_text="What the driver uses when it is absent; null: none.")
    choices = serializers.ListField(child=serializers.CharField(), help_text="The allowed values; empty: any.")
    minimum = serializers.FloatField(allow_null=True, help_text="The smallest number allowed; null: no bound.")
    maximum = serializers.FloatField(allow_null=True, help_text="The largest number allowed; null: no bound.")
    secret_keys = serializers.ListField(
        child=serializers.CharField(), help_text="Keys of a text_map that are secrets and are refused there."
    )
    example = serializers.CharField(help_text="A value to show as a hint; may be empty.")


class TargetKindSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="The value of a target's `kind`.")
    label = serializers.CharField(help_text="The kind's name for people.")  # type: ignore[assignment]  # as `required` above
    options = OptionSpecSerializer(many=True, help_text="The non-secret settings a target of the kind takes.")
    credentials = OptionSpecSerializer(many=True, help_text="The secrets it takes (write-only, encrypted).")
    private_needs_allow_private = serializers.BooleanField(
        help_text="Whether a private or loopback URL (or S3 endpoint) is refused unless a team admin sets the "
        "target's `allow_private`; false when the operator allows private addresses for all "
        "(SLIPWAY_ALLOW_PRIVATE_OUTBOUND)."
    )


class TargetCreateInput(serializers.Serializer):
    team = serializers.CharField(required=False, allow_blank=True, default="", help_text="Team slug.")
    # Blank and unknown values get the service's sentences.
    name = serializers.CharField(max_length=services.NAME_LIMIT, allow_blank=True)
    slug = serializers.CharField(max_length=63, required=False, allow_blank=True, default="")
    # Checked by the service, which names the kinds in its sentence.
    kind = KindField(
        max_length=20,
        required=False,
        default="triton",
        help_text="The kind of server; GET /targets/kinds/ lists them with what each takes.",
    )
    url = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    repository = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default="", help_text="Absolute directory or s3://."
    )
    backend_mode = serializers.ChoiceField(choices=BackendMode.choices, required=False, default=BackendMode.NATIVE)
    profile = serializers.CharField(max_length=60, help_text="Hardware profile slug the server runs.")
    options = OptionsField(required=False, default=dict, help_text=_OPTIONS_HELP)
    credentials = CredentialsField(required=False, allow_null=True, default=None, help_text=_CREDENTIALS_HELP)
    enabled = serializers.BooleanField(required=False, default=True)
    allow_private = serializers.BooleanField(required=False, default=False, help_text=_ALLOW_PRIVATE_HELP)


class TargetUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=services.NAME_LIMIT, allow_blank=True, required=False)
    slug = serializers.CharField(max_length=63, required=False, allow_blank=True)
    url = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    repository = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    backend_mode = serializers.ChoiceField(choices=BackendMode.choices, required=False)
    profile = serializers.CharField(max_length=60, required=False)
    options = OptionsField(required=False, help_text=_OPTIONS_HELP)
    credentials = CredentialsField(required=False, allow_null=True, help_text=_CREDENTIALS_HELP + " null removes them.")
    enabled = serializers.BooleanField(required=False)
    allow_private = serializers.BooleanField(required=False, help_text=_ALLOW_PRIVATE_HELP)


class DeploymentTargetHealthSerializer(serializers.Serializer):
    healthy = serializers.BooleanField(allow_null=True, help_text="Live at the last check; null: never checked.")
    ready = serializers.BooleanField(allow_null=True, help_text="Ready at the last check.")
    checked_at = serializers.DateTimeField(allow_null=True, help_text="When a worker last asked the server.")
    since = serializers.DateTimeField(allow_null=True, help_text="Since when `healthy` is what it is.")
    detail = serializers.CharField(help_text="What the last check found, as a sentence.")


class MetricsIntervalSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="The earlier sample.")
    end = serializers.DateTimeField(help_text="The later sample.")
    seconds = serializers.FloatField()
    requests = serializers.FloatField(allow_null=True, help_text="Requests answered or failed in between.")
    failures = serializers.FloatField(allow_null=True)
    requests_per_second = serializers.FloatField(allow_null=True)
    failures_per_second = serializers.FloatField(allow_null=True)
    error_rate = serializers.FloatField(allow_null=True, help_text="Failures / requests (0 to 1); null: no requests.")
    mean_latency_ms = serializers.FloatField(
        allow_null=True, help_text="Mean end-to-end request time: the duration counter's difference / successes."
    )
    mean_queue_ms = serializers.FloatField(allow_null=True, help_text="Mean time a request waited in the queue.")
    mean_compute_ms = serializers.FloatField(
        allow_null=True, help_text="Mean compute time a request took (inputs + inference + outputs)."
    )
    counter_reset = serializers.BooleanField(
        help_text="The server's counters started again in between (a restart): only what came after counts."
    )


class MetricsProvenanceSerializer(serializers.Serializer):
    # A field named as the answer names it; the serializer's metaclass takes it (Field's own
    # `source` is untouched), which the stubs can't tell.
    source = serializers.CharField(  # type: ignore[assignment]
        help_text='Where the numbers come from, e.g. "Triton metrics endpoint <url>".'
    )
    sampling_interval_seconds = serializers.IntegerField(help_text="How often a worker reads the counters.")
    samples = serializers.IntegerField(help_text="Samples in the window.")
    method = serializers.CharField(help_text="How the figures are made from the samples.")
    window_seconds = serializers.IntegerField()
    first_sample_at = serializers.DateTimeField(allow_null=True)
    last_sample_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True, help_text="When a worker last tried to read them.")
    last_error = serializers.CharField(help_text="Why the last reading gave no numbers; empty when it did.")
    quantiles = serializers.CharField(help_text="What `latest_quantiles_ms` are; empty without them.")


class DeploymentMetricsSerializer(serializers.Serializer):
    deployment = serializers.IntegerField()
    model_name = serializers.CharField(help_text="The model's name on the server.")
    model_version = serializers.CharField(help_text="The version's number on the server.")
    available = serializers.BooleanField(help_text="Whether the target's kind reports metrics at all.")
    detail = serializers.CharField(help_text="Why there are no figures yet, as a sentence; empty when there are.")
    intervals = MetricsIntervalSerializer(many=True, help_text="Oldest first; long windows merge neighbours.")
    totals = MetricsIntervalSerializer(allow_null=True, help_text="The whole window as one interval.")
    latest_quantiles_ms = serializers.DictField(
        child=serializers.FloatField(), help_text='The server\'s own recent latency quantiles, e.g. {"0.99": 0.9}.'
    )
    provenance = MetricsProvenanceSerializer()
    target_health = DeploymentTargetHealthSerializer()


class DeploymentSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="target.team.slug", read_only=True)
    target = serializers.CharField(source="target.slug", read_only=True, help_text="Target slug.")
    target_id = serializers.IntegerField(read_only=True)
    version = serializers.IntegerField(source="version_id", read_only=True, help_text="Version id.")
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    model = serializers.CharField(source="model.slug", read_only=True, help_text="Model slug.")
    profile = serializers.CharField(source="profile.slug", read_only=True)
    artifact_id = serializers.IntegerField(read_only=True, allow_null=True)
    decision_id = serializers.IntegerField(read_only=True, allow_null=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True)
    undeploy_requested_by = serializers.CharField(source="undeploy_requested_by.username", read_only=True, default=None)
    replaces = serializers.IntegerField(source="replaces_id", read_only=True, allow_null=True)
    rollback_of = serializers.IntegerField(source="rollback_of_id", read_only=True, allow_null=True)
    restores = serializers.IntegerField(source="restores_id", read_only=True, allow_null=True)
    # Plain text rather than a second enum named "kind" in the schema (targets have one).
    kind = serializers.CharField(read_only=True, help_text="deploy, or rollback.")
    target_health = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "status",
            "status_reason",
            "error_code",
            "detail",
            "kind",
            "team",
            "target",
            "target_id",
            "version",
            "version_number",
            "model",
            "profile",
            "variant",
            "artifact_id",
            "artifact_sha256",
            "engine_backend",
            "model_format",
            "precision",
            "triton_model",
            "triton_version",
            "serving",
            "overrides",
            "tolerance",
            "smoke",
            "steps",
            "decision_id",
            "evidence_sha256",
            "requested_by",
            "created_at",
            "status_changed_at",
            "pushing_at",
            "live_at",
            "failed_at",
            "rolled_back_at",
            "retired_at",
            "replaces",
            "rollback_of",
            "restores",
            "undeploy_requested_by",
            "undeploy_requested_at",
            "attempt",
            "max_attempts",
            "target_health",
        ]
        read_only_fields = fields

    @extend_schema_field(DeploymentTargetHealthSerializer)
    def get_target_health(self, deployment: Deployment) -> dict[str, Any]:
        return metrics.target_health(deployment.target)


class DeployInput(serializers.Serializer):
    version = serializers.IntegerField(help_text="Id of an approved version.")
    target = serializers.CharField(max_length=63, help_text="Slug of a serving target of the version's team.")
    variant = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        allow_null=True,
        default=None,
        help_text='A variant name, or "original"; default: the recommended one for the target\'s profile.',
    )
    profile = serializers.CharField(
        max_length=60,
        required=False,
        allow_blank=True,
        allow_null=True,
        default=None,
        help_text="The hardware profile whose variant to deploy; must be the target's.",
    )
    overrides = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Serving settings that win over the benchmark's: max_batch_size, preferred_batch_sizes, "
        "max_queue_delay_us, instances, instance_kind (CPU or GPU).",
    )
