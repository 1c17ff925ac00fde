"""Live figures per route, merged from traffic (metrics), health (circuits) and the
configuration (snapshot) of this process: the rows behind both the dashboard's overview
and the JSON the terminal monitor polls from GET /live.json, so both show the same
numbers. Pure reading; no database.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.health import CircuitState, HealthView
from gateway.runtime import Runtime

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


@dataclass(frozen=True)
class RouteRow:
    provider: str
    model: str
    requests_per_min: int
    in_flight: int
    ttft_p50_ms: float | None
    tps: float | None
    error_rate: float
    circuit: str
    open_for: float | None
    last_error: str | None
    requests_hour: int


def _row(key: tuple[str, str], figures: Any, view: HealthView, now: float) -> RouteRow:
    open_for = None
    if view.state is not CircuitState.CLOSED and view.open_until is not None:
        open_for = max(0.0, round(view.open_until - now, 1))
    return RouteRow(
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
    )


def route_rows(runtime: Runtime) -> list[RouteRow]:
    """Every configured route, plus any that still has traffic in the last hour."""
    now = time.monotonic()
    figures = {(f.provider, f.model): f for f in runtime.metrics.figures()}
    keys = [r.key for r in runtime.snapshot.routes]
    keys += [k for k in figures if k not in keys]
    return [_row(k, figures.get(k), runtime.health.view(k), now) for k in dict.fromkeys(keys)]


def totals(runtime: Runtime, rows: list[RouteRow]) -> dict[str, Any]:
    return {
        **runtime.metrics.totals(),
        "in_flight": sum(r.in_flight for r in rows),
        "open_circuits": sum(1 for r in rows if r.circuit != "closed"),
        "log_dropped": runtime.logbook.dropped,
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _recent(runtime: Runtime) -> list[dict[str, Any]]:
    """Newest first."""
    return [{**item, "time": _iso(item["time"])} for item in reversed(runtime.metrics.recent)]


def live_feed(runtime: Runtime) -> dict[str, Any]:
    rows = route_rows(runtime)
    routes = [{name: asdict(row)[name] for name in ROUTE_FIELDS} for row in rows]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_version": runtime.snapshot.version,
        "totals": totals(runtime, rows),
        "routes": routes,
        "recent": _recent(runtime),
    }
