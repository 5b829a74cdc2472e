"""Devices: machines outside the cluster that run the Slipway agent (issue 18, ADR 0016).

A device can't hold the database or broker credentials and sits behind NAT, so it speaks
HTTPS only. A team admin makes a one-time enrollment token naming the profiles the device may
serve (`create_enrollment`); the agent registers with it, reporting its own hardware probe,
and gets a device credential, shown once (`register`). The credential authenticates every
later request of that device (`authenticate`); the agent beats with it (`beat`). A team
admin revokes a device (`revoke`): its credential stops working at once. The agent rotates its
credential (`rotate`), with a grace period for the one it replaces. What a device serves is
judged from its probe, the same check the
workers pass (`workers.engine.hardware.unmet_requirements`), never from the enrollment alone.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import Team, hash_token_secret, new_token
from apps.accounts.permissions import Action, require
from apps.audit import services as audit
from apps.core.errors import Conflict, DomainError
from apps.hardware.models import (
    DEVICE_CREDENTIAL_PREFIX,
    ENROLLMENT_TOKEN_PREFIX,
    Device,
    DeviceEnrollment,
    HardwareProfile,
)
from workers.engine.hardware import HardwareInfo, unmet_requirements
from workers.engine.typed import ReportShapeError, from_dict

ENROLLMENT_HOURS = 24
MAX_ENROLLMENT_HOURS = 7 * 24
_NOT_VALID = "The device credential is not valid. Register the device again with a new enrollment token."


class DeviceRefused(DomainError):
    """A device credential or enrollment token that does not open the door (401)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 401)


def _parts(token: str, prefix: str, what: str) -> tuple[str, str]:
    parts = (token or "").strip().split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or not parts[2]:
        raise DeviceRefused(
            f"malformed_{what.replace(' ', '_')}",
            f"The {what} is malformed: it looks like {prefix}_<id>_<secret>. Copy it whole.",
        )
    return parts[1], parts[2]


def _profiles(slugs: list[str]) -> list[HardwareProfile]:
    wanted = sorted({str(slug).strip() for slug in slugs if str(slug).strip()})
    if not wanted:
        raise DomainError("profiles_required", "Name the hardware profiles the device may serve (profiles).")
    found = {p.slug: p for p in HardwareProfile.objects.filter(slug__in=wanted, enabled=True)}
    unknown = [slug for slug in wanted if slug not in found]
    if unknown:
        known = ", ".join(HardwareProfile.objects.filter(enabled=True).order_by("slug").values_list("slug", flat=True))
        raise DomainError(
            "unknown_profile", f"No enabled hardware profile is called {', '.join(unknown)}; known: {known}."
        )
    return [found[slug] for slug in wanted]


def create_enrollment(
    team: Team, user: Any, profiles: list[str], name: str = "", hours: int = ENROLLMENT_HOURS
) -> tuple[DeviceEnrollment, str]:
    """A one-time token for one device of `team` (team admins), valid for `hours`; returns the
    enrollment and the token, which is shown once and never kept."""
    require(user, team, Action.MANAGE)
    if not 1 <= hours <= MAX_ENROLLMENT_HOURS:
        raise DomainError(
            "invalid_expiry", f"An enrollment token lasts 1 to {MAX_ENROLLMENT_HOURS} hours, not {hours}."
        )
    chosen = _profiles(profiles)
    key_id, secret, token = new_token(ENROLLMENT_TOKEN_PREFIX)
    with transaction.atomic():
        enrollment = DeviceEnrollment.objects.create(
            team=team,
            name=name.strip()[:100],
            key_id=key_id,
            key_hash=hash_token_secret(secret),
            created_by=user,
            expires_at=timezone.now() + timedelta(hours=hours),
        )
        enrollment.profiles.set(chosen)
        audit.record(
            "device.enrollment_created",
            enrollment,
            actor=user,
            team=team,
            after={
                "name": enrollment.name,
                "profiles": [p.slug for p in chosen],
                "expires_at": enrollment.expires_at.isoformat(),
            },
        )
    return enrollment, token


