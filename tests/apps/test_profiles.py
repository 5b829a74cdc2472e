"""The seeded hardware profiles exist, are served to signed-in users, and map to engine profiles."""

import pytest
from rest_framework.test import APIClient

from apps.runtimes.models import HardwareProfile
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_seeded_profiles_are_listed(personas):
    body = client_for(personas.viewer).get("/api/v1/profiles/").json()
    by_slug = {p["slug"]: p for p in body}
    assert set(by_slug) == {"x86-cpu", "nvidia-gpu", "arm-cpu-mnn"}
    assert by_slug["nvidia-gpu"]["queue"] == "gpu" and by_slug["nvidia-gpu"]["device_kind"] == "gpu"
    assert "onnxruntime" in by_slug["x86-cpu"]["backends"]
    assert set(by_slug["arm-cpu-mnn"]["backends"]) == {"mnn", "ncnn"}


def test_profiles_need_authentication(db):
    assert APIClient().get("/api/v1/profiles/").status_code in (401, 403)


def test_the_migrated_profiles_are_the_seeded_data(db):
    # One definition (apps/runtimes/seeded_profiles.py) for the migrations, tests and benches.
    from apps.runtimes import seeded_profiles

    for data in seeded_profiles.PROFILES:
        row = HardwareProfile.objects.get(slug=data["slug"])
        for key, value in data.items():
            assert getattr(row, key) == value, (data["slug"], key)
    assert "bf16" in HardwareProfile.objects.get(slug="x86-cpu").precisions
    with pytest.raises(KeyError, match="No seeded hardware profile 'riscv'; seeded are x86-cpu, nvidia-gpu"):
        seeded_profiles.profile("riscv")


def test_migration_0004_adds_bf16_to_an_existing_x86_profile_and_takes_it_back(db):
    import importlib

    from django.apps import apps as django_apps

    migration = importlib.import_module("apps.runtimes.migrations.0004_x86_cpu_bf16")
    row = HardwareProfile.objects.get(slug="x86-cpu")
    row.precisions = ["fp32", "int8"]  # as 0002 seeded it before bf16
    row.save()
    migration.allow_bf16(django_apps, None)
    assert HardwareProfile.objects.get(slug="x86-cpu").precisions == ["fp32", "int8", "bf16"]
    migration.allow_bf16(django_apps, None)  # once only
    assert HardwareProfile.objects.get(slug="x86-cpu").precisions == ["fp32", "int8", "bf16"]
    migration.disallow_bf16(django_apps, None)
    assert HardwareProfile.objects.get(slug="x86-cpu").precisions == ["fp32", "int8"]
