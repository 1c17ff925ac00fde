"""Token budgets across processes: what each budgeted key spent today and this month.

Every BUDGET_REFRESH_SECONDS the runtime sums the request log for the keys that have a
budget, on the database thread, and hands the sums to its Limiter; between refreshes the
Limiter adds what finished in this process. So every process sees every process's
spending within one refresh, and the request path never waits for the sums.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from datetime import UTC, datetime

from gateway.limits import Limiter, period_starts
from gateway.snapshot import Snapshot

log = logging.getLogger(__name__)


def usage(key_ids: Iterable[int], now: datetime) -> dict[int, tuple[int, int]]:
    """{key id: (tokens today, tokens this month)}, input + output, UTC periods."""
    from django.db.models import F, Q, Sum

    from gateway.models import RequestLog

    day_start, month_start = period_starts(now)
    tokens = F("input_tokens") + F("output_tokens")
    rows = (
        RequestLog.objects.filter(api_key_id__in=list(key_ids), created_at__gte=month_start)
        .values("api_key_id")
        .annotate(month=Sum(tokens), day=Sum(tokens, filter=Q(created_at__gte=day_start)))
        .order_by()
    )
    return {row["api_key_id"]: (row["day"] or 0, row["month"] or 0) for row in rows}


async def refresh(limiter: Limiter, snapshot: Snapshot, executor: Executor) -> None:
    ids = [key.id for key in snapshot.keys.values() if key.limits.budgeted]
    if not ids:
        return
    marks = limiter.local_spend()  # before the query: what finishes during it counts on top
    now = datetime.now(UTC)
    found = await asyncio.get_running_loop().run_in_executor(executor, usage, ids, now)
    limiter.set_usage(found, marks, now.strftime("%Y-%m-%d"), now.strftime("%Y-%m"))


async def refresh_forever(
    limiter: Limiter, snapshot: Callable[[], Snapshot], executor: Executor, interval: float
) -> None:
    while True:
        try:
            await refresh(limiter, snapshot(), executor)
        except Exception:
            log.exception("token budgets: refreshing usage failed; keeping the last figures")
        await asyncio.sleep(interval)
