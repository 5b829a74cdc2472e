"""The seeded `mobile-litert` profile: phones and ARM boards running LiteRT (issue 19)."""

from django.db import migrations

from apps.hardware.seeded_profiles import add_seeded, remove_seeded

SLUG = "mobile-litert"


def add(apps, schema_editor):
    add_seeded(apps, SLUG)


def remove(apps, schema_editor):
    remove_seeded(apps, SLUG)


class Migration(migrations.Migration):
    dependencies = [("runtimes", "0008_worker_framework_envs")]
    operations = [migrations.RunPython(add, remove)]
