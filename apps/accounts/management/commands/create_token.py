"""Issue an API token for a user (for CI). The value is printed once and never stored.

The same rules as POST /api/v1/tokens/ (accounts.services.create_token): known scopes, a name,
and an expiry of 1 to MAX_TOKEN_DAYS days; tokens always expire. The creation is audited."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.accounts import services
from apps.accounts.permissions import SCOPES
from apps.core.api.errors import ApiError


class Command(BaseCommand):
    help = "Create an API token for a user and print it once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--scopes", default="read,upload", help=f"comma list of {', '.join(SCOPES)}")
        parser.add_argument(
            "--days",
            type=int,
            default=90,
            help=f"expiry in days, 1 to {services.MAX_TOKEN_DAYS} (tokens always expire)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user called {options['username']!r}.")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            _, value = services.create_token(user, options["name"], scopes, options["days"])
        except ApiError as exc:
            message = exc.message.replace("expires_in_days", "--days") if exc.code == "invalid_expiry" else exc.message
            raise CommandError(message) from None
        self.stdout.write(value)
