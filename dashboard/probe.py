"""The "test" button: one tiny streamed request to one route, through the real proxy path.

It goes through `dispatch.run` with a plan of that route alone, so URL joining, headers,
dialect conversion and deadlines are the ones real traffic gets. It uses a health registry
of its own, so a failed test never opens the route's real circuit, and it is not logged.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from asgiref.sync import sync_to_async

from gateway.dispatch import AllFailed, ClientError, Committed, Context, ProxyRequest, run
from gateway.health import HealthRegistry
from gateway.logbook import Entry
from gateway.models import ConfigVersion
from gateway.routing import Plan
from gateway.runtime import Runtime
from gateway.snapshot import RouteConf

PROBE_TIMEOUT = 30.0
PROMPT = "Say OK."
_HEADERS = {b"content-type": b"application/json", b"user-agent": b"anthropic-proxy dashboard"}


@dataclass(frozen=True)
class ProbeResult:
    route: str  # "provider/model"
    status: int | None = None
    ttft_ms: float | None = None
    tps: float | None = None
    output_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def probe_body(model: str) -> dict:
    return {
        "model": model,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
    }


async def _route_conf(runtime: Runtime, route_id: int) -> RouteConf | None:
    """The route as the running process knows it, reloading first if the config moved on."""
    if runtime.snapshot.version != await sync_to_async(ConfigVersion.current)():
        await runtime.reload()
    return next((route for route in runtime.snapshot.routes if route.id == route_id), None)


async def probe(runtime: Runtime | None, route_id: int, label: str) -> ProbeResult:
    """Send the test request to route `route_id`; `label` names it in the result."""
    if runtime is None:
        return ProbeResult(
            label,
            error="no gateway runtime in this process: run the dashboard "
            "with `manage.py serve` to test routes",
        )
    if not runtime.started:
        await runtime.start()
    route = await _route_conf(runtime, route_id)
    if route is None:
        return ProbeResult(label, error="the running configuration has no such route")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            return await _send(runtime, route, label)
    except TimeoutError:
        return ProbeResult(label, error=f"no complete answer within {PROBE_TIMEOUT:g}s")


async def _send(runtime: Runtime, route: RouteConf, label: str) -> ProbeResult:
    payload = probe_body(route.name)
    body = json.dumps(payload).encode()
    req = ProxyRequest("messages", "", _HEADERS, body, payload, route.name, True)
    entry = Entry(created_at=datetime.now(UTC), path="/dashboard/probe", stream=True)
    ctx = Context(runtime.http, runtime.snapshot, req, entry, HealthRegistry())
    try:
        outcome = await run(ctx, Plan(route.name, (route,)))
    except AllFailed as exc:
        last = exc.attempts[-1] if exc.attempts else None
        reason = last.error_message if last else "the route was not tried"
        return ProbeResult(label, status=(last.status or None) if last else None, error=reason)
    if isinstance(outcome, ClientError):
        error = outcome.error
        return ProbeResult(label, status=error.status or None, error=error.describe())
    try:
        return await _read_to_end(outcome, label, req.started)
    finally:
        await outcome.aclose()


async def _read_to_end(outcome: Committed, label: str, started: float) -> ProbeResult:
    relay = outcome.stream
    ttft = outcome.attempt.ttft_ms
    if relay is None:
        tokens = outcome.usage.output_tokens
        return ProbeResult(label, outcome.status, ttft, None, tokens)
    async for _ in relay.rest():
        pass
    tokens = relay.usage.output_tokens
    first, last = relay.first_content_at, relay.last_event_at
    span = (last - first) if first is not None and last is not None else 0.0
    if span < 0.001:
        span = time.monotonic() - started  # one burst: the whole request's time
    tps = round(tokens / span, 1) if tokens and span > 0 else None
    error = f"after the first byte: {relay.failure.describe()}" if relay.failure else None
    return ProbeResult(label, outcome.status, ttft, tps, tokens, error)
