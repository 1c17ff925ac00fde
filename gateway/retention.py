"""Retention: request-log rows older than `dataRetentionDays` are deleted in batches, after
their sums are added to per-day, per-route aggregates (DailyRouteStats)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from gateway.models import DailyRouteStats, RequestLog, RoutingSettings

SUMS = {
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cache_read_tokens": Sum("cache_read_tokens"),
    "cache_creation_tokens": Sum("cache_creation_tokens"),
    "ttft_ms_sum": Sum("ttft_ms"),
    "ttft_count": Count("ttft_ms"),
    "duration_ms_sum": Sum("duration_ms"),
}


@dataclass(frozen=True)
class PruneReport:
    cutoff: datetime
    deleted: int
    batches: int


def _aggregate(ids: list[int]) -> None:
    groups = (
        RequestLog.objects.filter(pk__in=ids)
        .annotate(day=TruncDate("created_at"))
        .values("day", "provider", "upstream_model")
        .annotate(requests=Count("id"), errors=Count("id", filter=Q(outcome="error")), **SUMS)
    )
    for group in groups:
        stats, _ = DailyRouteStats.objects.get_or_create(
            day=group["day"], provider=group["provider"], model=group["upstream_model"]
        )
        counts = {k: F(k) + (group[k] or 0) for k in ("requests", "errors", *SUMS)}
        DailyRouteStats.objects.filter(pk=stats.pk).update(**counts)


def prune(days: int | None = None, batch: int = 5000, now: datetime | None = None) -> PruneReport:
    """Aggregate then delete every row older than the retention period, a batch per
    transaction, so a prune of millions of rows never holds one long lock."""
    days = days if days is not None else RoutingSettings.load().data_retention_days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = batches = 0
    while True:
        with transaction.atomic():
            # Locked and skipped if locked: two processes pruning at once (several hosts)
            # take disjoint batches instead of adding the same rows to the sums twice. On
            # SQLite, whose transactions take the write lock as they begin, the second
            # waits and then sees the rows gone.
            ids = list(
                RequestLog.objects.select_for_update(skip_locked=True)
                .filter(created_at__lt=cutoff)
                .order_by("created_at")
                .values_list("id", flat=True)[:batch]
            )
            if not ids:
                return PruneReport(cutoff, deleted, batches)
            _aggregate(ids)
            RequestLog.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
        batches += 1
