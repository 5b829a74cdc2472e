"""Replay records made before SecretShownOnce held new API tokens' values and webhook signing
secrets in clear: replace each such stored answer with the 409 a retry now gets."""

from django.db import migrations
from django.db.models import Q

REPLAY_ANSWER = {
    "code": "secret_shown_once",
    "message": "This request already succeeded. Its answer held a secret shown once (an API token's value or a "
    "webhook's signing secret), which Slipway no longer keeps, so it can't be shown again. If you lost it, revoke "
    "the token or rotate the webhook's secret, and store the new one.",
    "fields": {},
}


def scrub(apps, schema_editor):
    IdempotencyRecord = apps.get_model("core", "IdempotencyRecord")
    holding_secrets = Q(response_body__has_key="token") | Q(response_body__has_key="secret")
    IdempotencyRecord.objects.filter(holding_secrets).update(response_status=409, response_body=REPLAY_ANSWER)


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]

    operations = [migrations.RunPython(scrub, migrations.RunPython.noop)]
