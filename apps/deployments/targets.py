"""Serving targets: register, change and delete them, check their address, repository and health.

A target is checked before it is saved (its address is one Slipway may reach, its repository
exists and is writable, its driver accepts its options and credentials); a target with
deployments in progress can't change what they rely on or be deleted. Every change is audited
in its own transaction and a health check is asked for after it commits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.text import slugify

from apps.accounts.models import Team
from apps.accounts.permissions import Action, require
from apps.audit.services import record
from apps.core.api.errors import ApiError, Conflict
from apps.core.crypto import Secret
from apps.core.outbound import check_outbound_url, private_outbound_allowed
from apps.deployments.models import (
    IN_PROGRESS,
    BackendMode,
    Deployment,
    DeploymentStatus,
    ServingTarget,
)
from apps.deployments.services import (
    CHECK_TARGET_TASK,
    NAME_LIMIT,
    SLUG_PATTERN,
    credential_keys,
    tell_worker,
)
from apps.hardware.models import HardwareProfile

logger = logging.getLogger(__name__)


def _target_snapshot(target: ServingTarget) -> dict[str, Any]:
    """What the audit trail keeps of a target: never the credentials' values."""
    return {
        "name": target.name,
        "slug": target.slug,
        "kind": target.kind,
        "url": target.url,
        "repository": target.repository,
        "backend_mode": target.backend_mode,
        "profile": target.profile.slug,
        "options": target.options,
        "credentials": credential_keys(target),
        "enabled": target.enabled,
        "allow_private": target.allow_private,
    }


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApiError("invalid_name", "Give the serving target a name, e.g. 'Production Triton'.")
    if len(name) > NAME_LIMIT:
        raise ApiError("invalid_name", f"The name is longer than {NAME_LIMIT} characters; shorten it.")
    return name


def _clean_slug(slug: str, name: str) -> str:
    slug = (slug or "").strip() or slugify(name)[:63].strip("-")
    if not SLUG_PATTERN.fullmatch(slug):
        raise ApiError(
            "invalid_slug",
            f"The slug '{slug}' can't be used: use 1 to 63 lower-case letters, digits and '-', starting with a "
            "letter or digit (it is used in URLs and paths), e.g. 'prod-triton'.",
        )
    return slug


def _clean_profile(slug: str | None) -> HardwareProfile:
    profile = HardwareProfile.objects.filter(slug=slug or "").first()
    if profile is None:
        known = ", ".join(HardwareProfile.objects.order_by("slug").values_list("slug", flat=True))
        raise ApiError(
            "unknown_profile",
            f"Unknown hardware profile '{slug or ''}': say which profile the server runs, one of {known}.",
        )
    return profile


def _driver_class(kind: str) -> Any:
    """The serving-target driver of `kind` (workers.engine.targets.registry); ApiError("invalid_kind")
    for a kind Slipway does not deploy to."""
    from workers.engine.targets.base import TargetError
    from workers.engine.targets.registry import driver_class

    try:
        return driver_class(kind)
    except TargetError as exc:
        raise ApiError("invalid_kind", exc.message) from None


def deployable_kinds() -> dict[str, str]:
    """The kinds of serving target that can be registered: kind -> label."""
    from workers.engine.targets.registry import DRIVERS

    return {kind: driver.label for kind, driver in DRIVERS.items()}


def driver_keys_help(attribute: str) -> str:
    """What each kind's driver takes as options or credentials (`option_keys`, `credential_keys`), in words."""
    from workers.engine.targets.registry import DRIVERS

    sentences = []
    for driver in DRIVERS.values():
        keys = "; ".join(f"{key}: {what}" for key, what in getattr(driver, attribute).items())
        sentences.append(f"{driver.label} targets take {keys}.")
    return " ".join(sentences)


def kind_descriptions() -> list[dict[str, Any]]:
    """Every kind that can be registered, as GET /targets/kinds/ lists it: its label, the options
    and credentials its driver declares (`OptionSpec`s: type, required, default, help), and
    whether a private or loopback address needs the target's `allow_private`."""
    from workers.engine.targets.base import credential_specs, option_specs
    from workers.engine.targets.registry import DRIVERS

    allowed_for_all = private_outbound_allowed(False)
    return [
        {
            "kind": kind,
            "label": driver.label,
            "options": option_specs(driver),
            "credentials": credential_specs(driver),
            "private_needs_allow_private": not allowed_for_all,
        }
        for kind, driver in sorted(DRIVERS.items())
    ]


