"""Who may do what: one table of role -> actions, one of token scope -> actions, asked everywhere.

Services call `require(user, team, action)` before every write; views declare the token scope
each method needs (`token_scopes`) and `TokenScopePermission` checks it. An outsider gets a
404 (the object "does not exist" for them), a member whose role lacks the action a 403 with
a sentence naming the role that would do.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from rest_framework import permissions, status
from rest_framework.request import Request

from apps.accounts.models import ApiToken, Role, Team
from apps.accounts.scoping import role_in
from apps.core.api.errors import ApiError


class Action(StrEnum):
    VIEW = "view"  # read the team's models, reports, decisions, deployments
    UPLOAD = "upload"  # register models, upload versions, re-run pipelines
    REVIEW = "review"  # approve, reject, revoke versions
    DEPLOY = "deploy"  # deploy, roll back, undeploy
    MANAGE = "manage"  # members, team settings, policies, serving targets, webhooks


ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.VIEW}),
    Role.DATA_SCIENTIST: frozenset({Action.VIEW, Action.UPLOAD}),
    Role.APPROVER: frozenset({Action.VIEW, Action.REVIEW, Action.DEPLOY}),
    Role.ADMIN: frozenset(Action),
}

# The roles that may do an action, for the sentence a refused user reads.
_WHO_MAY = {action: [role for role, actions in ROLE_ACTIONS.items() if action in actions] for action in Action}

# What an API token may be used for. A token never does more than its owner's role allows.
SCOPES: dict[str, frozenset[Action]] = {
    "read": frozenset({Action.VIEW}),
    "upload": frozenset({Action.UPLOAD}),
    "approve": frozenset({Action.REVIEW}),
    "deploy": frozenset({Action.DEPLOY}),
    "admin": frozenset({Action.MANAGE}),
}


def not_found() -> ApiError:
    return ApiError("not_found", "Not found. It does not exist or you have no access to it.", status.HTTP_404_NOT_FOUND)


def can(user: Any, team: Team, action: Action) -> bool:
    role = role_in(user, team)
    return role is not None and action in ROLE_ACTIONS[role]


def require(user: Any, team: Team, action: Action) -> str:
    """The user's role in the team if it allows `action`; a 404 for outsiders, a 403 otherwise."""
    role = role_in(user, team)
    if role is None:
        raise not_found()
    if action not in ROLE_ACTIONS[role]:
        who = " or ".join(Role(r).label.lower() for r in _WHO_MAY[action])
        raise ApiError(
            "forbidden",
            f"Your role in team {team.slug} is {Role(role).label.lower()}; {_ACTION_WORDS[action]} needs {who}. "
            "Ask a team admin to change your role.",
            status.HTTP_403_FORBIDDEN,
        )
    return role


_ACTION_WORDS = {
    Action.VIEW: "seeing this",
    Action.UPLOAD: "uploading models and running pipelines",
    Action.REVIEW: "approving, rejecting and revoking versions",
    Action.DEPLOY: "deploying and rolling back",
    Action.MANAGE: "managing the team (members, policies, targets, webhooks)",
}


def scope_for_method(view: Any, method: str) -> str:
    """The token scope a request needs: the view's `token_scopes[method]`, `read` for safe
    methods, and `admin` for any write the view did not declare (closed by default)."""
    declared: dict[str, str] = getattr(view, "token_scopes", {})
    if method in declared:
        return declared[method]
    return "read" if method in permissions.SAFE_METHODS else "admin"


class TokenScopePermission(permissions.BasePermission):
    """Refuses a token-authenticated request whose token lacks the scope the endpoint needs."""

    message = "This API token does not have the scope this endpoint needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True  # browser session: roles alone decide
        needed = scope_for_method(view, request.method or "GET")
        if needed in token.scopes:
            return True
        raise ApiError(
            "token_scope",
            f"This API token has the scopes {', '.join(token.scopes) or '(none)'}; this request needs "
            f"'{needed}'. Create a token with that scope.",
            status.HTTP_403_FORBIDDEN,
        )
