"""x86-cpu's op-support matrix shows LiteRT, RKNN and ExecuTorch for reference (issue 19):
`options.report_backends`, added where an administrator has not set it."""

from django.db import migrations

from apps.hardware.seeded_profiles import REFERENCE_COLUMNS

SLUG = "x86-cpu"


def add(apps, schema_editor):
    HardwareProfile = apps.get_model("runtimes", "HardwareProfile")
    for profile in HardwareProfile.objects.filter(slug=SLUG):
        options = dict(profile.options or {})
        if "report_backends" not in options:
            options["report_backends"] = list(REFERENCE_COLUMNS)
            profile.options = options
            profile.save(update_fields=["options"])


def remove(apps, schema_editor):
    HardwareProfile = apps.get_model("runtimes", "HardwareProfile")
    for profile in HardwareProfile.objects.filter(slug=SLUG):
        options = dict(profile.options or {})
        if options.pop("report_backends", None) is not None:
            profile.options = options
            profile.save(update_fields=["options"])


class Migration(migrations.Migration):
    dependencies = [("runtimes", "0010_rk3588_npu_profile")]
    operations = [migrations.RunPython(add, remove)]
