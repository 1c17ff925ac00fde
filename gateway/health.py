"""How each (provider, model) route has been doing lately, and whether it may be tried now.

Pure state and arithmetic over an injected clock: no I/O, no locks (one event loop owns a
registry). Routing reads immutable `HealthView`s; dispatch reports outcomes. The circuit is
CLOSED -> OPEN (consecutive failures, or an error rate over a time window, or a forced
Retry-After) -> HALF_OPEN once the cooldown has passed (checked lazily when read) -> one
probe decides between CLOSED and OPEN again.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Key = tuple[str, str]  # (provider name, upstream model name)

MAX_OUTCOMES = 1000  # per route: bounds memory whatever the request rate


@dataclass(frozen=True)
class CircuitPolicy:
    failure_threshold: int = 5  # consecutive failures that open the circuit
    error_rate: float = 0.5  # ...or this failure share over the window
    window: float = 60.0  # seconds the error-rate window covers (older outcomes age out)
    min_requests: int = 10  # the error-rate rule needs at least this many outcomes
    cooldown: float = 30.0  # seconds open before a half-open probe

    @classmethod
    def from_config(cls, circuit: Mapping[str, Any]) -> CircuitPolicy:
        """Keys as written in the config file (camelCase, seconds); missing keys -> defaults."""
        base = cls()
        return cls(
            failure_threshold=int(circuit.get("failureThreshold", base.failure_threshold)),
            error_rate=float(circuit.get("errorRate", base.error_rate)),
            window=float(circuit.get("window", base.window)),
            min_requests=int(circuit.get("minRequests", base.min_requests)),
            cooldown=float(circuit.get("cooldown", base.cooldown)),
        )


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class HealthView:
    """What routing reads: an immutable copy of one route's health."""

    tps: float | None = None  # EWMA output tokens/s; None = unmeasured
    ttft_ms: float | None = None  # EWMA time to first token
    error_rate: float = 0.0  # failures / outcomes in the window (0 when empty)
    outcomes: int = 0  # outcomes in the window
    consecutive_failures: int = 0
    in_flight: int = 0
    state: CircuitState = CircuitState.CLOSED
    open_until: float | None = None  # clock time the cooldown ends, when open
    last_error: str | None = None


@dataclass(frozen=True)
class StateChange:
    key: Key
    old: CircuitState
    new: CircuitState
    at: float  # registry clock
    reason: str
    open_until: float | None = None  # registry clock, set when `new` is OPEN


class _Window:
    """Outcomes (time, ok) of the last `window` seconds, with a running failure count."""

    def __init__(self) -> None:
        self._items: deque[tuple[float, bool]] = deque()
        self.failures = 0

    def add(self, at: float, ok: bool) -> None:
        if len(self._items) >= MAX_OUTCOMES:
            self._drop_oldest()
        self._items.append((at, ok))
        if not ok:
            self.failures += 1

    def prune(self, now: float, window: float) -> None:
        while self._items and now - self._items[0][0] > window:
            self._drop_oldest()

    def clear(self) -> None:
        self._items.clear()
        self.failures = 0

    @property
    def total(self) -> int:
        return len(self._items)

    @property
    def rate(self) -> float:
        return self.failures / len(self._items) if self._items else 0.0

    def _drop_oldest(self) -> None:
        _, ok = self._items.popleft()
        if not ok:
            self.failures -= 1


@dataclass
class _Route:
    window: _Window = field(default_factory=_Window)
    tps: float | None = None
    ttft_ms: float | None = None
    consecutive_failures: int = 0
    in_flight: int = 0
    state: CircuitState = CircuitState.CLOSED
    open_until: float | None = None
    probe_since: float | None = None  # when the half-open probe was admitted
    last_error: str | None = None
    shared_tps: float | None = None  # other workers' measurements (health_sync)
    shared_ttft_ms: float | None = None


