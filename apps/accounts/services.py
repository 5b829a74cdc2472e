"""Writes to teams, memberships and API tokens; each one audited."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework import status

from apps.accounts import events
from apps.accounts.models import (
    INVITATION_DAYS,
    INVITATION_PREFIX,
    ApiToken,
    Invitation,
    Membership,
    Role,
    Team,
    hash_token_secret,
    new_token,
)
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
        after: dict[str, Any] = {"name": team.name, "four_eyes": team.four_eyes}
        if reason := (changes.get("reason") or "").strip():
            after["reason"] = reason
        audit.record("team.updated", team, actor=user, team=team, before=before, after=after)
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


# ---- invitations ---------------------------------------------------------------------------

MAX_INVITATION_DAYS = 30


def create_invitation(
    team: Team, user: Any, role: str, note: str = "", expires_in_days: int = INVITATION_DAYS
) -> tuple[Invitation, str]:
    """A one-time code that makes whoever redeems it a member of `team` with `role`. The code
    is returned once; only its hash is kept (like an API token's)."""
    require(user, team, Action.MANAGE)
    _check_role(role)
    if not 1 <= expires_in_days <= MAX_INVITATION_DAYS:
        raise ApiError(
            "invalid_expiry",
            f"An invitation lasts 1 to {MAX_INVITATION_DAYS} days; give expires_in_days in that range.",
        )
    key_id, secret, code = new_token(INVITATION_PREFIX)
    with transaction.atomic():
        invitation = Invitation.objects.create(
            team=team,
            role=role,
            note=(note or "").strip()[:200],
            key_id=key_id,
            key_hash=hash_token_secret(secret),
            created_by=user,
            expires_at=timezone.now() + timedelta(days=expires_in_days),
        )
        audit.record(
            "invitation.created",
            invitation,
            actor=user,
            team=team,
            after={
                "role": role,
                "note": invitation.note,
                "key_id": key_id,
                "expires_at": invitation.expires_at.isoformat(),
            },
        )
    return invitation, code


def revoke_invitation(invitation: Invitation, user: Any) -> Invitation:
    require(user, invitation.team, Action.MANAGE)
    with transaction.atomic():
        updated = Invitation.objects.filter(pk=invitation.pk, revoked_at__isnull=True, accepted_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        invitation.refresh_from_db()
        if not updated:
            raise Conflict(
                f"invitation_{invitation.state}", f"This invitation is already {invitation.state}; nothing to revoke."
            )
        audit.record(
            "invitation.revoked", invitation, actor=user, team=invitation.team, after={"key_id": invitation.key_id}
        )
    return invitation


_BAD_CODE = (
    "This invitation code is not valid. Check that it was copied whole (it starts with "
    f"'{INVITATION_PREFIX}_'), or ask the team admin for a new one."
)


def find_invitation(code: str) -> Invitation:
    """The invitation a code redeems, pending or not; a 404 sentence for a code that matches none
    (whether malformed, unknown or with a wrong secret: the answer must not tell them apart)."""
    parts = (code or "").strip().split("_", 2)
    if len(parts) != 3 or parts[0] != INVITATION_PREFIX:
        raise ApiError("invalid_invitation", _BAD_CODE, status.HTTP_404_NOT_FOUND)
    invitation = Invitation.objects.select_related("team", "created_by").filter(key_id=parts[1]).first()
    if invitation is None or not secrets.compare_digest(invitation.key_hash, hash_token_secret(parts[2])):
        raise ApiError("invalid_invitation", _BAD_CODE, status.HTTP_404_NOT_FOUND)
    return invitation


def _refuse_unusable(invitation: Invitation) -> None:
    state = invitation.state
    if state == "pending":
        return
    words = {
        "accepted": "was already used",
        "revoked": "was withdrawn by a team admin",
        "expired": f"expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC",
    }[state]
    raise Conflict(f"invitation_{state}", f"This invitation to team {invitation.team.slug} {words}; ask for a new one.")


def accept_invitation(code: str, user: Any | None, username: str = "", password: str = "") -> Membership:
    """Redeem an invitation: as the signed-in `user`, or by creating the account `username`
    with `password` (checked by the site's password validators). One use only: the row is
    locked, so two tabs can't both redeem it."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    found = find_invitation(code)
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().select_related("team").get(pk=found.pk)
        _refuse_unusable(invitation)
        team = invitation.team
        if user is None:
            username = (username or "").strip()
            users = get_user_model()
            if not username or len(username) > 150:
                raise ApiError("invalid_username", "Choose a user name of 1 to 150 characters to sign in with.")
            if users.objects.filter(username__iexact=username).exists():
                raise Conflict(
                    "username_taken",
                    f"The user name '{username}' is taken. Choose another, or sign in to that account first and "
                    "open the invitation again to join with it.",
                )
            candidate = users(username=username)
            try:
                validate_password(password or "", candidate)
            except ValidationError as exc:
                raise ApiError("weak_password", " ".join(exc.messages)) from None
            candidate.set_password(password)
            candidate.save()
            user = candidate
            audit.record("user.created", user, actor=user, team=team, after={"username": username, "via": "invitation"})
        if Membership.objects.filter(team=team, user=user).exists():
            raise Conflict(
                "already_member",
                f"You are already in team {team.slug}; a team admin can change your role on the team's page.",
            )
        membership = Membership.objects.create(team=team, user=user, role=invitation.role)
        invitation.accepted_by = user
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_by", "accepted_at"])
        audit.record(
            "invitation.accepted",
            invitation,
            actor=user,
            team=team,
            after={"user": user.get_username(), "role": invitation.role, "key_id": invitation.key_id},
        )
        audit.record(
            "membership.added",
            membership,
            actor=user,
            team=team,
            after={"user": user.get_username(), "role": invitation.role, "via": "invitation"},
        )
    return membership
