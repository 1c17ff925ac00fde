"""Live figures per route, merged from traffic (metrics), health (circuits) and the
configuration (snapshot): the rows behind both the dashboard's overview and the JSON the
terminal monitor polls from GET /live.json, so both show the same numbers.

`process_report` is this process's figures; `gathered` adds the other processes' (shared
through Redis by gateway/live_share.py, merged by gateway/live_merge.py), so that any
worker or host shows the whole gateway. Pure reading; no database, no Redis.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from gateway.health import CircuitState, HealthView
from gateway.live_merge import Merged, ProcessReport, RouteReport, merge_reports
from gateway.live_share import this_instance
from gateway.runtime import Runtime

SERIES = ("requests", "ttft_ms", "tps")  # the per-minute charts, per provider

ROUTE_FIELDS = (
    "provider",
    "model",
    "requests_per_min",
    "in_flight",
    "ttft_p50_ms",
    "tps",
    "error_rate",
    "circuit",
    "open_for",
    "last_error",
)


def _row(key: tuple[str, str], figures: Any, view: HealthView, now: float) -> RouteReport:
    open_for = None
    if view.state is not CircuitState.CLOSED and view.open_until is not None:
        open_for = max(0.0, round(view.open_until - now, 1))
    return RouteReport(
        provider=key[0],
        model=key[1],
        requests_per_min=figures.requests_per_min if figures else 0,
        in_flight=view.in_flight,
        ttft_p50_ms=figures.ttft_p50_ms if figures else view.ttft_ms,
        tps=figures.tps_p50 if figures and figures.tps_p50 is not None else view.tps,
        error_rate=figures.error_rate if figures else view.error_rate,
        circuit=str(view.state),
        open_for=open_for,
        last_error=view.last_error,
        requests_hour=figures.requests_hour if figures else 0,
        requests_5min=figures.requests_5min if figures else 0,
        tokens_hour=figures.tokens_hour if figures else 0,
    )


def route_rows(runtime: Runtime) -> list[RouteReport]:
    """Every configured route, plus any that still has traffic in the last hour."""
    now = time.monotonic()
    figures = {(f.provider, f.model): f for f in runtime.metrics.figures()}
    keys = [r.key for r in runtime.snapshot.routes]
    keys += [k for k in figures if k not in keys]
    return [_row(k, figures.get(k), runtime.health.view(k), now) for k in dict.fromkeys(keys)]


def process_report(runtime: Runtime, *, charts: bool = True) -> ProcessReport:
    """This process's figures, as plain JSON-ready data (what gateway/live_share.py
    publishes). Call it on the event loop: it reads the loop's metrics and health. The
    charts cost the most (per-minute medians), so callers that show none skip them."""
    metrics = runtime.metrics
    return ProcessReport(
        instance=this_instance(),
        config_version=runtime.snapshot.version,
        log_dropped=runtime.logbook.dropped + runtime.logbook.rejected,
        log_waiting=runtime.logbook.waiting,
        log_failing_for=runtime.logbook.status()["failing_for_seconds"],
        routes=route_rows(runtime),
        charts={
            provider: {name: metrics.series(provider, name) for name in SERIES}
            for provider in metrics.providers()
        }
        if charts
        else {},
        recent=list(metrics.recent),
        keys=runtime.limiter.shared(),
    )


def gathered(runtime: Runtime, *, charts: bool = True) -> Merged:
    """This process's figures merged with the latest of every other live process."""
    reports = [process_report(runtime, charts=charts)]
    if runtime.live_share is not None:
        reports += runtime.live_share.others()
    return merge_reports(reports)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def live_feed(runtime: Runtime) -> dict[str, Any]:
    """GET /live.json: the whole gateway's figures; `served_by` names the answering process."""
    merged = gathered(runtime, charts=False)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_version": runtime.snapshot.version,
        "processes": merged["processes"],
        "served_by": {"instance": this_instance(), "pid": os.getpid()},
        "totals": merged["totals"],
        "routes": [{name: row[name] for name in ROUTE_FIELDS} for row in merged["routes"]],
        "recent": [{**item, "time": _iso(item["time"])} for item in merged["recent"]],
    }
