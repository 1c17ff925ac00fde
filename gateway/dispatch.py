"""The attempt loop: try candidates in order until one commits, fail over on the rest.

Nothing reaches the client before the commit point: the first content event of a stream,
or a complete non-stream body. Any failure before it is invisible to the client and moves
on to the next candidate. After it, `RelayedStream.rest()` turns upstream faults into an
Anthropic `event: error` so the client sees a well-formed end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import aiohttp

from gateway.logbook import AttemptEntry, Entry
from gateway.routing import Plan
from gateway.snapshot import Deadlines, RouteConf, Snapshot
from gateway.streamwatch import StreamWatch, Usage, message_usage
from gateway.translate.errors import error_event
from gateway.translate.sse import SSEDecoder
from gateway.upstream import (
    MAX_ERROR_BODY,
    UpstreamError,
    anthropic_headers,
    converted_errors,
    join_url,
    status_error,
    timeout_for,
)


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """A validated client request, as the dispatcher needs it."""

    endpoint: str  # "messages" or "messages/count_tokens"
    query: str
    headers: Mapping[bytes, bytes]
    body: bytes
    model: str
    stream: bool
    started: float = field(default_factory=time.monotonic)

    def body_for(self, route: RouteConf) -> bytes:
        from gateway.body import replace_model

        return replace_model(self.body, self.model, route.name)


class RelayedStream:
    """An Anthropic SSE stream from one upstream, relayed event by event without re-encoding."""

    def __init__(self, response: aiohttp.ClientResponse, deadlines: Deadlines) -> None:
        self.response = response
        self.deadlines = deadlines
        self.watch = StreamWatch()
        self.first_content_at: float | None = None
        self.last_event_at: float | None = None
        self.failure: UpstreamError | None = None
        self._decoder = SSEDecoder()
        self._chunks = response.content.iter_any()

    def _take(self, chunk: bytes) -> tuple[bytes, bool]:
        """Feed a chunk; return the complete events' bytes and whether content arrived."""
        out = []
        content = False
        for event in self._decoder.feed(chunk):
            out.append(event.raw)
            content = self.watch.observe(event) or content
        if out:
            self.last_event_at = time.monotonic()
        return b"".join(out), content

    async def until_commit(self) -> bytes:
        """Read until the first content event; return everything read so far."""
        buffered: list[bytes] = []
        with converted_errors():
            async for chunk in self._chunks:
                data, content = self._take(chunk)
                buffered.append(data)
                if self.watch.error_type:
                    raise UpstreamError("stream_error", self._error_text())
                if content:
                    self.first_content_at = self.last_event_at
                    return b"".join(buffered)
        raise UpstreamError("protocol", "the stream ended before any content")

    async def rest(self) -> AsyncIterator[bytes]:
        """The remaining events; an upstream fault ends them with an `event: error`.

        The idle deadline is aiohttp's `sock_read` timeout (see `timeout_for`): it is
        re-armed on every read, cheaper than a timer per event here.
        """
        try:
            with converted_errors():
                async for chunk in self._chunks:
                    data, _ = self._take(chunk)
                    if data:
                        yield data
        except UpstreamError as exc:
            self.failure = exc
        if self.failure is None and not self.watch.finished and not self.watch.error_type:
            self.failure = UpstreamError("reset", "the stream ended before message_stop")
        if self.failure is not None:
            yield error_event(_midstream_error_type(self.failure), self.failure.describe())

    def _error_text(self) -> str:
        return f"{self.watch.error_type}: {self.watch.error_message}"

    async def aclose(self) -> None:
        close_response(self.response)


