"""The attempt loop: try candidates in order until one commits, fail over on the rest.

Nothing reaches the client before the commit point: the first content event of a stream,
or a complete non-stream body. Any failure before it is invisible to the client and moves
on to the next candidate. After it, the relay turns upstream faults into an Anthropic
`event: error` so the client sees a well-formed end.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.dialects import (
    ProxyRequest,
    non_stream_reply,
    outbound,
    relay_for,
    status_error,
)
from gateway.health import HealthRegistry
from gateway.logbook import AttemptEntry, Entry
from gateway.relay import Relay, close_response
from gateway.routing import Plan
from gateway.snapshot import RetryPolicy, RouteConf, Snapshot
from gateway.upstream import MAX_ERROR_BODY, UpstreamError, converted_errors, timeout_for

__all__ = ["AllFailed", "ClientError", "Committed", "Context", "ProxyRequest", "run"]


@dataclass
class Committed:
    """The winning attempt: what to send the client, and what to log."""

    route: RouteConf
    attempt: AttemptEntry
    status: int
    headers: dict[str, str]
    head: bytes  # the body (non-stream) or the events read up to the commit point
    stream: Relay | None
    usage: Any

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


@dataclass
class ClientError:
    """The provider rejected the request itself (400/422): it goes back to the client."""

    route: RouteConf
    error: UpstreamError


class AllFailed(Exception):
    def __init__(self, attempts: list[AttemptEntry]) -> None:
        super().__init__("all candidates failed")
        self.attempts = attempts


def _elapsed_ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 3)


async def _send(
    client: aiohttp.ClientSession, route: RouteConf, req: ProxyRequest, snapshot: Snapshot
) -> aiohttp.ClientResponse:
    out = outbound(req, route)
    with converted_errors():
        return await client.post(
            out.url,
            data=out.body,
            headers=out.headers,
            timeout=timeout_for(snapshot.deadlines_for(route), req.stream),
            allow_redirects=False,
        )


async def _read_error(response: aiohttp.ClientResponse, route: RouteConf) -> UpstreamError:
    body = b""
    with converted_errors():
        while len(body) < MAX_ERROR_BODY:
            chunk = await response.content.read(MAX_ERROR_BODY - len(body))
            if not chunk:
                break
            body += chunk
    return status_error(response, body, route)


def _reply_headers(response: aiohttp.ClientResponse, route: RouteConf) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if route.provider.dialect != "openai":
        headers["content-type"] = response.headers.get("content-type", "application/json")
    request_id = response.headers.get("request-id") or response.headers.get("x-request-id")
    if request_id:
        headers["request-id"] = request_id
    return headers


async def _commit(
    response: aiohttp.ClientResponse, route: RouteConf, req: ProxyRequest, idle: float
) -> tuple[bytes, Relay | None, Any]:
    if req.stream:
        relay = relay_for(response, req, route, idle)
        return await relay.until_commit(), relay, relay.usage
    with converted_errors():
        raw = await response.read()
    body, usage = non_stream_reply(raw, req, route)
    return body, None, usage


async def _attempt(
    client: aiohttp.ClientSession,
    route: RouteConf,
    req: ProxyRequest,
    snapshot: Snapshot,
    attempt: AttemptEntry,
) -> Committed:
    deadlines = snapshot.deadlines_for(route)
    budget = deadlines.first_token if req.stream else deadlines.non_stream
    response: aiohttp.ClientResponse | None = None
    try:
        async with asyncio.timeout(budget):
            response = await _send(client, route, req, snapshot)
            if response.status >= 300:
                raise await _read_error(response, route)
            head, relay, usage = await _commit(response, route, req, deadlines.idle)
            headers = _reply_headers(response, route)
            return Committed(route, attempt, response.status, headers, head, relay, usage)
    except TimeoutError as exc:
        if response is not None:
            close_response(response)
        raise UpstreamError("first_token_timeout", f"no first content within {budget:g}s") from exc
    except BaseException:
        if response is not None:
            close_response(response)
        raise


def _record_failure(attempt: AttemptEntry, exc: UpstreamError, began: float) -> None:
    attempt.duration_ms = _elapsed_ms(began)
    attempt.status = exc.status
    attempt.error_kind = exc.kind
    attempt.error_message = exc.describe()


# Failures another try of the same route may cure; 401/403/404/413 describe the route.
_RETRYABLE_KINDS = {
    "connect",
    "connect_timeout",
    "reset",
    "first_token_timeout",
    "idle_timeout",
    "stream_error",
    "protocol",
}
_RETRYABLE_STATUSES = {408, 409, 429, 500, 502, 503, 504, 529}
# Failures that say nothing about the provider's health.
_NEUTRAL_KINDS = {"unsupported"}


def retryable(exc: UpstreamError) -> bool:
    if exc.kind == "http_status":
        return exc.status in _RETRYABLE_STATUSES
    return exc.kind in _RETRYABLE_KINDS


def backoff(policy: RetryPolicy, retry: int, exc: UpstreamError, rand: float) -> float | None:
    """Seconds before retry number `retry` (0-based), or None when it should not wait:
    full jitter over the exponential step; a Retry-After within maxDelay wins; a longer one
    means "not now" (the caller opens the circuit for it instead)."""
    if exc.retry_after is not None:
        return exc.retry_after if exc.retry_after <= policy.max_delay else None
    step = min(policy.max_delay, policy.initial_delay * policy.backoff_multiplier**retry)
    return rand * step


@dataclass
class Context:
    """One request's dispatch: what it may use and where it records."""

    client: aiohttp.ClientSession
    snapshot: Snapshot
    req: ProxyRequest
    entry: Entry
    health: HealthRegistry
    rand: Callable[[], float] = random.random

    def new_attempt(self, route: RouteConf) -> AttemptEntry:
        attempt = AttemptEntry(
            len(self.entry.attempts) + 1,
            route.provider.name,
            route.name,
            _elapsed_ms(self.req.started),
        )
        self.entry.attempts.append(attempt)
        return attempt

    def skip(self, route: RouteConf, reason: str) -> None:
        self.entry.skipped.append(
            {"provider": route.provider.name, "model": route.name, "reason": reason}
        )


