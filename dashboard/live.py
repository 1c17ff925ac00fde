"""The live overview's figures (gateway.live_feed's per-route rows and totals) plus the
last-hour charts. Pure reading; no database."""

from __future__ import annotations

from typing import Any

from gateway.live_feed import route_rows, totals
from gateway.runtime import Runtime

CHART_FIELDS = (("requests", "requests/min"), ("ttft_ms", "TTFT p50 ms"), ("tps", "TPS p50"))


def overview(runtime: Runtime) -> dict[str, Any]:
    """Everything the overview shows, for the page and for each websocket push."""
    rows = route_rows(runtime)
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
        "totals": totals(runtime, rows),
        "charts": charts,
        "config_version": runtime.snapshot.version,
    }
