"""Several processes' live figures merge into one gateway's (gateway.live_merge)."""

from __future__ import annotations

from typing import Any

from gateway.live_merge import (
    ProcessReport,
    RouteReport,
    merge_reports,
    merge_series,
    weighted_mean,
)
from gateway.metrics import MINUTES, RECENT


def route(provider: str = "acme", model: str = "m1", **figures: Any) -> RouteReport:
    row: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "requests_per_min": 0,
        "in_flight": 0,
        "ttft_p50_ms": None,
        "tps": None,
        "error_rate": 0.0,
        "circuit": "closed",
        "open_for": None,
        "last_error": None,
        "requests_hour": 0,
        "requests_5min": 0,
        "tokens_hour": 0,
    }
    row.update(figures)
    return RouteReport(**row)


def report(
    instance: str,
    routes: list[RouteReport],
    *,
    charts: dict[str, dict[str, list[tuple[int, float | None]]]] | None = None,
    recent: list[dict[str, Any]] | None = None,
    log_dropped: int = 0,
    log_waiting: int = 0,
    log_failing_for: float | None = None,
) -> ProcessReport:
    return ProcessReport(
        instance=instance,
        config_version=3,
        log_dropped=log_dropped,
        log_waiting=log_waiting,
        log_failing_for=log_failing_for,
        routes=routes,
        charts=charts or {},
        recent=recent or [],
    )


def test_a_single_report_is_shown_as_it_is() -> None:
    row = route(requests_per_min=4, ttft_p50_ms=120.0, tps=55.5, requests_5min=9, error_rate=0.111)
    merged = merge_reports([report("h:1", [row], log_dropped=2)])
    assert merged["routes"] == [row]
    assert merged["processes"] == 1
    assert merged["totals"]["requests_per_min"] == 4 and merged["totals"]["log_dropped"] == 2


def test_counts_add_up_across_processes() -> None:
    a = route(requests_per_min=3, in_flight=2, requests_hour=30, tokens_hour=900, requests_5min=5)
    b = route(requests_per_min=7, in_flight=1, requests_hour=10, tokens_hour=100, requests_5min=5)
    first = report("h:1", [a], log_dropped=1, log_waiting=40, log_failing_for=7.5)
    merged = merge_reports([first, report("h:2", [b], log_waiting=2)])
    row = merged["routes"][0]
    assert (row["requests_per_min"], row["in_flight"], row["requests_hour"]) == (10, 3, 40)
    assert merged["totals"] == {
        "requests_per_min": 10,
        "requests_hour": 40,
        "tokens_hour": 1000,
        "in_flight": 3,
        "open_circuits": 0,
        "log_dropped": 1,
        "log_waiting": 42,
        "log_failing_for": 7.5,  # the longest of the processes that are failing
        "processes": 2,
    }


def test_ttft_and_tps_are_the_request_weighted_mean_of_the_medians() -> None:
    busy = route(ttft_p50_ms=100.0, tps=60.0, error_rate=0.0, requests_5min=30)
    quiet = route(ttft_p50_ms=500.0, tps=20.0, error_rate=1.0, requests_5min=10)
    row = merge_reports([report("h:1", [busy]), report("h:2", [quiet])])["routes"][0]
    assert row["ttft_p50_ms"] == 200.0  # (100*30 + 500*10) / 40
    assert row["tps"] == 50.0
    assert row["error_rate"] == 0.25


def test_without_recent_requests_the_figures_are_a_plain_mean() -> None:
    a, b = route(ttft_p50_ms=100.0, tps=None), route(ttft_p50_ms=300.0, tps=40.0)
    row = merge_reports([report("h:1", [a]), report("h:2", [b])])["routes"][0]
    assert (row["ttft_p50_ms"], row["tps"]) == (200.0, 40.0)


def test_a_circuit_open_in_any_process_is_open_with_its_reason() -> None:
    closed = route(circuit="closed", last_error="old timeout")
    half = route(circuit="half_open", open_for=0.0, last_error="probe pending")
    opened = route(circuit="open", open_for=12.5, last_error="503 overloaded")
    merged = merge_reports([report("h:1", [closed]), report("h:2", [opened, route("x", "y")])])
    assert merged["routes"][0]["circuit"] == "open"
    assert merged["routes"][0]["open_for"] == 12.5
    assert merged["routes"][0]["last_error"] == "503 overloaded"
    assert merged["totals"]["open_circuits"] == 1
    probing = merge_reports([report("h:1", [half]), report("h:2", [closed])])
    assert probing["routes"][0]["circuit"] == "half_open"


def test_a_route_only_one_process_has_seen_is_kept_after_the_others() -> None:
    merged = merge_reports(
        [report("h:1", [route("a", "1")]), report("h:2", [route("b", "2"), route("a", "1")])]
    )
    assert [(r["provider"], r["model"]) for r in merged["routes"]] == [("a", "1"), ("b", "2")]


def test_chart_requests_add_up_per_minute_and_ttft_is_weighted_by_them() -> None:
    one = {"requests": [(100, 3.0), (101, 0.0)], "ttft_ms": [(100, 100.0), (101, None)]}
    two = {"requests": [(100, 1.0), (101, 2.0)], "ttft_ms": [(100, 500.0), (101, 80.0)]}
    merged = merge_series([one, two])
    assert merged["requests"] == [(100, 4.0), (101, 2.0)]
    assert merged["ttft_ms"] == [(100, 200.0), (101, 80.0)]


def test_charts_keep_the_last_hour_when_processes_straddle_a_minute() -> None:
    early = {"requests": [(m, 1.0) for m in range(1000, 1000 + MINUTES)]}
    late = {"requests": [(m, 1.0) for m in range(1001, 1001 + MINUTES)]}
    merged = merge_series([early, late])["requests"]
    assert len(merged) == MINUTES
    assert merged[0] == (1001, 2.0) and merged[-1] == (1000 + MINUTES, 1.0)


def test_charts_are_merged_per_provider() -> None:
    charts_a = {"acme": {"requests": [(5, 1.0)]}}
    charts_b = {"acme": {"requests": [(5, 2.0)]}, "zeta": {"requests": [(5, 4.0)]}}
    merged = merge_reports([report("h:1", [], charts=charts_a), report("h:2", [], charts=charts_b)])
    assert merged["charts"] == {"acme": {"requests": [(5, 3.0)]}, "zeta": {"requests": [(5, 4.0)]}}


def test_recent_requests_interleave_newest_first_and_are_capped() -> None:
    a = [{"time": float(t), "model": "a"} for t in range(0, 40, 2)]
    b = [{"time": float(t), "model": "b"} for t in range(1, 40, 2)]
    recent = merge_reports([report("h:1", [], recent=a), report("h:2", [], recent=b)])["recent"]
    assert len(recent) == RECENT
    assert [item["time"] for item in recent[:3]] == [39.0, 38.0, 37.0]


def test_weighted_mean_ignores_missing_values() -> None:
    assert weighted_mean([(None, 10), (4.0, 1)], 1) == 4.0
    assert weighted_mean([(None, 10)], 1) is None
    assert weighted_mean([], 1) is None
