"""Teams, memberships with roles, and API tokens for CI."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    DATA_SCIENTIST = "data_scientist", "Data scientist"
    APPROVER = "approver", "Approver"
    ADMIN = "admin", "Admin"


class Team(models.Model):
    """A group of people who share models, targets and policies. Everything is scoped to one."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    four_eyes = models.BooleanField(
        default=True, help_text="Whoever uploaded a version may not approve it (on by default)."
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in a team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.get_role_display()}"


TOKEN_PREFIX = "slw"  # noqa: S105 - a public marker, not a secret


def new_token(prefix: str) -> tuple[str, str, str]:
    """A new credential `<prefix>_<key id>_<secret>`, as (key id, secret, the whole token): the
    key id finds its row, and only the secret's hash (`hash_token_secret`) is kept. API tokens
    and the devices' enrollment tokens and credentials are minted here."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    return key_id, secret, f"{prefix}_{key_id}_{secret}"


def hash_token_secret(secret: str) -> str:
    # Tokens are 256-bit random strings, so a plain SHA-256 is enough: no dictionary to guess from.
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for CI and the CLI. Only its hash is stored; the value is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_id = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_PREFIX}_{self.key_id}_…)"

    @classmethod
    def issue(cls, user: object, name: str, scopes: list[str], expires_at: object = None) -> tuple[ApiToken, str]:
        """Create a token; return it with the plain value, which is never retrievable again."""
        key_id, secret, whole = new_token(TOKEN_PREFIX)
        token = cls.objects.create(
            user=user,
            name=name,
            key_id=key_id,
            key_hash=hash_token_secret(secret),
            scopes=scopes,
            expires_at=expires_at,
        )
        return token, whole

    @property
    def rate_limit_key(self) -> str:
        """What the API's rate limits count this token's requests under (apps/core/api/throttling.py)."""
        return f"token:{self.key_id}"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


INVITATION_PREFIX = "slwinv"
INVITATION_DAYS = 7


class Invitation(models.Model):
    """An invitation to join a team with a role, redeemed once with a code a team admin hands
    over (a link or the code itself; Slipway sends no e-mail). Only the code's hash is kept."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=20, choices=Role.choices)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for, for the admins' list.")
    key_id = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.team.slug} as {self.role} ({INVITATION_PREFIX}_{self.key_id}_…)"

    @property
    def state(self) -> str:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"
