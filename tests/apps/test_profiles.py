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


def test_profile_becomes_a_frozen_engine_profile(db):
    engine = HardwareProfile.objects.get(slug="x86-cpu").to_engine()
    assert engine.name == "x86-cpu" and engine.device_kind == "cpu" and engine.queue == "cpu"
    assert engine.backends == ("onnxruntime", "openvino") and "int8" in engine.precisions
