"""Secrets at rest: encrypted in the database, readable with any configured key, never printed."""

from __future__ import annotations

import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.core import serializers
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import connection

from apps.core import crypto
from apps.core.crypto import DecryptionError, Secret
from apps.webhooks.models import Webhook
from tests.factories import TeamFactory

PLAIN = "whsec_correct-horse-battery-staple"


@pytest.fixture
def keys(settings):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEY = first
    return first, second


def test_round_trip_is_randomized_and_hides_the_plain_text(keys):
    one, two = crypto.encrypt(PLAIN), crypto.encrypt(PLAIN)
    assert one != two and PLAIN not in one
    assert crypto.decrypt(one) == crypto.decrypt(two) == PLAIN


def test_rotation_first_key_encrypts_every_key_decrypts(settings, keys):
    old, new = keys
    written_before = crypto.encrypt(PLAIN)
    settings.ENCRYPTION_KEY = f"{new}, {old}"
    assert crypto.decrypt(written_before) == PLAIN
    written_after = crypto.encrypt(PLAIN)
    rotated = crypto.rotate(written_before)
    settings.ENCRYPTION_KEY = new  # the old key is gone: only values under the new one still read
    assert crypto.decrypt(written_after) == PLAIN
    assert crypto.decrypt(rotated) == PLAIN
    with pytest.raises(DecryptionError, match="list the new key first and the old one after it"):
        crypto.decrypt(written_before)


def test_without_a_key_one_is_derived_from_secret_key_and_still_read_after_a_key_is_set(settings):
    settings.ENCRYPTION_KEY = ""
    token = crypto.encrypt(PLAIN)
    assert crypto.decrypt(token) == PLAIN
    settings.ENCRYPTION_KEY = Fernet.generate_key().decode()
    assert crypto.decrypt(token) == PLAIN  # the derived key stays as a decrypt-only key
    settings.SECRET_KEY = "another-secret-key"
    settings.ENCRYPTION_KEY = ""
    with pytest.raises(DecryptionError):
        crypto.decrypt(token)


@pytest.mark.parametrize("value", ["not-a-key", "Zm9v", "x" * 44])
def test_a_malformed_key_is_improperly_configured_without_echoing_it(settings, value):
    settings.ENCRYPTION_KEY = f"{Fernet.generate_key().decode()},{value}"
    with pytest.raises(ImproperlyConfigured) as info:
        crypto.check_keys()
    assert "entry 2 of 2 is not a Fernet key" in str(info.value)
    assert value not in str(info.value)


def test_a_secret_never_shows_itself(caplog):
    secret = Secret(PLAIN)
    logging.getLogger("test").warning("secret is %s / %r / %s", secret, secret, [secret])
    assert PLAIN not in caplog.text and PLAIN not in f"{secret}{secret!r}"
    assert secret.reveal() == PLAIN
    assert Secret(PLAIN) == Secret(token=crypto.encrypt(PLAIN))


@pytest.mark.django_db
def test_the_field_stores_ciphertext_and_loads_a_secret(keys):
    hook = Webhook.objects.create(team=TeamFactory(), name="ci", url="https://example.com/h", secret=PLAIN)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM webhooks_webhook WHERE id = %s", [hook.pk])
        stored = cursor.fetchone()[0]
    assert PLAIN not in stored and crypto.decrypt(stored) == PLAIN
    loaded = Webhook.objects.get(pk=hook.pk)
    assert isinstance(loaded.secret, Secret) and loaded.secret.reveal() == PLAIN
    assert PLAIN not in repr(loaded.__dict__)
    # Saving an unchanged row keeps the stored token as it was.
    loaded.save()
    assert Webhook.objects.filter(pk=hook.pk).values_list("secret", flat=True).get() is not None
    # dumpdata gets the ciphertext.
    dumped = serializers.serialize("json", [loaded])
    assert PLAIN not in dumped and json.loads(dumped)[0]["fields"]["secret"].startswith("gAAAA")


@pytest.mark.django_db
def test_lookups_on_ciphertext_are_refused_except_isnull(keys):
    Webhook.objects.create(team=TeamFactory(), name="ci", url="https://example.com/h", secret=PLAIN)
    with pytest.raises(FieldError):
        list(Webhook.objects.filter(secret=PLAIN))
    assert Webhook.objects.filter(secret__isnull=False).count() == 1
