"""Scoping done once: every API view that shows rows belonging to teams narrows them here.

A row is visible when its team is one of the user's (`visible_teams`; superusers see all);
`team_path` leads from the row to its team ("team", "model__team", "target__team",
"run__version__model__team"). A row of another team is a 404, never a 403: outsiders learn
nothing about what exists. What a user may *do* with a visible row (a 403) is the services'
`require(user, team, action)`.

Views over rows that belong to teams derive from `TeamScoped`: they say what their rows are
(`rows()`, with their joins) and how a row reaches its team (`team_path`); the scoping, the
`?team=<slug>` filter of lists and the 404 for a row elsewhere are done here, once.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

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


class TeamScoped:
    """A mixin for API views (generic or plain) over rows that belong to teams.

    - `rows()`: the view's rows before scoping, with the joins its serializer needs.
    - `team_path`: how a row reaches its team.
    - `get_queryset()`: the rows of the user's teams; on a list (no `pk` in the URL),
      `?team=<slug>` narrows it to one team; then `narrow(rows)`, the list's own filters.
    - `one(pk)`: one row of the user's teams, or a 404 (for views whose methods take the pk).
    """

    team_path: ClassVar[str] = "team"
    request: Any
    kwargs: dict[str, Any]

    def rows(self) -> QuerySet[Any]:
        raise NotImplementedError(f"{type(self).__name__} must say which rows it shows: define rows().")

    def narrow(self, rows: QuerySet[Any]) -> QuerySet[Any]:
        return rows

    def get_queryset(self) -> QuerySet[Any]:
        rows = in_teams_of(self.request.user, self.rows(), self.team_path)
        if "pk" not in self.kwargs and (slug := self.request.query_params.get("team")):
            rows = rows.filter(**{f"{self.team_path}__slug": slug})
        return self.narrow(rows)

    def one(self, pk: int) -> Any:
        return one_in_teams_of(self.request.user, self.rows(), self.team_path, pk=pk)
