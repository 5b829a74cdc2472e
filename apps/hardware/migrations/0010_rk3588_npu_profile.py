"""The seeded `rk3588-npu` profile: Rockchip RK3588 boards' NPU through RKNN (issue 19)."""

from django.db import migrations

from apps.hardware.seeded_profiles import add_seeded, remove_seeded

SLUG = "rk3588-npu"


def add(apps, schema_editor):
    add_seeded(apps, SLUG)


def remove(apps, schema_editor):
    remove_seeded(apps, SLUG)


class Migration(migrations.Migration):
    dependencies = [("runtimes", "0009_mobile_litert_profile")]
    operations = [migrations.RunPython(add, remove)]