def _checked_settings(kind: str, value: Mapping[str, Any], where: Literal["option", "credential"]) -> dict[str, Any]:
    """`value` checked by the kind's own specs (`check_settings`): unknown keys, required ones, each type."""
    from workers.engine.targets.base import TargetError, check_settings, credential_specs, option_specs

    driver = _driver_class(kind)
    specs = option_specs(driver) if where == "option" else credential_specs(driver)
    try:
        return check_settings(specs, value, label=driver.label, where=where)
    except TargetError as exc:
        raise ApiError(exc.code, exc.message) from None


def _clean_credentials(kind: str, value: Any) -> Secret | None:
    if value is not None and not isinstance(value, Mapping):
        raise ApiError("invalid_credentials", 'Give the credentials as a JSON object, e.g. {"headers": {...}}.')
    # None (no secrets) is checked too: a kind may require one.
    checked = _checked_settings(kind, value or {}, "credential")
    return Secret(json.dumps(checked, sort_keys=True)) if checked else None


def _clean_options(kind: str, value: Any) -> dict[str, Any]:
    if value is not None and not isinstance(value, Mapping):
        raise ApiError("invalid_options", "Give the options as a JSON object.")
    return _checked_settings(kind, value or {}, "option")


def _check_repository(target: ServingTarget) -> None:
    """A local repository must be inside a folder the administrator allowed (SLIPWAY_TARGET_ROOTS),
    never a system folder, Slipway's code or its own data; symbolic links are followed to say."""
    from workers.engine.targets.base import TargetError, check_repository_folder

    uri = target.repository.strip()
    if not uri:
        raise ApiError(
            "invalid_repository",
            "Give the model repository the server reads: an absolute directory both the workers and the server "
            "see, or s3://bucket/prefix.",
        )
    if uri.startswith("s3://") or "://" in uri:
        return
    path = Path(uri)
    if ".." in path.parts:
        raise ApiError("invalid_repository", f"The model repository '{uri}' must not contain '..'.")
    if not path.is_absolute():
        return  # RepositoryLocation.parse says how to write it
    # Slipway's own data is off limits, except for roots the administrator made inside it
    # (the default, <data folder>/model-repositories): said first, as the most specific reason.
    resolved = path.resolve()
    data_dir = Path(settings.DATA_DIR).resolve()
    in_own_root = any(
        data_dir in root.resolve().parents and (resolved == root.resolve() or root.resolve() in resolved.parents)
        for root in map(Path, settings.TARGET_ROOTS)
    )
    if (resolved == data_dir or data_dir in resolved.parents) and not in_own_root:
        raise ApiError(
            "invalid_repository",
            f"The model repository '{uri}' is inside Slipway's own data directory ({data_dir}); give the "
            "server its own directory.",
        )
    try:
        check_repository_folder(path, settings.TARGET_ROOTS)
    except TargetError as exc:
        raise ApiError(exc.code, exc.message) from None


def _repository_endpoint(target: ServingTarget) -> str:
    """The URL the workers' S3 client talks to for an s3:// repository ("" for AWS's own, or a local one)."""
    from workers.engine.targets.base import RepositoryLocation, TargetError

    if not target.repository.strip().startswith("s3://"):
        return ""
    configured = str(((target.options or {}).get("repository_options") or {}).get("endpoint_url") or "").strip()
    if configured:
        return configured
    try:
        location = RepositoryLocation.parse(target.repository)
    except TargetError:
        return ""
    return f"http://{location.endpoint}" if location.endpoint else ""


def _check_repository_endpoint(target: ServingTarget) -> None:
    """An S3 endpoint is a URL the platform sends requests to: the same checks as webhooks'."""
    endpoint = _repository_endpoint(target)
    if not endpoint:
        return
    try:
        check_outbound_url(endpoint, private_outbound_allowed(target.allow_private))
    except ApiError as exc:
        raise ApiError(exc.code, f"The model repository's S3 endpoint can't be used. {exc.message}") from None


