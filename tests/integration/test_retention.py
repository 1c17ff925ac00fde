"""Retention deletes old request-log rows in batches and keeps their daily sums."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from gateway.models import Attempt, DailyRouteStats, RequestLog, RoutingSettings
from gateway.retention import prune

pytestmark = pytest.mark.django_db


def log_row(days_ago: float, **fields) -> RequestLog:
    row = RequestLog.objects.create(
        created_at=timezone.now() - timedelta(days=days_ago),
        provider=fields.pop("provider", "acme"),
        upstream_model=fields.pop("model", "m1"),
        input_tokens=10,
        output_tokens=5,
        ttft_ms=100.0,
        duration_ms=400.0,
        **fields,
    )
    Attempt.objects.create(
        request=row, seq=1, provider=row.provider, model=row.upstream_model, outcome="won"
    )
    return row


@pytest.mark.postgres
def test_old_rows_go_in_batches_and_their_sums_stay() -> None:
    for _ in range(7):
        log_row(40)
    log_row(40, outcome="error")
    log_row(35, provider="other", model="m2")
    recent = log_row(2)
    report = prune(days=30, batch=3)

    assert (report.deleted, report.batches) == (9, 3)
    assert list(RequestLog.objects.values_list("pk", flat=True)) == [recent.pk]
    assert Attempt.objects.count() == 1, "attempts go with their rows"
    acme = DailyRouteStats.objects.get(provider="acme", model="m1")
    assert (acme.requests, acme.errors, acme.input_tokens, acme.output_tokens) == (8, 1, 80, 40)
    assert (acme.ttft_count, acme.ttft_ms_sum, acme.duration_ms_sum) == (8, 800.0, 3200.0)
    assert DailyRouteStats.objects.get(provider="other").requests == 1


def test_running_it_again_counts_nothing_twice() -> None:
    log_row(40)
    prune(days=30)
    prune(days=30)
    assert DailyRouteStats.objects.get().requests == 1


def test_the_command_uses_the_configured_retention(capsys) -> None:
    RoutingSettings.objects.create(pk=1, data_retention_days=7)
    log_row(10)
    log_row(3)
    call_command("prune_logs")
    assert RequestLog.objects.count() == 1
    assert "deleted 1 request-log rows" in capsys.readouterr().out


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_prunes_at_once_count_every_row_once() -> None:
    """Two hosts pruning at the same moment take disjoint batches (PostgreSQL) or wait
    for each other (SQLite): the daily sums count each pruned row exactly once."""
    import threading

    from django.db import connections

    old = timezone.now() - timedelta(days=40)
    RequestLog.objects.bulk_create(
        RequestLog(created_at=old, provider="acme", upstream_model="m1", output_tokens=1)
        for _ in range(600)
    )
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def prune_here() -> None:
        try:
            start.wait()
            prune(days=30, batch=50)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=prune_here) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert not RequestLog.objects.exists()
    stats = DailyRouteStats.objects.get()
    assert (stats.requests, stats.output_tokens) == (600, 600)
