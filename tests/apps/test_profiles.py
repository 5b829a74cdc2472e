"""The seeded hardware profiles exist, are served to signed-in users, and map to engine profiles."""

import pytest
from rest_framework.test import APIClient

from apps.hardware.models import HardwareProfile
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_seeded_profiles_are_listed(personas):
    body = client_for(personas.viewer).get("/api/v1/profiles/").json()
    by_slug = {p["slug"]: p for p in body}
    assert set(by_slug) == {
        "x86-cpu",
        "nvidia-gpu",
        "arm-cpu-mnn",
        "mobile-litert",
        "mobile-executorch",
        "rk3588-npu",
    }
    assert by_slug["nvidia-gpu"]["queue"] == "gpu" and by_slug["nvidia-gpu"]["device_kind"] == "gpu"
    assert "onnxruntime" in by_slug["x86-cpu"]["backends"]
    assert set(by_slug["arm-cpu-mnn"]["backends"]) == {"mnn", "ncnn"}
    assert by_slug["mobile-litert"]["backends"] == ["litert"] and by_slug["mobile-litert"]["queue"] == "arm64"
    assert by_slug["rk3588-npu"]["backends"] == ["rknn"] and by_slug["rk3588-npu"]["queue"] == "rk3588"
    assert (
        by_slug["mobile-executorch"]["backends"] == ["executorch"] and by_slug["mobile-executorch"]["queue"] == "arm64"
    )
    assert by_slug["x86-cpu"]["options"]["report_backends"] == ["litert", "rknn", "executorch"]


def test_an_npu_profile_validates_and_checks_parity_on_the_workers_simulator_and_benchmarks_on_a_board(db):
    from apps.pipeline.services import plan_steps

    npu = HardwareProfile.objects.get(slug="rk3588-npu")
    queues = {step.kind: step.queue for step in plan_steps([npu]) if step.profile is not None}
    assert queues == {"validate": "cpu", "optimize": "cpu", "parity": "cpu", "benchmark": "rk3588", "recommend": "cpu"}
    phone = HardwareProfile.objects.get(slug="mobile-litert")
    assert {step.kind: step.queue for step in plan_steps([phone]) if step.profile is not None}["validate"] == "arm64"


def test_reference_columns_must_name_backends(db):
    from django.core.exceptions import ValidationError

    row = HardwareProfile.objects.get(slug="x86-cpu")
    row.options = {**row.options, "report_backends": ["litert", "tflite-micro"]}
    with pytest.raises(ValidationError, match=r"options\.report_backends must be a list of backend names"):
        row.clean()
    row.options = {**row.options, "report_backends": "rknn"}
    with pytest.raises(ValidationError, match="got 'rknn'"):
        row.clean()


def test_migration_0011_adds_the_reference_columns_once_and_keeps_an_administrators_choice(db):
    import importlib

    from django.apps import apps as django_apps

    migration = importlib.import_module("apps.hardware.migrations.0011_x86_cpu_reference_columns")
    row = HardwareProfile.objects.get(slug="x86-cpu")
    row.options = {key: value for key, value in row.options.items() if key != "report_backends"}
    row.save()
    migration.add(django_apps, None)
    assert HardwareProfile.objects.get(slug="x86-cpu").options["report_backends"] == ["litert", "rknn", "executorch"]
    row = HardwareProfile.objects.get(slug="x86-cpu")
    row.options = {**row.options, "report_backends": ["rknn"]}
    row.save()
    migration.add(django_apps, None)
    assert HardwareProfile.objects.get(slug="x86-cpu").options["report_backends"] == ["rknn"]
    migration.remove(django_apps, None)
    assert "report_backends" not in HardwareProfile.objects.get(slug="x86-cpu").options


def test_profiles_need_authentication(db):
    assert APIClient().get("/api/v1/profiles/").status_code in (401, 403)


def test_the_migrated_profiles_are_the_seeded_data(db):
    # One definition (apps/hardware/seeded_profiles.py) for the migrations, tests and benches.
    from apps.hardware import seeded_profiles

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

    migration = importlib.import_module("apps.hardware.migrations.0004_x86_cpu_bf16")
    row = HardwareProfile.objects.get(slug="x86-cpu")
    row.precisions = ["fp32", "int8"]  # as 0002 seeded it before bf16
    row.save()
    migration.allow_bf16(django_apps, None)
    assert HardwareProfile.objects.get(slug="x86-cpu").precisions == ["fp32", "int8", "bf16"]
    migration.allow_bf16(django_apps, None)  # once only
    assert HardwareProfile.objects.get(slug="x86-cpu").precisions == ["fp32", "int8", "bf16"]
    migration.disallow_bf16(django_apps, None)
    assert HardwareProfile.objects.get(slug="x86-cpu").precisions == ["fp32", "int8"]


