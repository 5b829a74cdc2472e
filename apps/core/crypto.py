"""Secrets at rest: Fernet-encrypted text in the database, and a value that never prints itself.

Keys come from the `SLIPWAY_ENCRYPTION_KEY` setting (env var of the same name, or
`SLIPWAY_ENCRYPTION_KEY_FILE`): one Fernet key, or a comma list for rotation. The first key
encrypts; every key decrypts. To rotate, put a new key first and keep the old ones after it
until every row has been re-saved (`rotate()` re-encrypts one value under the first key).

Without a configured key, one is derived from SECRET_KEY with HKDF, so the embedded default
works out of the box; changing SECRET_KEY then makes stored secrets unreadable. The derived
key is always kept as the last decrypt-only key, so a deployment that configures a key later
still reads what it stored before.

Generate a key with:
    python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"

Usage in a model:
    secret = EncryptedTextField()
    hook.secret = "plain value"      # encrypted when saved
    hook.secret.reveal()             # the plain value, only where it is really needed
    str(hook.secret), repr(hook)     # "********": nothing to leak into logs or templates
"""

from __future__ import annotations

import base64
import functools
import hmac
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

MASK = "********"
_HKDF_SALT = b"slipway.core.crypto"
_HKDF_INFO = b"fernet key for secrets at rest"


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


def generate_key() -> str:
    """A new random Fernet key, as SLIPWAY_ENCRYPTION_KEY expects it."""
    return Fernet.generate_key().decode()


def _derived_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


@functools.lru_cache(maxsize=8)
def _fernet_for(configured: str, secret_key: str) -> MultiFernet:
    fernets: list[Fernet] = []
    entries = [entry.strip() for entry in configured.split(",") if entry.strip()]
    for position, entry in enumerate(entries, start=1):
        try:
            fernets.append(Fernet(entry.encode()))
        except (ValueError, TypeError):
            # Never echo the value: it is (meant to be) a secret.
            raise ImproperlyConfigured(
                f"SLIPWAY_ENCRYPTION_KEY entry {position} of {len(entries)} is not a Fernet key (32 bytes, "
                'url-safe base64, 44 characters). Generate one with: python -c "from cryptography.fernet '
                'import Fernet; print(Fernet.generate_key().decode())"'
            ) from None
    if not secret_key:
        raise ImproperlyConfigured("SECRET_KEY is empty; it is needed to derive the fallback encryption key.")
    fernets.append(Fernet(_derived_key(secret_key)))
    return MultiFernet(fernets)


def _fernet() -> MultiFernet:
    return _fernet_for(str(getattr(settings, "ENCRYPTION_KEY", "") or ""), str(settings.SECRET_KEY))


def check_keys() -> None:
    """Raise ImproperlyConfigured now if the configured keys are malformed."""
    _fernet()


def encrypt(plain: str) -> str:
    """The Fernet token (ASCII) for `plain`, under the first configured key."""
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """The plain text of a token made by `encrypt` under any configured key."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret can't be decrypted with the configured keys. SLIPWAY_ENCRYPTION_KEY (or, "
            "without it, SECRET_KEY) changed without keeping the old key: list the new key first and the "
            "old one after it (new,old), or set the secret again."
        ) from None


def rotate(token: str) -> str:
    """The same secret re-encrypted under the first key (for a key rotation)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("A stored secret can't be decrypted with the configured keys.") from None


class Secret:
    """A secret value that shows itself only when asked to with `reveal()`.

    Holds either the plain text (just set) or the ciphertext (loaded from the database,
    decrypted on demand), so loading a row never needs the key and printing one never leaks.
    """

    __slots__ = ("_plain", "_token")

    def __init__(self, plain: str | None = None, *, token: str | None = None):
        if (plain is None) == (token is None):
            raise ValueError("Give a Secret either its plain value or its token.")
        self._plain = plain
        self._token = token

    def reveal(self) -> str:
        if self._plain is not None:
            return self._plain
        assert self._token is not None
        return decrypt(self._token)

    def token(self) -> str:
        """The ciphertext to store; a value loaded from the database is stored as it was."""
        if self._token is not None:
            return self._token
        assert self._plain is not None
        return encrypt(self._plain)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.reveal().encode(), other.reveal().encode())

    __hash__ = None  # type: ignore[assignment]  # mutable-by-reassignment field values are not dict keys


if TYPE_CHECKING:  # django-stubs: `obj.field` takes a str or a Secret and gives a Secret
    _FieldBase = models.Field[str | Secret, Secret]
else:
    _FieldBase = models.Field


class EncryptedTextField(_FieldBase):
    """Text stored as a Fernet token; its Python value is a `Secret`.

    Not editable in forms (admin pages never render it), not serialized as plain text, and
    it refuses lookups other than `isnull`: the ciphertext is randomized, so `secret=...`
    could never match.
    """

    description = "Text encrypted at rest (Fernet)"

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def get_internal_type(self) -> str:
        return "TextField"

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("editable") is False:
            del kwargs["editable"]
        return name, path, args, kwargs

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | None:
        return None if value is None else Secret(token=value)

    def to_python(self, value: Any) -> Secret | None:
        if value is None or isinstance(value, Secret):
            return value
        return Secret(str(value))

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Secret):
            value = Secret(str(value))
        return value.token()

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata and friends get the ciphertext, never the plain value.
        value = self.value_from_object(obj)
        return "" if value is None else self.get_prep_value(value) or ""

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)

    def get_transform(self, lookup_name: str) -> Any:
        return None
