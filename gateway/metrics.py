"""Live traffic figures per route for the last hour, in one-minute buckets, in memory.

Fed once per finished request (off the hot path's critical section: a few integer
additions); read by the dashboard's broadcaster once a second. Per process: with
REDIS_URL the processes' figures are pooled for display (gateway/live_share.py).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]
MINUTES = 60
SAMPLES_PER_BUCKET = 256  # TTFT/TPS samples kept per minute for the medians
RECENT = 20  # finished requests kept for the terminal monitor's list


@dataclass
class Bucket:
    minute: int
    requests: int = 0
    errors: int = 0
    failovers: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    tps: list[float] = field(default_factory=list)

    def add(
        self,
        *,
        ok: bool,
        failover: bool,
        ttft_ms: float | None,
        tps: float | None,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        self.requests += 1
        self.errors += 0 if ok else 1
        self.failovers += 1 if failover else 0
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if ttft_ms is not None and len(self.ttft_ms) < SAMPLES_PER_BUCKET:
            self.ttft_ms.append(ttft_ms)
        if tps is not None and len(self.tps) < SAMPLES_PER_BUCKET:
            self.tps.append(tps)


def _median(values: Iterable[float]) -> float | None:
    data = list(values)
    return round(statistics.median(data), 1) if data else None


@dataclass(frozen=True)
class RouteFigures:
    provider: str
    model: str
    requests_per_min: int  # requests in the last 60 s (estimated from the two last buckets)
    error_rate: float  # last 5 minutes
    ttft_p50_ms: float | None  # last 5 minutes
    tps_p50: float | None  # last 5 minutes
    requests_hour: int
    tokens_hour: int
    requests_5min: int = 0  # the requests behind error_rate and the medians (to weigh them)


class Metrics:
    def __init__(self, clock: Callable[[], float] = time.time, minutes: int = MINUTES) -> None:
        self._clock = clock
        self._minutes = minutes
        self._routes: dict[Key, deque[Bucket]] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)

    def remember(self, entry: Any) -> None:
        """Keep a small summary of a finished request (newest last)."""
        self.recent.append(
            {
                "time": self._clock(),
                "model": entry.upstream_model or entry.requested_model,
                "requested_model": entry.requested_model,
                "provider": entry.provider,
                "status": entry.status,
                "outcome": entry.outcome,
                "ttft_ms": entry.ttft_ms,
                "duration_ms": entry.duration_ms,
                "output_tokens": entry.output_tokens,
            }
        )

    def _bucket(self, key: Key) -> Bucket:
        minute = int(self._clock() // 60)
        buckets = self._routes.setdefault(key, deque(maxlen=self._minutes))
        if not buckets or buckets[-1].minute != minute:
            buckets.append(Bucket(minute))
        return buckets[-1]

    def observe(
        self,
        key: Key,
        *,
        ok: bool,
        failover: bool = False,
        ttft_ms: float | None = None,
        tps: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        self._bucket(key).add(
            ok=ok,
            failover=failover,
            ttft_ms=ttft_ms,
            tps=tps,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )

    def _recent(self, key: Key, minutes: int) -> list[Bucket]:
        now = int(self._clock() // 60)
        return [b for b in self._routes.get(key, ()) if now - b.minute < minutes]

    def _last_minute(self, key: Key) -> int:
        """This minute's requests plus the share of the previous minute's that fall within
        the last 60 seconds (they are assumed spread evenly)."""
        now = self._clock()
        minute = int(now // 60)
        counts = {b.minute: b.requests for b in self._recent(key, 2)}
        still_inside = 1 - (now - minute * 60) / 60
        return round(counts.get(minute, 0) + counts.get(minute - 1, 0) * still_inside)

    def figures(self) -> list[RouteFigures]:
        out = []
        for key in sorted(self._routes):
            last5, hour = self._recent(key, 5), self._recent(key, self._minutes)
            if not hour:
                continue
            requests5 = sum(b.requests for b in last5)
            out.append(
                RouteFigures(
                    provider=key[0],
                    model=key[1],
                    requests_per_min=self._last_minute(key),
                    error_rate=round(sum(b.errors for b in last5) / requests5, 3)
                    if requests5
                    else 0,
                    ttft_p50_ms=_median(v for b in last5 for v in b.ttft_ms),
                    tps_p50=_median(v for b in last5 for v in b.tps),
                    requests_hour=sum(b.requests for b in hour),
                    tokens_hour=sum(b.input_tokens + b.output_tokens for b in hour),
                    requests_5min=requests5,
                )
            )
        return out

    def series(self, provider: str, field_name: str) -> list[tuple[int, float | None]]:
        """Per minute of the last hour, one figure summed (requests) or the median (ttft_ms,
        tps) over all of a provider's routes."""
        now = int(self._clock() // 60)
        per_minute: dict[int, list[Bucket]] = {}
        for (name, _), buckets in self._routes.items():
            if name == provider:
                for b in buckets:
                    per_minute.setdefault(b.minute, []).append(b)
        points: list[tuple[int, float | None]] = []
        for minute in range(now - self._minutes + 1, now + 1):
            buckets = per_minute.get(minute, [])
            points.append((minute, _series_value(buckets, field_name)))
        return points

    def providers(self) -> list[str]:
        return sorted({provider for provider, _ in self._routes})

    def totals(self) -> dict[str, Any]:
        figures = self.figures()
        return {
            "requests_per_min": sum(f.requests_per_min for f in figures),
            "requests_hour": sum(f.requests_hour for f in figures),
            "tokens_hour": sum(f.tokens_hour for f in figures),
        }


def _series_value(buckets: list[Bucket], field_name: str) -> float | None:
    if field_name == "requests":
        return float(sum(b.requests for b in buckets))
    values = [v for b in buckets for v in getattr(b, field_name)]
    return _median(values)


def observe_entry(metrics: Metrics, entry: Any) -> None:
    """Count a finished request once per attempt, on the route each attempt used."""
    for attempt in entry.attempts:
        won = attempt.outcome == "won"
        metrics.observe(
            (attempt.provider, attempt.model),
            ok=won and entry.outcome != "error",
            failover=won and attempt.seq > 1,
            ttft_ms=entry.ttft_ms if won else None,
            tps=entry.tps if won else None,
            input_tokens=entry.input_tokens if won else 0,
            output_tokens=entry.output_tokens if won else 0,
        )
    metrics.remember(entry)