def _pooled(local: float | None, shared: float | None) -> float | None:
    """This worker's figure and the other workers' one, averaged when there are both."""
    if local is None or shared is None:
        return local if shared is None else shared
    return (local + shared) / 2


def _ewma(current: float | None, sample: float, alpha: float) -> float:
    return sample if current is None else alpha * sample + (1 - alpha) * current


class HealthRegistry:
    """Health of every route seen so far; `policy` and `on_change` may be replaced at will."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        policy: CircuitPolicy = CircuitPolicy(),
        alpha: float = 0.3,
        on_change: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.clock = clock
        self.policy = policy
        self.alpha = alpha
        self.on_change = on_change
        self._routes: dict[Key, _Route] = {}

    # -- reading -------------------------------------------------------------------------

    def view(self, key: Key) -> HealthView:
        route = self._routes.get(key)
        if route is None:
            return HealthView()
        now = self._refresh(key, route)
        route.window.prune(now, self.policy.window)
        return HealthView(
            tps=_pooled(route.tps, route.shared_tps),
            ttft_ms=_pooled(route.ttft_ms, route.shared_ttft_ms),
            error_rate=route.window.rate,
            outcomes=route.window.total,
            consecutive_failures=route.consecutive_failures,
            in_flight=route.in_flight,
            state=route.state,
            open_until=route.open_until if route.state is CircuitState.OPEN else None,
            last_error=route.last_error,
        )

    def local_figures(self) -> dict[Key, tuple[float | None, float | None]]:
        """This worker's own TPS and TTFT per measured route, for sharing."""
        return {
            key: (route.tps, route.ttft_ms)
            for key, route in self._routes.items()
            if route.tps is not None or route.ttft_ms is not None
        }

    def share(self, figures: dict[Key, tuple[float | None, float | None]]) -> None:
        """Other workers' pooled TPS and TTFT; routes not named have none any more."""
        for key, route in self._routes.items():
            route.shared_tps, route.shared_ttft_ms = figures.get(key, (None, None))
        for key in figures.keys() - self._routes.keys():
            self._route(key).shared_tps, self._route(key).shared_ttft_ms = figures[key]

    def snapshot(self) -> dict[Key, HealthView]:
        return {key: self.view(key) for key in list(self._routes)}

    def admit(self, key: Key) -> tuple[bool, str | None]:
        """May this route be tried now? A half-open circuit lets exactly one probe through."""
        route = self._routes.get(key)
        if route is None:
            return True, None
        now = self._refresh(key, route)
        if route.state is CircuitState.OPEN:
            remaining = math.ceil((route.open_until or now) - now)
            return False, f"circuit open for {remaining}s"
        if route.state is CircuitState.HALF_OPEN:
            if route.probe_since is not None and now - route.probe_since < self._probe_lease:
                return False, "half-open probe in flight"
            route.probe_since = now
        return True, None

    # -- reporting -----------------------------------------------------------------------

    def started(self, key: Key) -> None:
        self._route(key).in_flight += 1

    def finished(self, key: Key) -> None:
        route = self._route(key)
        route.in_flight = max(0, route.in_flight - 1)

    def success(
        self,
        key: Key,
        *,
        ttft: float | None = None,
        output_tokens: int = 0,
        generation_seconds: float | None = None,
    ) -> None:
        """An ok outcome; `generation_seconds` is what the caller measured tokens over."""
        route = self._route(key)
        now = self._refresh(key, route)
        route.window.add(now, True)
        route.consecutive_failures = 0
        if ttft is not None and ttft >= 0:
            route.ttft_ms = _ewma(route.ttft_ms, ttft * 1000.0, self.alpha)
        if output_tokens > 0 and generation_seconds is not None and generation_seconds > 0:
            route.tps = _ewma(route.tps, output_tokens / generation_seconds, self.alpha)
        if route.state is CircuitState.HALF_OPEN:
            self._close(key, route, now, "probe succeeded")

    def failure(
        self, key: Key, *, kind: str, message: str = "", retry_after: float | None = None
    ) -> None:
        """A failed outcome; opens the circuit when a rule says so, for the longer of the
        cooldown and `retry_after`."""
        route = self._route(key)
        now = self._refresh(key, route)
        route.window.add(now, False)
        route.window.prune(now, self.policy.window)
        route.consecutive_failures += 1
        route.last_error = f"{kind}: {message}" if message else kind
        seconds = max(self.policy.cooldown, retry_after or 0.0)
        if route.state is CircuitState.HALF_OPEN:
            self._open(key, route, now, now + seconds, "probe failed")
        elif route.state is CircuitState.OPEN and retry_after:
            route.open_until = max(route.open_until or now, now + retry_after)
        else:
            reason = self._open_reason(route)
            if reason:
                self._open(key, route, now, now + seconds, reason)

    def neutral(self, key: Key) -> None:
        """The attempt said nothing about the provider: release a half-open probe unjudged."""
        route = self._routes.get(key)
        if route is not None:
            self._refresh(key, route)
            route.probe_since = None

    # -- forcing -------------------------------------------------------------------------

    def open_for(self, key: Key, seconds: float, reason: str) -> None:
        """Open for at least `seconds` from now; an already open circuit is only extended
        (silently: extending is not a transition)."""
        if seconds <= 0:
            return
        route = self._route(key)
        now = self._refresh(key, route)
        until = now + seconds
        if route.state is CircuitState.OPEN:
            route.open_until = max(route.open_until or until, until)
        else:
            self._open(key, route, now, until, reason)

    def close(self, key: Key, reason: str) -> None:
        """Close now (a probe elsewhere succeeded); no-op when closed or never seen."""
        route = self._routes.get(key)
        if route is not None and route.state is not CircuitState.CLOSED:
            self._close(key, route, self.clock(), reason)

    def retain(self, keys: Iterable[Key]) -> None:
        """Forget routes no longer configured (after a config reload)."""
        keep = set(keys)
        for key in [k for k in self._routes if k not in keep]:
            del self._routes[key]

    # -- internals -----------------------------------------------------------------------

    @property
    def _probe_lease(self) -> float:
        """A probe that never reports back is presumed lost after this long."""
        return max(self.policy.cooldown, 1.0)

    def _route(self, key: Key) -> _Route:
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = _Route()
        return route

    def _refresh(self, key: Key, route: _Route) -> float:
        """The lazy OPEN -> HALF_OPEN move once the cooldown has passed; returns now."""
        now = self.clock()
        if route.state is CircuitState.OPEN and now >= (route.open_until or now):
            route.probe_since = None
            self._transition(key, route, CircuitState.HALF_OPEN, now, "cooldown over")
        return now

    def _open_reason(self, route: _Route) -> str | None:
        policy = self.policy
        if route.consecutive_failures >= policy.failure_threshold:
            return f"{route.consecutive_failures} consecutive failures"
        window = route.window
        if window.total >= policy.min_requests and window.rate >= policy.error_rate:
            return (
                f"error rate {window.rate:.0%} over {window.total} requests in {policy.window:g}s"
            )
        return None

    def _open(self, key: Key, route: _Route, now: float, until: float, reason: str) -> None:
        route.open_until = until
        route.probe_since = None
        self._transition(key, route, CircuitState.OPEN, now, reason)

    def _close(self, key: Key, route: _Route, now: float, reason: str) -> None:
        """Closing starts afresh: the failures that opened the circuit would re-open it."""
        route.open_until = None
        route.probe_since = None
        route.consecutive_failures = 0
        route.window.clear()
        self._transition(key, route, CircuitState.CLOSED, now, reason)

    def _transition(
        self, key: Key, route: _Route, new: CircuitState, now: float, reason: str
    ) -> None:
        old, route.state = route.state, new
        if self.on_change is not None and old is not new:
            until = route.open_until if new is CircuitState.OPEN else None
            self.on_change(StateChange(key, old, new, now, reason, until))
