"""The seeded `mobile-executorch` profile: phones and ARM boards running ExecuTorch (issue 19)."""

from django.db import migrations

from apps.hardware.seeded_profiles import add_seeded, remove_seeded

SLUG = "mobile-executorch"


def add(apps, schema_editor):
    add_seeded(apps, SLUG)


def remove(apps, schema_editor):
    remove_seeded(apps, SLUG)


class Migration(migrations.Migration):
    dependencies = [("runtimes", "0011_x86_cpu_reference_columns")]
    operations = [migrations.RunPython(add, remove)]
