"""Issue an API token for a user (for CI). The value is printed once and never stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.accounts.permissions import SCOPES


class Command(BaseCommand):
    help = "Create an API token for a user and print it once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--scopes", default="read,upload", help=f"comma list of {', '.join(SCOPES)}")
        parser.add_argument("--days", type=int, default=90, help="expiry in days (0 = never)")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user called {options['username']!r}.")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise CommandError(f"Unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}.")
        expires = timezone.now() + timedelta(days=options["days"]) if options["days"] > 0 else None
        _, value = ApiToken.issue(user, options["name"], scopes, expires)
        self.stdout.write(value)
