"""Several processes' live figures as one gateway's: pure arithmetic on the reports each
process publishes (gateway/live_share.py), so that every worker and every host shows the
same totals. Without Redis the only report is the process's own, and merging it changes
nothing.

Counts (requests, tokens, in flight, dropped log rows) add up. A median cannot be rebuilt
from medians without the samples, so TTFT and TPS are the mean of the processes' medians
weighted by each one's requests over the same five minutes (per minute, for the charts);
when none has recent requests, the plain mean of what they report. Error rates are
weighted the same way. A circuit counts as open when it is open in any process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NotRequired, TypedDict

from gateway.metrics import MINUTES, RECENT

Points = list[tuple[int, float | None]]  # (unix minute, value); lists after a JSON trip
COUNT_SERIES = "requests"  # the chart series that weighs the others
SUMMED = ("requests_per_min", "in_flight", "requests_hour", "requests_5min", "tokens_hour")
CIRCUIT_RANK = {"closed": 0, "half_open": 1, "open": 2}


class RouteReport(TypedDict):
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
    requests_5min: int
    tokens_hour: int


class ProcessReport(TypedDict):
    """One process's figures, as it publishes them (JSON)."""

    instance: str  # host:pid
    config_version: int
    log_dropped: int  # entries dropped (queue full) or refused by the database
    log_waiting: NotRequired[int]  # recorded, not yet written
    log_failing_for: NotRequired[float | None]  # seconds the writer has been failing
    routes: list[RouteReport]
    charts: dict[str, dict[str, Points]]  # provider -> series name -> points
    recent: list[dict[str, Any]]  # finished requests, newest last, "time" in unix seconds
    keys: NotRequired[dict[str, list[int]]]  # limited keys' use (gateway/limits.py `shared`)


class Merged(TypedDict):
    processes: int
    routes: list[RouteReport]
    totals: dict[str, int]
    charts: dict[str, dict[str, Points]]
    recent: list[dict[str, Any]]  # newest first


def weighted_mean(pairs: Iterable[tuple[float | None, float]], digits: int) -> float | None:
    """The mean of the values present, weighted; unweighted when every weight is zero."""
    present = [(value, weight) for value, weight in pairs if value is not None]
    if not present:
        return None
    total = sum(weight for _, weight in present)
    if total <= 0:
        return round(sum(value for value, _ in present) / len(present), digits)
    return round(sum(value * weight for value, weight in present) / total, digits)


def merge_route(rows: Sequence[RouteReport]) -> RouteReport:
    """One route's row from every process that reported it."""
    worst = max(rows, key=lambda row: CIRCUIT_RANK.get(row["circuit"], 0))
    errors = [worst["last_error"], *(row["last_error"] for row in rows)]
    open_fors = [r["open_for"] for r in rows if r["circuit"] == worst["circuit"] and r["open_for"]]
    sums = {name: sum(row[name] for row in rows) for name in SUMMED}
    return RouteReport(
        provider=rows[0]["provider"],
        model=rows[0]["model"],
        requests_per_min=sums["requests_per_min"],
        in_flight=sums["in_flight"],
        ttft_p50_ms=weighted_mean(((r["ttft_p50_ms"], r["requests_5min"]) for r in rows), 1),
        tps=weighted_mean(((r["tps"], r["requests_5min"]) for r in rows), 1),
        error_rate=weighted_mean(((r["error_rate"], r["requests_5min"]) for r in rows), 3) or 0.0,
        circuit=worst["circuit"],
        open_for=max(open_fors) if open_fors else None,
        last_error=next((error for error in errors if error), None),
        requests_hour=sums["requests_hour"],
        requests_5min=sums["requests_5min"],
        tokens_hour=sums["tokens_hour"],
    )


def merge_series(charts: Sequence[dict[str, Points]]) -> dict[str, Points]:
    """One provider's charts: request counts added per minute, the other series weighted by
    each process's requests in that minute. Keeps the latest MINUTES minutes."""
    counts = [dict((m, v) for m, v in chart.get(COUNT_SERIES, [])) for chart in charts]
    minutes = sorted({m for chart in charts for points in chart.values() for m, _ in points})
    minutes = minutes[-MINUTES:]
    merged: dict[str, Points] = {
        COUNT_SERIES: [(m, float(sum(c.get(m) or 0 for c in counts))) for m in minutes]
    }
    names = dict.fromkeys(name for chart in charts for name in chart if name != COUNT_SERIES)
    for name in names:
        values = [dict((m, v) for m, v in chart.get(name, [])) for chart in charts]
        pairs = list(zip(values, counts, strict=True))
        merged[name] = [
            (m, weighted_mean(((v.get(m), c.get(m) or 0) for v, c in pairs), 1)) for m in minutes
        ]
    return merged


def merge_reports(reports: Sequence[ProcessReport]) -> Merged:
    """All processes' figures as one: rows in the order they first appear (the caller's own
    report first), totals recomputed from the merged rows."""
    by_route: dict[tuple[str, str], list[RouteReport]] = {}
    for report in reports:
        for row in report["routes"]:
            by_route.setdefault((row["provider"], row["model"]), []).append(row)
    routes = [merge_route(rows) for rows in by_route.values()]
    providers = sorted({provider for report in reports for provider in report["charts"]})
    charts = {
        provider: merge_series([r["charts"][provider] for r in reports if provider in r["charts"]])
        for provider in providers
    }
    recent = sorted(
        (item for report in reports for item in report["recent"]),
        key=lambda item: item["time"],
        reverse=True,
    )[:RECENT]
    return Merged(
        processes=len(reports),
        routes=routes,
        totals=_totals(routes, reports),
        charts=charts,
        recent=recent,
    )


def _totals(routes: Sequence[RouteReport], reports: Sequence[ProcessReport]) -> dict[str, int]:
    return {
        "requests_per_min": sum(r["requests_per_min"] for r in routes),
        "requests_hour": sum(r["requests_hour"] for r in routes),
        "tokens_hour": sum(r["tokens_hour"] for r in routes),
        "in_flight": sum(r["in_flight"] for r in routes),
        "open_circuits": sum(1 for r in routes if r["circuit"] != "closed"),
        "log_dropped": sum(report["log_dropped"] for report in reports),
        "log_waiting": sum(report.get("log_waiting", 0) for report in reports),
        "log_failing_for": max(
            (report.get("log_failing_for") or 0 for report in reports), default=0
        ),
        "processes": len(reports),
    }