def _worker(name: str, arch: str, queues: list[str]) -> None:
    from apps.hardware import services

    facts = {"host": name.split("@")[-1], "arch": arch, "cpu_model": "test", "cpu_flags": [], "cores": 2, "gpus": []}
    services.register_worker(name, hardware=facts, runtimes={}, importers=[], queues=queues, pid=1)


def test_a_profile_is_served_only_by_live_workers_that_meet_its_requirements(personas):
    """Issue 18: an x86 worker that takes the ARM profile's queue does not serve it, and the
    profile says so, and how to connect a machine that does."""
    _worker("cpu@x86-box", "x86_64", ["cpu", "arm64", "default"])
    body = client_for(personas.viewer).get("/api/v1/profiles/").json()
    by_slug = {p["slug"]: p for p in body}
    assert by_slug["x86-cpu"]["served_by"] == ["cpu@x86-box"] and by_slug["x86-cpu"]["service_note"] == ""
    arm = by_slug["arm-cpu-mnn"]
    assert arm["requirements"] == {"arch": ["aarch64"]} and arm["needs"] == "an aarch64 CPU"
    assert arm["served_by"] == []
    assert arm["service_note"].startswith(
        "No worker or device serves arm-cpu-mnn, which needs an aarch64 CPU: its measuring steps wait until one "
        "connects. Connect a device that has it (Workers page"
    )
    assert "run_worker --queues arm64" in arm["service_note"]
    assert (
        "Worker cpu@x86-box takes that queue but does not measure for arm-cpu-mnn: it is x86_64, not aarch64"
        in (arm["service_note"])
    )
    assert by_slug["nvidia-gpu"]["needs"] == "an NVIDIA GPU" and by_slug["nvidia-gpu"]["served_by"] == []
    _worker("arm@pi", "aarch64", ["arm64"])
    arm = {p["slug"]: p for p in client_for(personas.viewer).get("/api/v1/profiles/").json()}["arm-cpu-mnn"]
    assert arm["served_by"] == ["arm@pi"] and arm["service_note"] == ""
    # An NPU profile whose toolkit simulates it on the workers waits only for its benchmark.
    npu = by_slug["rk3588-npu"]
    assert npu["service_note"].startswith(
        "No worker or device serves rk3588-npu, which needs an aarch64 CPU with an RK3588 NPU: its benchmark waits "
        "until one "
        "connects (op support, the build and parity run on the workers, on the toolkit's simulator)."
    ), npu["service_note"]


def test_each_profile_says_how_many_steps_wait_for_it_and_run_on_it(personas, broker):
    from apps.pipeline import services as jobs
    from apps.pipeline.models import Job, JobKind
    from tests.factories import ModelVersionFactory

    arm = HardwareProfile.objects.get(slug="arm-cpu-mnn")
    for _ in range(2):
        version = ModelVersionFactory(model__team=personas.team)
        jobs.start_pipeline(version, version.created_by, steps=[jobs.PlannedStep(JobKind.VALIDATE, arm.queue, arm)])
    first = Job.objects.filter(profile=arm).order_by("pk").first()
    jobs.claim(first.pk, "arm@pi", "t")
    by_slug = {p["slug"]: p for p in client_for(personas.viewer).get("/api/v1/profiles/").json()}
    assert (by_slug["arm-cpu-mnn"]["queued"], by_slug["arm-cpu-mnn"]["running"]) == (1, 1)
    assert (by_slug["x86-cpu"]["queued"], by_slug["x86-cpu"]["running"]) == (0, 0)


