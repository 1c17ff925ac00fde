"""`manage.py ensure_admin`: create the first admin account, printing its password once."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create a staff superuser if there is none; print its generated password once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            self.stdout.write("admin account exists (password was shown when it was created)")
            return
        password = secrets.token_urlsafe(18)
        users.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"created admin account '{username}' with password: {password}\n"
                "store it now: it will not be shown again"
            )
        )
