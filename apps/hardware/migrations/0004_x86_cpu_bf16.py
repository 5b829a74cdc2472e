"""The seeded x86-cpu profile allows bf16: OpenVINO builds ov-ir-bf16 where the CPU computes in
BF16 natively (AMX, AVX512-BF16), and parity decides, as for every precision."""

from django.db import migrations, models

SLUG = "x86-cpu"


def allow_bf16(apps, schema_editor):
    HardwareProfile = apps.get_model("runtimes", "HardwareProfile")
    for profile in HardwareProfile.objects.filter(slug=SLUG):
        if "bf16" not in profile.precisions:
            profile.precisions = [*profile.precisions, "bf16"]
            profile.save(update_fields=["precisions"])


def disallow_bf16(apps, schema_editor):
    HardwareProfile = apps.get_model("runtimes", "HardwareProfile")
    for profile in HardwareProfile.objects.filter(slug=SLUG):
        if "bf16" in profile.precisions:
            profile.precisions = [item for item in profile.precisions if item != "bf16"]
            profile.save(update_fields=["precisions"])


class Migration(migrations.Migration):
    dependencies = [("runtimes", "0003_worker")]
    operations = [
        migrations.AlterField(
            model_name="hardwareprofile",
            name="precisions",
            field=models.JSONField(default=list, help_text="Allowed precisions: fp32, fp16, bf16, int8, int8-weights."),
        ),
        migrations.RunPython(allow_bf16, disallow_bf16),
    ]
