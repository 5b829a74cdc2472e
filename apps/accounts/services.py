"""Writes to teams, memberships and API tokens; each one audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework import status

from apps.accounts import events
from apps.accounts.models import ApiToken, Membership, Role, Team
from apps.accounts.permissions import SCOPES, Action, require
from apps.audit import services as audit
from apps.core.api.errors import ApiError, Conflict

MAX_TOKEN_DAYS = 366


def update_team(team: Team, user: Any, changes: dict[str, Any]) -> Team:
    """Change the team's name or four-eyes rule. Turning the rule on applies it to every version
    of the team at once; turning it off is recorded as a decision of its own and applies only to
    versions uploaded afterwards: approvals does both, told by `events.four_eyes_changed`."""
    require(user, team, Action.MANAGE)
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        before = {"name": team.name, "four_eyes": team.four_eyes}
        for field in ("name", "four_eyes"):
            if field in changes:
                setattr(team, field, changes[field])
        team.save(update_fields=["name", "four_eyes"])
        audit.record(
            "team.updated",
            team,
            actor=user,
            team=team,
            before=before,
            after={"name": team.name, "four_eyes": team.four_eyes},
        )
        if team.four_eyes != before["four_eyes"]:
            events.four_eyes_changed.send(Team, team=team, actor=user, enabled=team.four_eyes)
    return team


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise ApiError("invalid_role", f"Unknown role '{role}'; use one of {', '.join(Role.values)}.")
    return role


def _admins_left(team: Team, without: Membership) -> bool:
    return Membership.objects.filter(team=team, role=Role.ADMIN).exclude(pk=without.pk).exists()


def add_member(team: Team, user: Any, username: str, role: str) -> Membership:
    require(user, team, Action.MANAGE)
    _check_role(role)
    member = get_user_model().objects.filter(username=username, is_active=True).first()
    if member is None:
        raise ApiError("unknown_user", f"There is no active user called '{username}'. Check the spelling.")
    with transaction.atomic():
        if Membership.objects.filter(team=team, user=member).exists():
            raise Conflict("already_member", f"{username} is already in team {team.slug}; change their role instead.")
        membership = Membership.objects.create(team=team, user=member, role=role)
        audit.record("membership.added", membership, actor=user, team=team, after={"user": username, "role": role})
    return membership


def change_role(membership: Membership, user: Any, role: str) -> Membership:
    require(user, membership.team, Action.MANAGE)
    _check_role(role)
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update(of=("self",)).select_related("team", "user").get(pk=membership.pk)
        )
        before = membership.role
        if before == Role.ADMIN and role != Role.ADMIN and not _admins_left(membership.team, membership):
            raise Conflict(
                "last_admin",
                f"{membership.user} is the last admin of {membership.team.slug}; make someone else admin first.",
            )
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record(
            "membership.role_changed",
            membership,
            actor=user,
            team=membership.team,
            before={"user": membership.user.get_username(), "role": before},
            after={"user": membership.user.get_username(), "role": role},
        )
    return membership


def remove_member(membership: Membership, user: Any) -> None:
    require(user, membership.team, Action.MANAGE)
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update(of=("self",)).select_related("team", "user").get(pk=membership.pk)
        )
        if membership.role == Role.ADMIN and not _admins_left(membership.team, membership):
            raise Conflict(
                "last_admin",
                f"{membership.user} is the last admin of {membership.team.slug}; make someone else admin first.",
            )
        audit.record(
            "membership.removed",
            membership,
            actor=user,
            team=membership.team,
            before={"user": membership.user.get_username(), "role": membership.role},
        )
        membership.delete()


def check_scopes(scopes: Any) -> list[str]:
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise ApiError("invalid_scopes", f"Give the token's scopes as a list, from {', '.join(SCOPES)}.")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ApiError("invalid_scopes", f"Unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}.")
    return sorted(set(scopes), key=list(SCOPES).index)


def create_token(
    user: Any, name: str, scopes: Any, expires_in_days: int, via_token: ApiToken | None = None
) -> tuple[ApiToken, str]:
    """Issue a token for `user`; the plain value is returned once and never stored.

    A request made with a token (`via_token`) can't mint a token with a scope that token
    lacks: otherwise an `admin` token would be an `approve` and `deploy` token too."""
    scopes = check_scopes(scopes)
    if via_token is not None and (lacking := [s for s in scopes if s not in via_token.scopes]):
        raise ApiError(
            "token_scope",
            f"This API token has the scopes {', '.join(via_token.scopes)}, so it can't create a token with "
            f"{', '.join(lacking)}, which it lacks. Ask only for scopes it has, or create the token in the browser.",
            status.HTTP_403_FORBIDDEN,
        )
    if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise ApiError(
            "invalid_expiry", f"expires_in_days must be between 1 and {MAX_TOKEN_DAYS}; tokens always expire."
        )
    name = (name or "").strip()
    if not name:
        raise ApiError("invalid_name", "Give the token a name that says where it is used, e.g. 'github-actions'.")
    with transaction.atomic():
        token, value = ApiToken.issue(user, name[:100], scopes, timezone.now() + timedelta(days=expires_in_days))
        audit.record(
            "token.created",
            token,
            actor=user,
            after={
                "name": token.name,
                "scopes": scopes,
                "expires_at": token.expires_at.isoformat() if token.expires_at else None,
                "key_id": token.key_id,
            },
        )
    return token, value


def revoke_token(token: ApiToken, user: Any) -> ApiToken:
    if token.user_id != user.pk:
        raise ApiError(
            "not_found", "Not found. It does not exist or you have no access to it.", status.HTTP_404_NOT_FOUND
        )
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if not updated:
            raise Conflict("already_revoked", f"The token '{token.name}' was already revoked.")
        token.refresh_from_db()
        audit.record("token.revoked", token, actor=user, after={"name": token.name, "key_id": token.key_id})
    return token
