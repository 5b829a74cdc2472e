"""Every domain model has working admin list and detail pages."""

import pytest
from django.apps import apps as django_apps
from django.contrib import admin
from django.test import Client

from apps.pipeline import services
from tests.factories import ModelVersionFactory, UserFactory

pytestmark = pytest.mark.django_db

DOMAIN_MODELS = [
    "accounts.team",
    "accounts.membership",
    "accounts.apitoken",
    "accounts.invitation",
    "registry.registeredmodel",
    "registry.modelversion",
    "registry.artifact",
    "jobs.pipelinerun",
    "jobs.job",
    "jobs.inspectiongraph",
    "jobs.trial",
    "runtimes.hardwareprofile",
    "audit.auditevent",
    "approvals.policy",
    "approvals.decision",
    "deployments.servingtarget",
    "deployments.deployment",
    "deployments.targetmetricsample",
    "runtimes.device",
    "runtimes.deviceenrollment",
]


def test_domain_models_are_registered():
    registered = {f"{m._meta.app_label}.{m._meta.model_name}" for m in admin.site._registry}
    assert set(DOMAIN_MODELS) <= registered


@pytest.mark.parametrize("label", DOMAIN_MODELS)
def test_admin_changelist_and_change_page_render(label, broker):
    version = ModelVersionFactory()
    services.start_pipeline(version, version.created_by)
    from apps.accounts.models import ApiToken, Membership
    from apps.registry.models import Artifact

    Membership.objects.create(team=version.model.team, user=version.created_by)
    ApiToken.issue(version.created_by, "ci", ["read"])
    from apps.accounts.services import create_invitation

    version.created_by.is_superuser = True
    version.created_by.save(update_fields=["is_superuser"])
    create_invitation(version.model.team, version.created_by, "approver", "for a reviewer")
    Artifact.objects.create(
        version=version, kind="source", name="source", format="onnx", sha256="0" * 64, size=1, storage_key="k"
    )
    from apps.approvals.models import Decision, Policy

    Policy.objects.create(team=version.model.team, name="p", kind="no_cpu_fallback", created_by=version.created_by)
    Decision.objects.create(version=version, kind="reject", actor=version.created_by, comment="no", evidence_sha256="0")
    from apps.deployments.models import Deployment, ServingTarget
    from apps.hardware.models import HardwareProfile

    profile = HardwareProfile.objects.get(slug="x86-cpu")
    target = ServingTarget.objects.create(
        team=version.model.team, name="t", slug="t", url="http://triton:8000", repository="/srv/m", profile=profile
    )
    target.credentials = '{"token": "never-shown"}'
    target.save(update_fields=["credentials"])
    Deployment.objects.create(
        target=target,
        version=version,
        model=version.model,
        profile=profile,
        variant="original",
        triton_model="m",
        triton_version=1,
        requested_by=version.created_by,
    )
    from apps.deployments.models import TargetMetricSample
    from apps.pipeline.models import InspectionGraph, Job

    TargetMetricSample.objects.create(target=target, model_name="m", model_version="1", request_success=3.0)
    InspectionGraph.objects.create(job=Job.objects.filter(run__version=version).first(), data={"node_count": 0})
    from apps.pipeline.models import Trial

    Trial.objects.create(version=version, input_name="x.png", input_key="k", input_sha256="0" * 64, input_size=1)
    from apps.hardware import devices

    Membership.objects.filter(team=version.model.team, user=version.created_by).update(role="admin")
    _, token = devices.create_enrollment(version.model.team, version.created_by, ["x86-cpu"])
    probe = {"host": "b", "arch": "x86_64", "cpu_model": "x", "cpu_flags": [], "cores": 1, "memory_bytes": 1}
    _, credential = devices.register(token, "board", probe)
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    app, model = label.split(".")
    listing = client.get(f"/admin/{app}/{model}/")
    assert listing.status_code == 200
    obj = django_apps.get_model(label).objects.first()
    assert obj is not None
    page = client.get(f"/admin/{app}/{model}/{obj.pk}/change/")
    assert page.status_code == 200
    assert b"never-shown" not in page.content and b"never-shown" not in listing.content
    # A device's credential (and the hash it is checked against) never shows either.
    secret_hash = devices.hash_token_secret(credential.split("_", 2)[2]).encode()
    assert credential.encode() not in page.content and secret_hash not in page.content
