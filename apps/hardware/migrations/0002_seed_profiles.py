"""Seed the three hardware profiles every installation starts with (apps/hardware/seeded_profiles.py)."""

from django.db import migrations

from apps.hardware.seeded_profiles import PROFILES
from apps.hardware.seeded_profiles import seed as seed_profiles


def seed(apps, schema_editor):
    seed_profiles(apps.get_model("runtimes", "HardwareProfile"))


def unseed(apps, schema_editor):
    apps.get_model("runtimes", "HardwareProfile").objects.filter(slug__in=[p["slug"] for p in PROFILES]).delete()


class Migration(migrations.Migration):
    dependencies = [("runtimes", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
