"""The live overview's figures (gateway.live_feed's per-route rows and totals, for every
process sharing Redis) plus the last-hour charts. Pure reading; no database."""

from __future__ import annotations

from typing import Any

from gateway.live_feed import gathered
from gateway.runtime import Runtime

CHART_FIELDS = (("requests", "requests/min"), ("ttft_ms", "TTFT p50 ms"), ("tps", "TPS p50"))


def overview(runtime: Runtime) -> dict[str, Any]:
    """Everything the overview shows, for the page and for each websocket push."""
    merged = gathered(runtime)
    charts = [
        {
            "provider": provider,
            "series": [(label, series.get(name, [])) for name, label in CHART_FIELDS],
        }
        for provider, series in merged["charts"].items()
    ]
    return {
        "rows": merged["routes"],
        "totals": merged["totals"],
        "charts": charts,
        "config_version": runtime.snapshot.version,
    }
