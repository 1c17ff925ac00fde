"""`manage.py create_api_key --name N [--expires-days D]`: make a client key, shown once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from gateway.models import ApiKey


def create_cli_key(name: str, expires_days: int | None = None) -> tuple[ApiKey, str]:
    expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
    return ApiKey.issue(name, ApiKey.Source.CLI, expires_at)


class Command(BaseCommand):
    help = "Create a client API key; the key is printed once and only its hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="a label for the key")
        parser.add_argument("--expires-days", type=int, help="days until the key stops working")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        days = options["expires_days"]
        if not name or len(name) > 200:
            raise CommandError("--name must be 1 to 200 characters")
        if days is not None and days < 1:
            raise CommandError("--expires-days must be at least 1")
        row, key = create_cli_key(name, days)
        expiry = f", expires {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ""
        self.stdout.write(
            f"Created key {name!r}{expiry}. Store it now, it will not be shown again:"
        )
        self.stdout.write(f"  {key}")
