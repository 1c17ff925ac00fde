"""`manage.py prune_logs [--days N]`: delete old request-log rows, keeping daily sums."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from gateway.retention import prune


class Command(BaseCommand):
    help = "Delete request-log rows older than dataRetentionDays, keeping daily aggregates."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="keep this many days (default: auth.dataRetentionDays, 30)",
        )
        parser.add_argument("--batch", type=int, default=5000)

    def handle(self, *args: Any, days: int | None, batch: int, **options: Any) -> None:
        report = prune(days=days, batch=batch)
        self.stdout.write(
            f"deleted {report.deleted} request-log rows older than {report.cutoff:%Y-%m-%d %H:%M} "
            f"UTC in {report.batches} batches; their daily sums are kept"
        )
