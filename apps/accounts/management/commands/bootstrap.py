"""Create the first team and admin account if missing, and print how to log in."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.models import Membership, Role, Team


class Command(BaseCommand):
    help = "Create the seeded team and the first admin (idempotent); print the login."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--team", default="default", help="slug of the first team")
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username = options["username"]
        # The generated password is kept in the data dir (mode 600) so a rerun can show it again.
        password_file = Path(settings.DATA_DIR) / "admin-password"
        with transaction.atomic():
            team, _ = Team.objects.get_or_create(slug=options["team"], defaults={"name": options["team"].title()})
            user = User.objects.filter(username=username).first()
            if user is None:
                password = secrets.token_urlsafe(12)
                user = User.objects.create_superuser(username=username, email="", password=password)
                password_file.parent.mkdir(parents=True, exist_ok=True)
                password_file.write_text(password)
                password_file.chmod(0o600)
            Membership.objects.get_or_create(team=team, user=user, defaults={"role": Role.ADMIN})
        shown = (
            password_file.read_text().strip()
            if password_file.exists()
            else "(set earlier; reset with `python manage.py changepassword admin`)"
        )
        self.stdout.write(
            f"\nSlipway is running at {options['url']}\n"
            f"  log in as:   {username}\n  password:    {shown}\n"
            f"  admin pages: {options['url']}admin/\n  API:         {options['url']}api/v1/\n"
        )