def test_figures_measured_on_hardware_the_profile_does_not_name_are_marked(personas):
    """Issue 18: a version measured for arm-cpu-mnn by an x86 worker (as releases before hardware
    requirements did) says so in its readiness and in the evidence a review binds to, so an
    approval on those figures no longer matches them."""
    from apps.approvals.evidence import collect_evidence
    from tests.finished import finished_version

    _worker("cpu@x86-box", "x86_64", ["cpu", "default"])
    version = finished_version(team=personas.team, uploader=personas.owner, profile="arm-cpu-mnn")
    fine = finished_version(team=personas.team, uploader=personas.owner, profile="x86-cpu")
    for each in (version, fine):
        each.runs.get().jobs.update(worker_host="cpu@x86-box")
    readiness = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/").json()["profile_readiness"]
    (arm,) = readiness
    assert arm["profile"] == "arm-cpu-mnn" and arm["hardware_note"].startswith(
        "Measured on cpu@x86-box (x86_64, test), which is not the hardware arm-cpu-mnn names (an aarch64 CPU): "
        "it is x86_64, not aarch64."
    )
    evidence = collect_evidence(version)["profiles"]["arm-cpu-mnn"]
    assert evidence["measured_on_other_hardware"] == arm["hardware_note"]
    # measured where it should be: nothing to say, and no new key in the evidence (its hash stays)
    (x86,) = client_for(personas.viewer).get(f"/api/v1/versions/{fine.pk}/").json()["profile_readiness"]
    assert x86["hardware_note"] == ""
    assert "measured_on_other_hardware" not in collect_evidence(fine)["profiles"]["x86-cpu"]


def test_requirements_an_admin_writes_are_checked_and_normalised(db):
    from django.core.exceptions import ValidationError

    profile = HardwareProfile.objects.get(slug="arm-cpu-mnn")
    profile.requirements = {"arch": "arm64", "cpu_features": ["ASIMDDP"]}
    profile.full_clean()
    assert profile.requirements == {"arch": ["aarch64"], "cpu_features": ["asimddp"]}
    profile.requirements = {"os": "android"}
    with pytest.raises(ValidationError) as refused:
        profile.full_clean()
    assert "Unknown requirement os" in str(refused.value.message_dict["requirements"])


def test_a_profile_names_only_backends_that_exist_and_ship_for_its_architecture(db, monkeypatch):
    from django.core.exceptions import ValidationError

    from workers.engine.backends.openvino import OpenVinoBackend

    profile = HardwareProfile.objects.get(slug="x86-cpu")
    profile.backends = ["onnxruntime", "openvin"]
    with pytest.raises(ValidationError) as refused:
        profile.full_clean()
    assert "No backend is named 'openvin'" in str(refused.value.message_dict["backends"])
    # A runtime that ships for x86-64 only can't serve a profile that requires aarch64.
    monkeypatch.setattr(OpenVinoBackend, "architectures", ("x86_64",))
    profile.backends = ["onnxruntime", "openvino"]
    profile.full_clean()
    profile.requirements = {"arch": ["aarch64"]}
    with pytest.raises(ValidationError) as refused:
        profile.full_clean()
    assert "openvino ships for x86_64 only" in str(refused.value.message_dict["backends"])


def test_building_and_ranking_on_the_servers_cpu_workers_is_not_measuring_on_other_hardware(personas):
    """ADR 0016: an ARM profile's variants are built (portable files) and ranked by x86 workers;
    only its validate, parity and benchmark must run on ARM. A device measured them here, and
    the evidence says which device."""
    from apps.approvals.evidence import collect_evidence
    from tests.finished import finished_version

    _worker("cpu@x86-box", "x86_64", ["cpu", "default"])
    version = finished_version(team=personas.team, uploader=personas.owner, profile="arm-cpu-mnn")
    jobs = version.runs.get().jobs
    jobs.filter(kind__in=["optimize", "recommend", "inspect"]).update(worker_host="cpu@x86-box")
    jobs.filter(kind__in=["validate", "parity", "benchmark"]).update(worker_host="device:vision/pi-5")
    device = {
        "kind": "device",
        "name": "pi-5",
        "arch": "aarch64",
        "cpu_model": "Cortex-A76",
        "cores": 4,
        "emulation": "",
    }
    benchmark = jobs.get(kind="benchmark")
    benchmark.result = {**benchmark.result, "measured_on": device}
    benchmark.save(update_fields=["result"])
    (arm,) = client_for(personas.viewer).get(f"/api/v1/versions/{version.pk}/").json()["profile_readiness"]
    assert arm["hardware_note"] == ""
    evidence = collect_evidence(version)["profiles"]["arm-cpu-mnn"]
    assert "measured_on_other_hardware" not in evidence and evidence["measured_on"] == device
