"""The seeded `mobile-litert` profile: phones and ARM boards running LiteRT (issue 19)."""

from django.db import migrations

from apps.hardware.seeded_profiles import profile

SLUG = "mobile-litert"


def add(apps, schema_editor):
    HardwareProfile = apps.get_model("runtimes", "HardwareProfile")
    fields = {field.name for field in HardwareProfile._meta.get_fields()}
    item = profile(SLUG)
    HardwareProfile.objects.update_or_create(
        slug=SLUG, defaults={key: value for key, value in item.items() if key in fields and key != "slug"}
    )


def remove(apps, schema_editor):
    apps.get_model("runtimes", "HardwareProfile").objects.filter(slug=SLUG).delete()


class Migration(migrations.Migration):
    dependencies = [("runtimes", "0008_worker_framework_envs")]
    operations = [migrations.RunPython(add, remove)]