async def _try_once(ctx: Context, route: RouteConf, attempt: AttemptEntry) -> Committed:
    began = time.monotonic()
    ctx.health.started(route.key)
    try:
        committed = await _attempt(ctx.client, route, ctx.req, ctx.snapshot, attempt)
    except UpstreamError as exc:
        _record_failure(attempt, exc, began)
        ctx.health.finished(route.key)
        if exc.failover and exc.kind not in _NEUTRAL_KINDS:
            ctx.health.failure(
                route.key, kind=exc.kind, message=exc.describe(), retry_after=exc.retry_after
            )
        else:
            ctx.health.neutral(route.key)
        raise
    except asyncio.CancelledError:
        attempt.duration_ms = _elapsed_ms(began)
        attempt.outcome = "cancelled"
        ctx.health.finished(route.key)
        ctx.health.neutral(route.key)
        raise
    attempt.outcome, attempt.status = "won", committed.status
    attempt.ttft_ms = _elapsed_ms(began)
    return committed


async def _try_route(ctx: Context, route: RouteConf) -> Committed:
    """One route, retried in place when `retry.retrySameProvider` says so."""
    policy = ctx.snapshot.retry
    retries = policy.max_retries if policy.retry_same_provider else 0
    for retry in range(retries + 1):
        attempt = ctx.new_attempt(route)
        try:
            return await _try_once(ctx, route, attempt)
        except UpstreamError as exc:
            if retry == retries or not exc.failover or not retryable(exc):
                raise
            delay = backoff(policy, retry, exc, ctx.rand())
            if delay is None:
                ctx.health.open_for(
                    route.key, exc.retry_after or 0.0, f"Retry-After {exc.retry_after:g}s"
                )
                raise
            attempt.outcome = "retried"
            await asyncio.sleep(delay)
            admitted, why = ctx.health.admit(route.key)
            if not admitted:
                raise UpstreamError("circuit_open", why or "circuit open") from exc
    raise AssertionError("unreachable")


def _hedge_after(ctx: Context, route: RouteConf) -> float | None:
    value = route.options.get("hedgeAfter", ctx.snapshot.routing.get("hedgeAfter"))
    return float(value) if value is not None else None


class _Race:
    """Runs candidates in order; with hedging, starts the next one when the current one
    has not produced content in time, and commits whichever produces content first."""

    def __init__(self, ctx: Context, plan: Plan) -> None:
        self.ctx = ctx
        self.queue = list(plan.candidates)
        self.running: dict[asyncio.Task[Committed], tuple[RouteConf, float]] = {}

    def launch(self) -> bool:
        while self.queue:
            route = self.queue.pop(0)
            admitted, why = self.ctx.health.admit(route.key)
            if not admitted:
                self.ctx.skip(route, why or "circuit open")
                continue
            task = asyncio.create_task(_try_route(self.ctx, route))
            self.running[task] = (route, time.monotonic())
            return True
        return False

    def hedge_wait(self) -> float | None:
        if len(self.running) != 1 or not self.queue:
            return None
        route, started = next(iter(self.running.values()))
        after = _hedge_after(self.ctx, route)
        return None if after is None else max(0.0, started + after - time.monotonic())

    async def stop_others(self, outcome: str) -> None:
        tasks = list(self.running)
        self.running.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                late = await task
            except BaseException:
                continue
            late.attempt.outcome = "hedge_lost"  # committed in the same instant: drop it
            self.ctx.health.finished(late.route.key)
            self.ctx.health.neutral(late.route.key)
            await late.aclose()
        for attempt in self.ctx.entry.attempts:
            if attempt.outcome == "cancelled" and outcome != "cancelled":
                attempt.outcome = outcome

    async def run(self) -> Committed | ClientError:
        try:
            self.launch()
            while self.running:
                done, _ = await asyncio.wait(
                    self.running, timeout=self.hedge_wait(), return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    self.launch()  # hedge: the current one is slow to produce content
                    continue
                result = await self._settle(done)
                if result is not None:
                    return result
                if not self.running:
                    self.launch()
            raise AllFailed(self.ctx.entry.attempts)
        finally:
            await self.stop_others("cancelled")

    async def _settle(self, done: set[asyncio.Task[Committed]]) -> Committed | ClientError | None:
        for task in done:
            route, _ = self.running.pop(task)
            exc = task.exception()
            if exc is None:
                await self.stop_others("hedge_lost")
                return task.result()
            if not isinstance(exc, UpstreamError):
                raise exc
            if not exc.failover:
                await self.stop_others("cancelled")
                return ClientError(route, exc)
        return None


async def run(ctx: Context, plan: Plan) -> Committed | ClientError:
    """Commit the first candidate that produces content; raise AllFailed when none does."""
    return await _Race(ctx, plan).run()
