"""Which teams a user can see and what they may do there: asked once, used by every view."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from rest_framework import status

from apps.accounts.models import Membership, Role, Team
from apps.core.api.errors import ApiError

if TYPE_CHECKING:
    from apps.accounts.permissions import Action


def visible_teams(user: Any) -> QuerySet[Team]:
    """Teams the user is a member of (superusers see all)."""
    if getattr(user, "is_superuser", False):
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user)


def role_in(user: Any, team: Team) -> str | None:
    """The user's role in the team, or None. Superusers act as admins everywhere."""
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    membership = Membership.objects.filter(team=team, user=user).only("role").first()
    return membership.role if membership else None


# How many team slugs a "say which team" answer lists.
LISTED_TEAMS = 20


def default_team(user: Any, action: Action) -> Team:
    """The team a request means when it names none: the one team where the user's membership
    allows `action`, or else the user's one team (whose refusal then names the role needed).
    A superuser sees every team, but only the teams of their memberships count here; with no
    membership, every team does. Several candidates: a 400 listing their slugs."""
    from apps.accounts.permissions import ROLE_ACTIONS  # it imports this module

    memberships = list(Membership.objects.filter(user=user).select_related("team").order_by("team__slug"))
    allowed = [m.team for m in memberships if action in ROLE_ACTIONS[m.role]]
    candidates = allowed or [m.team for m in memberships]
    several = "You belong to several teams"
    if not candidates and getattr(user, "is_superuser", False):
        candidates = list(Team.objects.order_by("slug")[: LISTED_TEAMS + 1])
        several = "You are a member of no team, and there are several"
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ApiError(
            "no_team",
            "You are not a member of any team yet. Ask an admin to add you to one.",
            status.HTTP_403_FORBIDDEN,
        )
    raise ApiError(
        "team_required", f"{several} ({_slugs(candidates)}); say which one with the 'team' field (its slug)."
    )


def _slugs(teams: list[Team]) -> str:
    shown = ", ".join(team.slug for team in teams[:LISTED_TEAMS])
    return shown + (" and more" if len(teams) > LISTED_TEAMS else "")


def resolve_team(user: Any, slug: str | None, action: Action) -> Team:
    """The team a create request means: the one named by `slug` (a 404 sentence if the user
    can't see it), else `default_team` for `action`. The caller still checks the role."""
    if slug:
        team = visible_teams(user).filter(slug=slug).first()
        if team is None:
            raise ApiError(
                "unknown_team", f"You are not a member of a team called '{slug}'.", status.HTTP_404_NOT_FOUND
            )
        return team
    return default_team(user, action)
