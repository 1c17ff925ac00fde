"""The live overview's figures: traffic (metrics), health (circuits) and configuration
(snapshot) of this process, merged per route. Pure reading; no database."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.health import CircuitState, HealthView
from gateway.runtime import Runtime

CHART_FIELDS = (("requests", "requests/min"), ("ttft_ms", "TTFT p50 ms"), ("tps", "TPS p50"))


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


def overview(runtime: Runtime) -> dict[str, Any]:
    """Everything the overview shows, for the page and for each websocket push."""
    now = time.monotonic()
    figures = {(f.provider, f.model): f for f in runtime.metrics.figures()}
    keys = [r.key for r in runtime.snapshot.routes]
    keys += [k for k in figures if k not in keys]
    rows = [_row(k, figures.get(k), runtime.health.view(k), now) for k in dict.fromkeys(keys)]
    charts = [
        {
            "provider": provider,
            "series": [
                (label, runtime.metrics.series(provider, name)) for name, label in CHART_FIELDS
            ],
        }
        for provider in runtime.metrics.providers()
    ]
    return {
        "rows": rows,
        "totals": {
            **runtime.metrics.totals(),
            "in_flight": sum(r.in_flight for r in rows),
            "open_circuits": sum(1 for r in rows if r.circuit != "closed"),
            "log_dropped": runtime.logbook.dropped,
        },
        "charts": charts,
        "config_version": runtime.snapshot.version,
    }
