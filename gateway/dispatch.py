"""The attempt loop: try candidates in order until one commits, fail over on the rest.

Nothing reaches the client before the commit point: the first content event of a stream,
or a complete non-stream body. Any failure before it is invisible to the client and moves
on to the next candidate. After it, the relay turns upstream faults into an Anthropic
`event: error` so the client sees a well-formed end.
"""

from __future__ import annotations

import asyncio
import time
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
from gateway.logbook import AttemptEntry, Entry
from gateway.relay import Relay, close_response
from gateway.routing import Plan
from gateway.snapshot import RouteConf, Snapshot
from gateway.upstream import MAX_ERROR_BODY, UpstreamError, converted_errors, timeout_for

__all__ = ["AllFailed", "ClientError", "Committed", "ProxyRequest", "run"]


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
    response: aiohttp.ClientResponse, route: RouteConf, req: ProxyRequest
) -> tuple[bytes, Relay | None, Any]:
    if req.stream:
        relay = relay_for(response, req, route)
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
            head, relay, usage = await _commit(response, route, req)
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


async def run(
    client: aiohttp.ClientSession,
    snapshot: Snapshot,
    plan: Plan,
    req: ProxyRequest,
    entry: Entry,
) -> Committed | ClientError:
    """Try each candidate once, in order; raise AllFailed when none commits."""
    for seq, route in enumerate(plan.candidates, start=1):
        attempt = AttemptEntry(seq, route.provider.name, route.name, _elapsed_ms(req.started))
        entry.attempts.append(attempt)
        began = time.monotonic()
        try:
            committed = await _attempt(client, route, req, snapshot, attempt)
        except UpstreamError as exc:
            _record_failure(attempt, exc, began)
            if not exc.failover:
                return ClientError(route, exc)
            continue
        except asyncio.CancelledError:
            attempt.outcome = "cancelled"
            attempt.duration_ms = _elapsed_ms(began)
            raise
        attempt.outcome, attempt.status = "won", committed.status
        attempt.ttft_ms = _elapsed_ms(began)
        return committed
    raise AllFailed(entry.attempts)