def close_response(response: aiohttp.ClientResponse) -> None:
    """Drop the connection unless the body was read to the end (then it is reusable)."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


def _midstream_error_type(exc: UpstreamError) -> str:
    if exc.kind == "http_status" and exc.status in (429, 503, 529):
        return "overloaded_error"
    return "overloaded_error" if exc.kind == "stream_error" else "api_error"


@dataclass
class Committed:
    """The winning attempt: what to send the client, and what to log."""

    route: RouteConf
    attempt: AttemptEntry
    status: int
    headers: dict[str, str]
    head: bytes  # the body (non-stream) or the events read up to the commit point
    stream: RelayedStream | None = None
    usage: Usage = field(default_factory=Usage)

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


@dataclass
class ClientError:
    """The provider rejected the request itself (400/422): it goes back to the client as is."""

    route: RouteConf
    error: UpstreamError


class AllFailed(Exception):
    def __init__(self, attempts: list[AttemptEntry]) -> None:
        super().__init__("all candidates failed")
        self.attempts = attempts


def _elapsed_ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 3)


async def _send(
    client: aiohttp.ClientSession, route: RouteConf, req: ProxyRequest, deadlines: Deadlines
) -> aiohttp.ClientResponse:
    url = join_url(route.provider.endpoint, req.endpoint)
    if req.query:
        url = f"{url}?{req.query}"
    with converted_errors():
        return await client.post(
            url,
            data=req.body_for(route),
            headers=anthropic_headers(req.headers, route.provider),
            timeout=timeout_for(deadlines, req.stream),
            allow_redirects=False,
        )


async def _read_error(response: aiohttp.ClientResponse) -> UpstreamError:
    body = b""
    with converted_errors():
        while len(body) < MAX_ERROR_BODY:
            chunk = await response.content.read(MAX_ERROR_BODY - len(body))
            if not chunk:
                break
            body += chunk
    return status_error(response, body)


async def _attempt(
    client: aiohttp.ClientSession, route: RouteConf, req: ProxyRequest, snapshot: Snapshot
) -> tuple[int, dict[str, str], bytes, RelayedStream | None, Usage]:
    deadlines = snapshot.deadlines_for(route)
    budget = deadlines.first_token if req.stream else deadlines.non_stream
    response: aiohttp.ClientResponse | None = None
    try:
        async with asyncio.timeout(budget):
            response = await _send(client, route, req, deadlines)
            if response.status >= 300:
                raise await _read_error(response)
            headers = _reply_headers(response)
            if req.stream:
                relay = RelayedStream(response, deadlines)
                head = await relay.until_commit()
                return response.status, headers, head, relay, relay.watch.usage
            with converted_errors():
                body = await response.read()
            return response.status, headers, body, None, _body_usage(body)
    except TimeoutError as exc:
        if response is not None:
            close_response(response)
        raise UpstreamError("first_token_timeout", f"no first content within {budget:g}s") from exc
    except BaseException:
        if response is not None:
            close_response(response)
        raise


def _reply_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    headers = {"content-type": response.headers.get("content-type", "application/json")}
    request_id = response.headers.get("request-id")
    if request_id:
        headers["request-id"] = request_id
    return headers


def _body_usage(body: bytes) -> Usage:
    import json

    try:
        parsed = json.loads(body)
    except ValueError:
        return Usage()
    return message_usage(parsed) if isinstance(parsed, dict) else Usage()


async def run(
    client: aiohttp.ClientSession, snapshot: Snapshot, plan: Plan, req: ProxyRequest, entry: Entry
) -> Committed | ClientError:
    """Try each candidate once, in order; raise AllFailed when none commits."""
    for seq, route in enumerate(plan.candidates, start=1):
        attempt = AttemptEntry(seq, route.provider.name, route.name, _elapsed_ms(req.started))
        entry.attempts.append(attempt)
        began = time.monotonic()
        try:
            status, headers, head, relay, usage = await _attempt(client, route, req, snapshot)
        except UpstreamError as exc:
            attempt.duration_ms = _elapsed_ms(began)
            attempt.status = exc.status
            attempt.error_kind = exc.kind
            attempt.error_message = exc.describe()
            if not exc.failover:
                return ClientError(route, exc)
            continue
        except asyncio.CancelledError:
            attempt.outcome = "cancelled"
            attempt.duration_ms = _elapsed_ms(began)
            raise
        attempt.outcome = "won"
        attempt.status = status
        attempt.ttft_ms = _elapsed_ms(began)
        return Committed(route, attempt, status, headers, head, relay, usage)
    raise AllFailed(entry.attempts)
