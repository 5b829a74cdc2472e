"""Scoping done once: every API view that shows rows belonging to teams narrows them here.

A row is visible when its team is one of the user's (`visible_teams`; superusers see all);
`team_path` leads from the row to its team ("team", "model__team", "target__team",
"run__version__model__team"). A row of another team is a 404, never a 403: outsiders learn
nothing about what exists. What a user may *do* with a visible row (a 403) is the services'
`require(user, team, action)`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from apps.accounts.models import Team
from apps.accounts.permissions import not_found
from apps.accounts.scoping import visible_teams

M = TypeVar("M", bound=Model)


def in_teams_of(user: Any, rows: QuerySet[M], team_path: str) -> QuerySet[M]:
    """`rows` narrowed to those of the user's teams."""
    return rows.filter(**{f"{team_path}__in": visible_teams(user)})


def one_in_teams_of(user: Any, rows: QuerySet[M], team_path: str, **lookup: Any) -> M:
    """The row matching `lookup` among those of the user's teams; a 404 otherwise."""
    row = in_teams_of(user, rows, team_path).filter(**lookup).first()
    if row is None:
        raise not_found()
    return row


def team_named(user: Any, slug: str) -> Team:
    """One of the user's teams by slug; a 404 otherwise."""
    team = visible_teams(user).filter(slug=slug).first()
    if team is None:
        raise not_found()
    return team
