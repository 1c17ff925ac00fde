"""Admission control for /v1/messages, in memory: no database call on the request path.

Checked in this order when a request arrives, after its key is known:
1. requests in progress in this process, all keys together (MAX_CONCURRENT_REQUESTS):
   529 overloaded_error — the gateway is full, another instance may not be;
2. the key's requests in progress (`concurrent`): 429 rate_limit_error;
3. the key's requests per minute (`requestsPerMinute`, a token bucket refilled evenly):
   429, retry-after the time until the next request is allowed;
4. the key's token budgets (`tokensPerDay`, `tokensPerMonth`, UTC calendar periods,
   input + output tokens as the providers report them): 429 until the period ends.

Token use is learned from finished requests (`spend`) and, for the budgets, from the
database every few seconds off the path (`set_usage`), so that every process sees what
the others spent. A budget can be overrun by what the requests in progress at the moment
it runs out spend, and, with several processes, by what the others spent since the last
refresh.

With several processes sharing Redis, the key's concurrency and requests per minute hold
for the whole gateway too: each process publishes what it has in progress and has
admitted per key (`shared`, in its live report, once a second) and takes in everyone
else's (`observe`): their requests in progress count against the key's concurrency, and
what they admitted since the last exchange is taken from this process's bucket, so every
bucket drains at the gateway's rate. Either can be overrun by what the others admitted
since the last exchange (about a second).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A key's limits; None means unlimited."""

    concurrent: int | None = None
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None

    @property
    def budgeted(self) -> bool:
        return self.tokens_per_day is not None or self.tokens_per_month is not None


UNLIMITED = KeyLimits()


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 429 or 529
    message: str
    retry_after: int  # whole seconds, at least 1

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Spend:
    """A key's token use in the current day and month: the database's figure at the last
    refresh plus what this process saw finish since."""

    day: str = ""
    month: str = ""
    day_base: int = 0
    month_base: int = 0
    local: int = 0  # this process's running total, never reset
    local_at_refresh: int = 0

    def used(self) -> tuple[int, int]:
        extra = self.local - self.local_at_refresh
        return self.day_base + extra, self.month_base + extra