def _check_target(target: ServingTarget) -> None:
    """Refuse a target that can't work, with a sentence; checks the URL against private addresses."""
    from workers.engine.targets.base import RepositoryLocation, TargetError, TargetSettings

    _check_repository(target)
    _check_repository_endpoint(target)
    if not target.url:
        raise ApiError("invalid_url", "Give the server's URL, e.g. http://triton.internal:8000.")
    target.url = check_outbound_url(target.url, private_outbound_allowed(target.allow_private)).url
    metrics_url = str((target.options or {}).get("metrics_url") or "")
    try:
        if target.repository:
            RepositoryLocation.parse(target.repository)
        TargetSettings(
            name=target.slug,
            url=target.url,
            repository=target.repository or "/",
            backend_mode=target.backend_mode,  # type: ignore[arg-type]
            python_paths=tuple((target.options or {}).get("python_paths") or ()),
            metrics_url=metrics_url,
        )
    except TargetError as exc:
        raise ApiError(exc.code, exc.message) from None
    if metrics_url.strip() and metrics_url.strip().lower() != "off":
        check_metrics_address(target, metrics_url.strip())


def check_metrics_address(target: ServingTarget, url: str) -> None:
    """A metrics URL is one more address the workers send requests to: the same checks as the server's."""
    try:
        check_outbound_url(url, private_outbound_allowed(target.allow_private))
    except ApiError as exc:
        raise ApiError("invalid_options", f"The option metrics_url can't be used. {exc.message}") from None


