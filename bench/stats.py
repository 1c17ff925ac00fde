"""From raw runs to the figures of one table row per (scenario, target)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.runner import RunResult


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between the closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _per_1k(seconds: float | None, requests: int) -> float | None:
    return None if seconds is None or requests == 0 else seconds / requests * 1000


@dataclass
class Row:
    scenario: str
    target: str
    rounds: int
    requests: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    elapsed: float
    rps: float
    rps_by_round: list[float]
    p50: float | None
    p99: float | None
    ttfb_p50: float | None
    ttfb_p99: float | None
    ttft_p50: float | None = None  # streams: the first content event
    ttft_p99: float | None = None
    added_p50: float | None = None
    added_p99: float | None = None
    added_ttft_p50: float | None = None
    events_per_reply: float | None = None  # streams: SSE events per successful reply
    cpu_us_per_chunk: float | None = None  # streams: CPU per request / events per reply
    rss_idle_mb: float | None = None
    rss_peak_mb: float | None = None
    cpu_per_1k: float | None = None  # the proxy's CPU seconds per 1,000 requests
    fake_cpu_per_1k: float | None = None
    client_cpu_per_1k: float | None = None
    cores_busy: float | None = None  # proxy + fake + load generator CPU / wall time
    other_cores: float | None = None  # the rest of the machine (other users' work) / wall time
    truncated: bool = False
    notes: list[str] = field(default_factory=list)


def _cpu_sums(runs: Sequence[RunResult]) -> tuple[float | None, float, float]:
    target = [r.target_cpu for r in runs]
    proxy = None if any(c is None for c in target) else sum(c or 0.0 for c in target)
    fake = sum(r.fake_cpu for r in runs)
    client = sum(float(r.load["client_cpu"]) for r in runs)
    return proxy, fake, client


def make_row(runs: Sequence[RunResult], idle_rss_kb: int | None) -> Row:
    """Pool the rounds of one (scenario, target): samples merged, counts and times summed."""
    latencies = [x for r in runs for x in r.load["latencies"]]
    ttfbs = [x for r in runs for x in r.load["ttfbs"]]
    ttfts = [x for r in runs for x in r.load.get("ttfts", [])]
    events = sum(int(r.load.get("events", 0)) for r in runs)
    ok = sum(int(r.load["ok"]) for r in runs)
    elapsed = sum(float(r.load["elapsed"]) for r in runs)
    kinds: Counter[str] = Counter()
    for run in runs:
        kinds.update(run.load["error_kinds"])
    proxy_cpu, fake_cpu, client_cpu = _cpu_sums(runs)
    peaks = [r.rss_peak_kb for r in runs if r.rss_peak_kb is not None]
    cpu_per_1k = _per_1k(proxy_cpu, ok)
    per_reply = events / ok if events and ok else None
    return Row(
        scenario=runs[0].scenario,
        target=runs[0].target,
        rounds=len(runs),
        requests=sum(int(r.load["requests"]) for r in runs),
        ok=ok,
        errors=sum(kinds.values()),
        error_kinds=dict(kinds),
        elapsed=elapsed,
        rps=ok / elapsed if elapsed else 0.0,
        rps_by_round=[int(r.load["ok"]) / float(r.load["elapsed"]) for r in runs],
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        ttfb_p50=percentile(ttfbs, 50),
        ttfb_p99=percentile(ttfbs, 99),
        ttft_p50=percentile(ttfts, 50),
        ttft_p99=percentile(ttfts, 99),
        events_per_reply=per_reply,
        # s per 1,000 requests = ms per request; x 1000 / events = us per event (chunk)
        cpu_us_per_chunk=cpu_per_1k * 1000 / per_reply if cpu_per_1k and per_reply else None,
        rss_idle_mb=idle_rss_kb / 1024 if idle_rss_kb else None,
        rss_peak_mb=max(peaks) / 1024 if peaks else None,
        cpu_per_1k=cpu_per_1k,
        fake_cpu_per_1k=_per_1k(fake_cpu, ok),
        client_cpu_per_1k=_per_1k(client_cpu, ok),
        truncated=any(bool(r.load["truncated"]) for r in runs),
        **_cores(runs, fake_cpu + client_cpu + sum(r.target_cpu_window or 0.0 for r in runs)),
    )


def _cores(runs: Sequence[RunResult], ours: float) -> dict[str, float | None]:
    """Cores kept busy by the bench's processes and by everything else on the machine."""
    window = sum(r.window for r in runs)
    if window <= 0:
        return {"cores_busy": None, "other_cores": None}
    others = max(0.0, sum(r.machine_cpu for r in runs) - ours)
    return {"cores_busy": ours / window, "other_cores": others / window}


def add_overhead(rows: Sequence[Row]) -> None:
    """Fill each target row's added latency and TTFT from the direct row of the same
    scenario (direct to the fake that scenario uses)."""
    direct = {row.scenario: row for row in rows if row.target == "direct"}
    for row in rows:
        base = direct.get(row.scenario)
        if row.target != "direct" and base is not None:
            row.added_p50 = _diff(row.p50, base.p50)
            row.added_p99 = _diff(row.p99, base.p99)
            row.added_ttft_p50 = _diff(row.ttft_p50, base.ttft_p50)