@dataclass
class Limiter:
    total: int
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    in_flight: int = 0
    _per_key: dict[int, int] = field(default_factory=dict)
    _buckets: dict[int, _Bucket] = field(default_factory=dict)
    _spend: dict[int, _Spend] = field(default_factory=dict)
    _admitted: dict[int, int] = field(default_factory=dict)  # per key, ever (for the others)
    _others_busy: dict[int, int] = field(default_factory=dict)  # the others' in progress
    _others_seen: dict[str, dict[int, int]] = field(default_factory=dict)  # their _admitted
    _debt: dict[int, int] = field(default_factory=dict)  # their admissions not yet taken

    def admit(self, key_id: int | None, limits: KeyLimits) -> Refusal | None:
        """Take a place for one request, or say why not. Every admitted request must be
        given back with `release`."""
        if self.in_flight >= self.total:
            return Refusal(529, f"the gateway is at its limit of {self.total} requests", 1)
        if key_id is not None and limits != UNLIMITED:
            refusal = self._check_key(key_id, limits)
            if refusal is not None:
                return refusal
            self._per_key[key_id] = self._per_key.get(key_id, 0) + 1
            self._admitted[key_id] = self._admitted.get(key_id, 0) + 1
        self.in_flight += 1
        return None

    def release(self, key_id: int | None, limits: KeyLimits) -> None:
        self.in_flight -= 1
        if key_id is not None and limits != UNLIMITED:
            left = self._per_key.get(key_id, 1) - 1
            if left > 0:
                self._per_key[key_id] = left
            else:
                self._per_key.pop(key_id, None)

    def shared(self) -> dict[str, list[int]]:
        """For the other processes, per limited key (id as text, for JSON): requests in
        progress here and requests admitted here so far."""
        return {
            str(key_id): [self._per_key.get(key_id, 0), admitted]
            for key_id, admitted in self._admitted.items()
        }

    def observe(self, others: Mapping[str, Mapping[str, Sequence[int]]]) -> None:
        """The other live processes' `shared()`, by instance, as of the latest exchange
        (empty when they cannot be reached: each process is on its own again)."""
        busy: dict[int, int] = {}
        seen: dict[str, dict[int, int]] = {}
        for instance, keys in others.items():
            if not isinstance(keys, Mapping):
                continue  # not what `shared` writes
            before = self._others_seen.get(instance)
            counts = seen[instance] = {}
            for raw_id, use in keys.items():
                try:
                    key_id, (in_progress, admitted) = int(raw_id), map(int, use)
                except (TypeError, ValueError):
                    continue  # not what `shared` writes: another version's, or garbage
                busy[key_id] = busy.get(key_id, 0) + in_progress
                counts[key_id] = admitted
                # a process seen for the first time (or restarted) brings no debt: only
                # what it admits from now on is news
                new = admitted - before.get(key_id, 0) if before is not None else 0
                if new > 0:
                    self._debt[key_id] = self._debt.get(key_id, 0) + new
        self._others_busy, self._others_seen = busy, seen

    def spend(self, key_id: int | None, tokens: int) -> None:
        """Count a finished request's tokens towards its key's budgets."""
        if key_id is not None and tokens > 0:
            self._spend.setdefault(key_id, _Spend()).local += tokens

    def local_spend(self) -> dict[int, int]:
        """Running totals to hand to `set_usage` (read before the database is asked)."""
        return {key_id: spend.local for key_id, spend in self._spend.items()}

    def set_usage(
        self,
        usage: Mapping[int, tuple[int, int]],
        marks: Mapping[int, int],
        day: str,
        month: str,
    ) -> None:
        """The database's (day, month) token sums per key, queried after `marks` were
        taken from `local_spend()`: what finished here since then still counts on top."""
        for key_id in set(usage) | set(self._spend):
            spend = self._spend.setdefault(key_id, _Spend())
            spend.day_base, spend.month_base = usage.get(key_id, (0, 0))
            spend.local_at_refresh = marks.get(key_id, spend.local_at_refresh)
            spend.day, spend.month = day, month

    def _check_key(self, key_id: int, limits: KeyLimits) -> Refusal | None:
        busy = self._per_key.get(key_id, 0) + self._others_busy.get(key_id, 0)
        if limits.concurrent is not None and busy >= limits.concurrent:
            return Refusal(
                429, f"this key may have {limits.concurrent} requests in progress at once", 1
            )
        if limits.requests_per_minute is not None:
            refusal = self._take_from_bucket(key_id, limits.requests_per_minute)
            if refusal is not None:
                return refusal
        if limits.budgeted:
            return self._check_budget(key_id, limits)
        return None

    def _take_from_bucket(self, key_id: int, per_minute: int) -> Refusal | None:
        rate = per_minute / 60.0
        now = self.clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(per_minute), now)
        bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.at) * rate)
        bucket.tokens -= self._debt.pop(key_id, 0)  # what the other processes admitted
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        wait = math.ceil((1.0 - bucket.tokens) / rate) if rate > 0 else 60
        return Refusal(429, f"this key may send {per_minute} requests per minute", max(1, wait))

    def _check_budget(self, key_id: int, limits: KeyLimits) -> Refusal | None:
        spend = self._spend.get(key_id)
        if spend is None:
            return None
        now = self.now()
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        used_day, used_month = spend.used()
        if spend.day and spend.day != day:  # a new day since the last refresh
            used_day = 0
        if spend.month and spend.month != month:
            used_month = 0
        periods = (
            ("today", used_day, limits.tokens_per_day, "at 00:00 UTC", _next_day(now)),
            (
                "this month",
                used_month,
                limits.tokens_per_month,
                "on the 1st, UTC",
                _next_month(now),
            ),
        )
        for period, used, budget, renews, renewal in periods:
            if budget is not None and used >= budget:
                return Refusal(
                    429,
                    f"this key's token budget for {period} is spent "
                    f"({used} of {budget} tokens; it renews {renews})",
                    _seconds_until(now, renewal),
                )
        return None


def _next_day(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def _next_month(now: datetime) -> datetime:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def _seconds_until(now: datetime, then: datetime) -> int:
    return max(1, math.ceil((then - now).total_seconds()))


def period_starts(now: datetime) -> tuple[datetime, datetime]:
    """The start of the current UTC day and month."""
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return day, day.replace(day=1)