def _save_unique(target: ServingTarget, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            target.save(**kwargs)
    except IntegrityError:
        raise Conflict(
            "slug_taken",
            f"Team {target.team.slug} already has a serving target '{target.slug}'; choose another slug.",
        ) from None


def create_target(
    *,
    team: Team,
    user: Any,
    name: str,
    profile: str | None,
    url: str = "",
    repository: str = "",
    slug: str = "",
    kind: str = "triton",
    backend_mode: str = BackendMode.NATIVE,
    options: Any = None,
    credentials: Any = None,
    enabled: bool = True,
    allow_private: bool = False,
) -> ServingTarget:
    """Register a serving target of the team (team admins)."""
    require(user, team, Action.MANAGE)
    name = _clean_name(name)
    _driver_class(kind)
    if backend_mode not in BackendMode.values:
        raise ApiError("invalid_backend_mode", f"The backend mode must be native or python, not '{backend_mode}'.")
    now = timezone.now()
    target = ServingTarget(
        team=team,
        name=name,
        slug=_clean_slug(slug, name),
        kind=kind,
        url=(url or "").strip(),
        repository=(repository or "").strip(),
        backend_mode=backend_mode,
        profile=_clean_profile(profile),
        options=_clean_options(kind, options),
        credentials=_clean_credentials(kind, credentials),  # type: ignore[misc]  # None: no secrets
        enabled=bool(enabled),
        allow_private=bool(allow_private),
        allow_private_by=user if allow_private else None,
        allow_private_at=now if allow_private else None,
        created_by=user,
        created_at=now,
        updated_at=now,
    )
    _check_target(target)
    with transaction.atomic():
        _save_unique(target)
        record("target.created", target, actor=user, team=team, after=_target_snapshot(target))
    return target


def update_target(target: ServingTarget, user: Any, **changes: Any) -> ServingTarget:
    """Change what was given; the URL and repository are checked again. `credentials` replaces
    the stored secrets (None removes them)."""
    require(user, target.team, Action.MANAGE)
    before = _target_snapshot(target)
    if "name" in changes:
        target.name = _clean_name(changes["name"])
    if "slug" in changes:
        target.slug = _clean_slug(changes["slug"], target.name)
    if "url" in changes:
        target.url = (changes["url"] or "").strip()
    if "repository" in changes:
        repository = (changes["repository"] or "").strip()
        if repository != target.repository and _busy(target).exists():
            raise Conflict(
                "target_in_use",
                f"Target {target.slug} has deployments live or in progress in {target.repository}; undeploy them "
                "before moving its model repository (the server would lose the versions it serves).",
            )
        target.repository = repository
    if "backend_mode" in changes:
        if changes["backend_mode"] not in BackendMode.values:
            raise ApiError("invalid_backend_mode", "The backend mode must be native or python.")
        target.backend_mode = changes["backend_mode"]
    if "profile" in changes:
        profile = _clean_profile(changes["profile"])
        if profile.pk != target.profile_id and _busy(target).exists():
            raise Conflict(
                "target_in_use",
                f"Target {target.slug} serves live deployments built for {target.profile.slug}; undeploy them "
                "before changing its hardware profile.",
            )
        target.profile = profile
    if "options" in changes:
        target.options = _clean_options(target.kind, changes["options"])
    credentials_changed = "credentials" in changes
    if credentials_changed:
        target.credentials = _clean_credentials(target.kind, changes["credentials"])  # type: ignore[assignment]
    if "enabled" in changes:
        target.enabled = bool(changes["enabled"])
    if "allow_private" in changes and bool(changes["allow_private"]) != target.allow_private:
        target.allow_private = bool(changes["allow_private"])
        target.allow_private_by = user if target.allow_private else None
        target.allow_private_at = timezone.now() if target.allow_private else None
    _check_target(target)
    after = _target_snapshot(target)
    if after == before and not credentials_changed:
        return target
    target.updated_at = timezone.now()
    with transaction.atomic():
        _save_unique(target)
        record(
            "target.updated",
            target,
            actor=user,
            before=before,
            after={**after, "credentials_replaced": credentials_changed},
        )
    return target


def _busy(target: ServingTarget) -> QuerySet[Deployment]:
    return target.deployments.filter(status__in=(DeploymentStatus.LIVE, *IN_PROGRESS))


def delete_target(target: ServingTarget, user: Any) -> None:
    """Forget a target and its deployment history (the audit trail keeps it). Refused while
    anything is live or in progress there: undeploy first, so nothing serves unrecorded."""
    require(user, target.team, Action.MANAGE)
    busy = list(_busy(target).select_related("model").order_by("id")[:5])
    if busy:
        listed = ", ".join(f"{d.model.slug} (deployment {d.pk}, {d.status})" for d in busy)
        raise Conflict(
            "target_in_use",
            f"Target {target.slug} still has deployments live or in progress: {listed}. Undeploy them first, "
            "or disable the target instead.",
        )
    with transaction.atomic():
        record("target.deleted", target, actor=user, before=_target_snapshot(target))
        target.delete()


def request_health_check(target: ServingTarget, user: Any) -> ServingTarget:
    """Ask a worker to check the server now (workers reach servers; the web process may not)."""
    require(user, target.team, Action.DEPLOY)
    now = timezone.now()
    with transaction.atomic():
        ServingTarget.objects.filter(pk=target.pk).update(health_check_requested_at=now)
        target.health_check_requested_at = now
        record("target.health_check_requested", target, actor=user)
        tell_worker(CHECK_TARGET_TASK, target.pk)
    return target


def record_health(
    target: ServingTarget, *, healthy: bool | None, ready: bool | None, version: str, detail: str
) -> None:
    """Store a health check's result (from a worker); a change of health is audited."""
    with transaction.atomic():
        locked = ServingTarget.objects.select_for_update().filter(pk=target.pk).first()
        if locked is None:
            return
        changed = locked.healthy != healthy
        now = timezone.now()
        ServingTarget.objects.filter(pk=target.pk).update(
            health_checked_at=now,
            health_changed_at=now if changed or locked.health_changed_at is None else locked.health_changed_at,
            healthy=healthy,
            health_ready=ready,
            server_version=version[:100],
            health_detail=detail[:5000],
            health_check_requested_at=None,
        )
        if changed:
            record(
                "target.health_changed",
                locked,
                team=locked.team,
                before={"healthy": locked.healthy},
                after={"healthy": healthy, "ready": ready, "server_version": version, "detail": detail[:1000]},
            )


def check_target_address(target: ServingTarget) -> None:
    """Check the URL's (and the S3 endpoint's) addresses again right before a worker connects
    (DNS may have changed)."""
    check_outbound_url(target.url, private_outbound_allowed(target.allow_private))
    _check_repository_endpoint(target)


def targets_to_check() -> list[int]:
    kinds = list(deployable_kinds())
    return list(ServingTarget.objects.filter(enabled=True, kind__in=kinds).values_list("pk", flat=True))