def probe_of(hardware: Any) -> dict[str, Any]:
    """The device's hardware probe as the workers' (`HardwareInfo`), or a 400 saying what is off."""
    try:
        info = from_dict(HardwareInfo, hardware)
    except ReportShapeError as exc:
        raise DomainError(
            "invalid_hardware",
            f"The hardware probe does not read: {exc} Send what workers.engine.hardware.describe_hardware() reports.",
        ) from None
    return info.to_dict()


def _runtimes(runtimes: Any) -> dict[str, str | None]:
    if runtimes is None:
        return {}
    if not isinstance(runtimes, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in runtimes.items()
    ):
        raise DomainError("invalid_runtimes", "runtimes must map a backend name to its version (or null).")
    return dict(runtimes)


def register(token: str, name: str, hardware: Any, runtimes: Any = None, agent_version: str = "") -> tuple[Device, str]:
    """Register a device with an enrollment token: the token is spent, the device gets the
    enrollment's profiles and a credential, returned once."""
    key_id, secret = _parts(token, ENROLLMENT_TOKEN_PREFIX, "enrollment token")
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise DomainError("invalid_name", "Name the device (1 to 100 characters), e.g. its host name.")
    probe, versions = probe_of(hardware), _runtimes(runtimes)
    now = timezone.now()
    with transaction.atomic():
        enrollment = DeviceEnrollment.objects.select_for_update().filter(key_id=key_id).first()
        if enrollment is None or not hmac.compare_digest(enrollment.key_hash, hash_token_secret(secret)):
            raise DeviceRefused(
                "invalid_enrollment", "The enrollment token is not valid. Ask a team admin for a new one."
            )
        if enrollment.used_at is not None:
            raise DeviceRefused(
                "enrollment_used", "This enrollment token was already used by a device. Ask a team admin for a new one."
            )
        if enrollment.expires_at <= now:
            raise DeviceRefused(
                "enrollment_expired", "This enrollment token has expired. Ask a team admin for a new one."
            )
        cred_id, cred_secret, credential = new_token(DEVICE_CREDENTIAL_PREFIX)
        try:
            with transaction.atomic():
                device = Device.objects.create(
                    team=enrollment.team,
                    name=name,
                    enrollment=enrollment,
                    key_id=cred_id,
                    key_hash=hash_token_secret(cred_secret),
                    hardware=probe,
                    runtimes=versions,
                    agent_version=str(agent_version or "")[:40],
                    registered_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:
            raise Conflict(
                "device_name_taken",
                f"Team {enrollment.team.slug} already has a device called '{name}'. Name this one differently, or "
                "revoke the other first.",
            ) from None
        device.profiles.set(enrollment.profiles.all())
        DeviceEnrollment.objects.filter(pk=enrollment.pk).update(used_at=now)
        audit.record(
            "device.registered",
            device,
            team=enrollment.team,
            after={"name": name, "arch": probe.get("arch"), "profiles": sorted(p.slug for p in device.profiles.all())},
        )
    return device, credential


def holder(device: Device) -> str:
    """What a job's `worker_host` says while the device holds a lease on it."""
    return f"device:{device.team.slug}/{device.name}"


def authenticate(credential: str) -> Device:
    """The device a credential belongs to; DeviceRefused saying why otherwise. The credential a
    rotation replaced is still accepted within its grace period (`previous_key_*`); the first
    use of the new one ends that period."""
    key_id, secret = _parts(credential, DEVICE_CREDENTIAL_PREFIX, "device credential")
    hashed = hash_token_secret(secret)
    device = Device.objects.select_related("team").filter(key_id=key_id).first()
    if device is not None and hmac.compare_digest(device.key_hash, hashed):
        device.via_previous = False  # type: ignore[attr-defined]
        if device.previous_key_id:
            Device.objects.filter(pk=device.pk).update(
                previous_key_id="", previous_key_hash="", previous_valid_until=None
            )
            device.previous_key_id = ""
    else:
        device = Device.objects.select_related("team").filter(previous_key_id=key_id).first() if key_id else None
        if (
            device is None
            or not hmac.compare_digest(device.previous_key_hash, hashed)
            or device.previous_valid_until is None
            or device.previous_valid_until <= timezone.now()
        ):
            raise DeviceRefused("invalid_device_credential", _NOT_VALID)
        device.via_previous = True  # type: ignore[attr-defined]
    if device.revoked_at is not None:
        raise DeviceRefused(
            "device_revoked", f"The device '{device.name}' was revoked. A team admin can enroll it again."
        )
    return device


def beat(device: Device, hardware: Any = None, runtimes: Any = None, agent_version: str | None = None) -> Device:
    """The device is alive; with `hardware` or `runtimes`, what it reports now replaces what it did."""
    fields: dict[str, Any] = {"last_seen_at": timezone.now()}
    if hardware is not None:
        fields["hardware"] = probe_of(hardware)
    if runtimes is not None:
        fields["runtimes"] = _runtimes(runtimes)
    if agent_version is not None:
        fields["agent_version"] = str(agent_version)[:40]
    Device.objects.filter(pk=device.pk).update(**fields)
    for key, value in fields.items():
        setattr(device, key, value)
    return device


ROTATION_GRACE = timedelta(hours=1)


def rotate(device: Device) -> str:
    """A new credential for the device (asked for with its current one), returned once. The one
    it called with stays valid for ROTATION_GRACE or until the new one is first used, so a
    rotation whose answer never arrived can be asked for again with the old credential."""
    key_id, secret, credential = new_token(DEVICE_CREDENTIAL_PREFIX)
    now = timezone.now()
    fields: dict[str, Any] = {"key_id": key_id, "key_hash": hash_token_secret(secret), "credential_rotated_at": now}
    if not getattr(device, "via_previous", False):
        # Called with the current credential: it becomes the one in its grace period.
        fields |= {"previous_key_id": device.key_id, "previous_key_hash": device.key_hash}
    fields["previous_valid_until"] = now + ROTATION_GRACE
    Device.objects.filter(pk=device.pk).update(**fields)
    audit.record("device.credential_rotated", device, team=device.team, after={"name": device.name})
    return credential


def revoke(device: Device, user: Any) -> Device:
    """Revoke the device (team admins): its credential stops working at once."""
    require(user, device.team, Action.MANAGE)
    if device.revoked_at is not None:
        raise Conflict("device_revoked", f"The device '{device.name}' is already revoked.")
    now = timezone.now()
    Device.objects.filter(pk=device.pk).update(revoked_at=now, revoked_by=user)
    device.revoked_at, device.revoked_by = now, user
    audit.record("device.revoked", device, actor=user, team=device.team, after={"name": device.name})
    return device


@dataclass(frozen=True)
class Serving:
    """Whether the device may serve a profile it was enrolled for: its probe meets the profile,
    or `unmet` says what it lacks."""

    profile: str
    unmet: tuple[str, ...]

    @property
    def sentence(self) -> str:
        return "" if not self.unmet else "; ".join(self.unmet)


def serving(device: Device) -> list[Serving]:
    """Each profile the device was enrolled for, judged by its own probe."""
    return [
        Serving(profile.slug, tuple(unmet_requirements(profile.requirements, device.hardware)))
        for profile in device.profiles.order_by("slug")
    ]


def device_status(device: Device) -> str:
    """revoked, online (seen within SLIPWAY_WORKER_STALE_AFTER_SECONDS) or offline."""
    if device.revoked_at is not None:
        return "revoked"
    stale = timedelta(seconds=settings.WORKER_STALE_AFTER_SECONDS)
    return "online" if timezone.now() - device.last_seen_at <= stale else "offline"
