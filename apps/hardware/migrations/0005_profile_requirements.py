"""Hardware profiles state what a machine must have to measure for them; the seeded ARM profile
gets a queue of its own, so that the x86 workers, which consumed its old queue "cpu", no
longer measure ARM work (issue 18). An administrator's own requirements or queue stay."""

from django.db import migrations, models

from apps.hardware import seeded_profiles


def bind_to_hardware(apps, schema_editor):
    HardwareProfile = apps.get_model("runtimes", "HardwareProfile")
    for item in seeded_profiles.PROFILES:
        for profile in HardwareProfile.objects.filter(slug=item["slug"]):
            fields = []
            if not profile.requirements:
                profile.requirements = dict(item["requirements"])
                fields.append("requirements")
            if item["slug"] == "arm-cpu-mnn" and profile.queue == "cpu":
                profile.queue = item["queue"]
                fields.append("queue")
            if fields:
                profile.save(update_fields=fields)


def unbind(apps, schema_editor):
    HardwareProfile = apps.get_model("runtimes", "HardwareProfile")
    HardwareProfile.objects.filter(slug="arm-cpu-mnn", queue="arm64").update(queue="cpu")


class Migration(migrations.Migration):
    dependencies = [("runtimes", "0004_x86_cpu_bf16")]
    operations = [
        migrations.AddField(
            model_name="hardwareprofile",
            name="requirements",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text='What a machine must have: arch ("x86_64", "aarch64"), cpu_features, accelerator ("cuda").',
            ),
        ),
        migrations.RunPython(bind_to_hardware, unbind),
    ]
