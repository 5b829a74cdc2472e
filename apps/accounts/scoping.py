"""Which teams a user can see and what they may do there: asked once, used by every view."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.accounts.models import Membership, Role, Team


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
