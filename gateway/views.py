"""The /v1 endpoints, /health and /. Thin: validate, plan, dispatch, respond, record."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from gateway import auth, lifecycle, routing
from gateway.affinity import session_of
from gateway.app import Request, Send, send_error, send_response
from gateway.capture import Capture
from gateway.dispatch import AllFailed, ClientError, Committed, Context, ProxyRequest, run
from gateway.health import HealthRegistry
from gateway.http_protocol import ClientStream
from gateway.logbook import AttemptEntry, Entry
from gateway.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from gateway.runtime import Runtime
from gateway.tokens import estimate_input_tokens
from gateway.translate.errors import error_body, error_event
from gateway.translate.request import server_tool_reason
from gateway.upstream import UpstreamError
from gateway.validate import BadRequest, MessagesBody, count_tokens_body, messages_body


def _new_entry(request: Request) -> Entry:
    user_agent = request.headers.get(b"user-agent", b"").decode("latin-1")
    return Entry(created_at=datetime.now(UTC), path=request.path, user_agent=user_agent)


async def _refuse_at_shutdown(entry: Entry, send: Send) -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    await _reject(entry, send, 529, f"{lifecycle.ENDING}; retry", {"retry-after": "1"})


def _fail(entry: Entry, status: int, message: str) -> None:
    entry.status = status
    entry.outcome = "error"
    entry.error_type = error_body(status, message)["error"]["type"]
    entry.error_message = message


async def _reject(
    entry: Entry, send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    _fail(entry, status, message)
    await send_error(send, status, message, headers)


def _authenticate(runtime: Runtime, request: Request, entry: Entry) -> auth.ClientKey | None:
    key = auth.authenticate(request.headers, runtime.snapshot.keys, entry.created_at)
    if key is not None:
        entry.api_key_id, entry.api_key_name = key.id, key.name
    return key


_AUTH_MESSAGE = "invalid x-api-key: send this proxy's key as x-api-key or Authorization: Bearer"


Serve = Callable[[Runtime, Request, MessagesBody, Entry, Send], Awaitable[None]]


async def _exchange(
    runtime: Runtime,
    request: Request,
    send: Send,
    parse: Callable[[bytes], MessagesBody],
    serve: Serve,
    record: Callable[[Entry], None],
    *,
    limited: bool = False,
) -> None:
    """Authenticate, admit (`limited`: gateway/limits.py), validate, serve, and record the
    request however it ends."""
    entry = _new_entry(request)
    if runtime.capture_bodies:
        entry.capture = Capture.of_request(request.headers, request.body)
    started = time.monotonic()
    try:
        key = _authenticate(runtime, request, entry)
        if key is None:
            await _reject(entry, send, 401, _AUTH_MESSAGE)
            return
        if limited:
            refusal = runtime.limiter.admit(key.id, key.limits)
            if refusal is not None:
                await _reject(entry, send, refusal.status, refusal.message, refusal.headers)
                return
        try:
            await _parse_and_serve(runtime, request, send, parse, serve, entry)
        finally:
            if limited:
                runtime.limiter.release(key.id, key.limits)
                runtime.limiter.spend(key.id, entry.input_tokens + entry.output_tokens)
    except asyncio.CancelledError:
        if lifecycle.ended_by_shutdown(asyncio.current_task()) and not entry.status:
            await _refuse_at_shutdown(entry, send)  # nothing was sent yet: say why
            return
        entry.outcome = "client_cancelled"
        entry.status = entry.status or 499
        raise
    finally:
        entry.duration_ms = round((time.monotonic() - started) * 1000, 3)
        record(entry)


async def _parse_and_serve(
    runtime: Runtime,
    request: Request,
    send: Send,
    parse: Callable[[bytes], MessagesBody],
    serve: Serve,
    entry: Entry,
) -> None:
    try:
        body = parse(request.body)
    except BadRequest as exc:
        await _reject(entry, send, exc.status, exc.message)
        return
    await serve(runtime, request, body, entry, send)


async def messages(runtime: Runtime, request: Request, send: Send) -> None:
    """POST /v1/messages: the whole proxy path for one request."""
    await _exchange(runtime, request, send, messages_body, _proxy, runtime.record, limited=True)


def _plan(runtime: Runtime, body: MessagesBody, session: str | None) -> routing.Plan:
    plan = routing.plan(
        runtime.snapshot,
        body.model,
        needs=routing.Needs.of(body.payload),
        view=runtime.health.view,
        now=time.monotonic(),
        threshold=runtime.tps_threshold,
        prefer=runtime.affinity.get(session),
    )
    needs_anthropic = server_tool_reason(body.payload)
    return routing.prefer_anthropic(plan, needs_anthropic) if needs_anthropic else plan


async def _proxy(
    runtime: Runtime, request: Request, body: MessagesBody, entry: Entry, send: Send
) -> None:
    entry.requested_model, entry.stream = body.model, body.stream
    snapshot = runtime.snapshot
    session = session_of(request.headers, body.payload) if snapshot.session_affinity else None
    plan = _plan(runtime, body, session)
    entry.skipped = [skip.as_dict() for skip in plan.skipped]
    if not plan.candidates:
        await _reject(entry, send, *_no_candidates(plan))
        return
    req = ProxyRequest(
        "messages",
        request.query,
        request.headers,
        request.body,
        body.payload,
        body.model,
        body.stream,
    )
    try:
        outcome = await run(Context(runtime.http, snapshot, req, entry, runtime.health), plan)
    except AllFailed as exc:
        status, message, headers = all_failed_reply(exc.attempts, plan)
        _fail(entry, status, message)
        await send_error(send, status, message, headers)
        return
    if isinstance(outcome, ClientError):
        await _send_client_error(outcome, entry, send)
        return
    await _deliver(runtime, outcome, req, entry, send, session, request.client_stream)


async def _deliver(
    runtime: Runtime,
    outcome: Committed,
    req: ProxyRequest,
    entry: Entry,
    send: Send,
    session: str | None,
    client: ClientStream | None,
) -> None:
    """Send the committed answer, then tell health and affinity how it went."""
    key = outcome.route.key
    verdict = "neutral"
    try:
        await _send_committed(outcome, req, entry, send, client)
        failure = outcome.stream.failure if outcome.stream is not None else None
        verdict = "failure" if failure is not None else "success"
        if failure is not None and failure.kind == "shutdown":
            verdict = "neutral"  # our own shutdown says nothing about the provider
    finally:
        await outcome.aclose()
        runtime.health.finished(key)
        if verdict == "success":
            runtime.health.success(
                key,
                ttft=(outcome.attempt.ttft_ms or 0) / 1000,
                output_tokens=entry.output_tokens,
                generation_seconds=_generation_seconds(outcome),
            )
            runtime.affinity.remember(session, key)
        elif verdict == "failure":
            runtime.health.failure(key, kind=entry.error_type, message=entry.error_message)
        else:
            runtime.health.neutral(key)


def _generation_seconds(outcome: Committed) -> float | None:
    """From the first to the last output token for streams; the whole attempt otherwise."""
    relay = outcome.stream
    if relay is None:
        span = outcome.attempt.duration_ms / 1000
    elif relay.first_content_at is None or relay.last_event_at is None:
        return None
    else:
        span = relay.last_event_at - relay.first_content_at
    return span if span > 0 else None


def _no_candidates(plan: routing.Plan) -> tuple[int, str]:
    if not plan.skipped:
        return 404, f"model: no route serves {plan.requested!r}"
    reasons = "; ".join(f"{s.provider}/{s.model}: {s.reason}" for s in plan.skipped)
    return 503, f"no enabled provider serves {plan.requested!r} ({reasons})"


async def _send_client_error(outcome: ClientError, entry: Entry, send: Send) -> None:
    exc = outcome.error
    entry.provider, entry.upstream_model = outcome.route.provider.name, outcome.route.name
    _fail(entry, exc.status, exc.message)
    try:
        parsed = json.loads(exc.body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("type") == "error":
        await send_response(send, exc.status, exc.body)
    else:
        await send_error(send, exc.status, exc.message)


async def _send_committed(
    outcome: Committed, req: ProxyRequest, entry: Entry, send: Send, client: ClientStream | None
) -> None:
    entry.provider, entry.upstream_model = outcome.route.provider.name, outcome.route.name
    entry.status = outcome.status
    entry.ttft_ms = round((time.monotonic() - req.started) * 1000, 3)
    relay = outcome.stream
    capture = entry.capture
    if capture is not None:
        capture.response_headers = dict(outcome.headers)
        capture.answer(outcome.head)
    if relay is None:
        await send_response(send, outcome.status, outcome.head, outcome.headers)
        _take_usage(entry, outcome, outcome.usage, None, None, req.started)
        return
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
    ]
    headers.extend(
        (k.encode(), v.encode()) for k, v in outcome.headers.items() if k != "content-type"
    )
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    await send({"type": "http.response.body", "body": outcome.head, "more_body": True})
    try:
        if client is not None and client.ready:
            await relay.push_to(client, capture.answer if capture is not None else _ignore)
        else:
            async for data in relay.rest():
                if capture is not None:
                    capture.answer(data)
                await send({"type": "http.response.body", "body": data, "more_body": True})
    except asyncio.CancelledError:
        if not lifecycle.ended_by_shutdown(asyncio.current_task()):
            raise
        await _end_stream_at_shutdown(relay, send)
    await send({"type": "http.response.body", "body": b""})
    if relay.failure is not None:
        entry.outcome = "error"
        entry.error_type = relay.failure.kind
        entry.error_message = f"after the first byte: {relay.failure.describe()}"
        outcome.attempt.error_kind = relay.failure.kind
        outcome.attempt.error_message = relay.failure.describe()
    # the relay's usage, read now: converted streams report theirs at the end
    _take_usage(
        entry, outcome, relay.usage, relay.first_content_at, relay.last_event_at, req.started
    )


def _ignore(data: bytes) -> None:
    pass


async def _end_stream_at_shutdown(relay: Any, send: Send) -> None:
    """The grace period is over: end the stream the way a broken upstream would, with an
    error event clients know to retry."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    relay.failure = UpstreamError("shutdown", lifecycle.ENDING)
    frame = error_event("overloaded_error", f"{lifecycle.ENDING}; retry")
    await send({"type": "http.response.body", "body": frame, "more_body": True})


def _take_usage(
    entry: Entry,
    outcome: Committed,
    usage: Any,
    first: float | None,
    last: float | None,
    started: float,
) -> None:
    entry.input_tokens, entry.output_tokens = usage.input_tokens, usage.output_tokens
    entry.cache_read_tokens = usage.cache_read_tokens
    entry.cache_creation_tokens = usage.cache_creation_tokens
    now = time.monotonic()
    outcome.attempt.duration_ms = round((now - started) * 1000 - outcome.attempt.started_ms, 3)
    span = (last - first) if first is not None and last is not None else 0.0
    if span < 0.001:
        span = now - started
    if usage.output_tokens and span > 0:
        entry.tps = round(usage.output_tokens / span, 2)


def all_failed_reply(
    attempts: list[AttemptEntry], plan: routing.Plan
) -> tuple[int, str, dict[str, str]]:
    """One error for the client: the most telling status and every attempt's reason."""
    statuses = {a.status for a in attempts}
    if statuses == {429}:
        status = 429
    elif statuses and statuses <= {503, 529}:
        status = 529
    else:
        status = 502
    lines = [f"{a.provider}/{a.model}: {a.error_message}" for a in attempts]
    lines += [f"{s.provider}/{s.model}: skipped, {s.reason}" for s in plan.skipped]
    message = f"all {len(attempts)} candidates for {plan.requested!r} failed: " + "; ".join(lines)
    return status, message, {}


async def count_tokens(runtime: Runtime, request: Request, send: Send) -> None:
    """POST /v1/messages/count_tokens: ask an Anthropic-dialect provider, else estimate.
    Logged, but kept out of the live traffic figures: it is not model traffic."""
    await _exchange(runtime, request, send, count_tokens_body, _count, runtime.logbook.record)


async def _count(
    runtime: Runtime, request: Request, body: MessagesBody, entry: Entry, send: Send
) -> None:
    entry.requested_model = body.model
    snapshot = runtime.snapshot
    plan = routing.anthropic_only(routing.plan(snapshot, body.model))
    entry.skipped = [skip.as_dict() for skip in plan.skipped]
    if plan.candidates:
        req = ProxyRequest(
            "messages/count_tokens",
            request.query,
            request.headers,
            request.body,
            body.payload,
            body.model,
            False,
        )
        # Many Anthropic-compatible providers have no count_tokens: what happens here must
        # not judge their health for real traffic, so it gets a registry of its own.
        try:
            outcome = await run(Context(runtime.http, snapshot, req, entry, HealthRegistry()), plan)
        except AllFailed:
            outcome = None
        if isinstance(outcome, ClientError):
            await _send_client_error(outcome, entry, send)
            return
        if isinstance(outcome, Committed):
            try:
                await _send_committed(outcome, req, entry, send, None)
            finally:
                await outcome.aclose()
            return
    elif not plan.skipped:
        await _reject(entry, send, 404, f"model: no route serves {body.model!r}")
        return
    estimate = estimate_input_tokens(body.payload)
    entry.status, entry.input_tokens = 200, estimate
    await send_response(
        send,
        200,
        json.dumps({"input_tokens": estimate}).encode(),
        {"x-token-count-source": "estimate"},
    )


async def list_models(runtime: Runtime, request: Request, send: Send) -> None:
    """GET /v1/models: the names clients can ask for, in the Anthropic list format."""
    if auth.authenticate(request.headers, runtime.snapshot.keys, datetime.now(UTC)) is None:
        await send_error(send, 401, _AUTH_MESSAGE)
        return
    from gateway.model_list import model_page

    status, payload = model_page(runtime.snapshot, request.query)
    await send_response(send, status, json.dumps(payload).encode())


async def health(runtime: Runtime, request: Request, send: Send) -> None:
    """GET /health: liveness for load balancers; no database call. 503 while draining
    (shutting down), so that a load balancer sends new requests elsewhere."""
    draining = lifecycle.STATE.draining
    payload = {
        "status": "draining" if draining else "ok",
        "config_version": runtime.snapshot.version,
    }
    await send_response(send, 503 if draining else 200, json.dumps(payload).encode())


def _metrics_token_ok(request: Request) -> bool:
    """True when METRICS_TOKEN is unset or sent as `Authorization: Bearer <token>`."""
    token = settings.METRICS_TOKEN
    if not token:
        return True
    sent = request.headers.get(b"authorization", b"").decode("latin-1")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


async def live_json(runtime: Runtime, request: Request, send: Send) -> None:
    """GET /live.json: what `manage.py monitor` shows; same token rule as /metrics."""
    if not _metrics_token_ok(request):
        await send_error(send, 401, "send the metrics token as Authorization: Bearer")
        return
    from gateway.live_feed import live_feed

    await send_response(send, 200, json.dumps(live_feed(runtime)).encode())


async def prometheus_metrics(runtime: Runtime, request: Request, send: Send) -> None:
    """GET /metrics: Prometheus text format; behind METRICS_TOKEN (a bearer token) if set."""
    if not _metrics_token_ok(request):
        await send_error(send, 401, "send the metrics token as Authorization: Bearer")
        return
    await send_response(
        send, 200, runtime.prometheus.render(), {"content-type": PROMETHEUS_CONTENT_TYPE}
    )


async def root(runtime: Runtime, request: Request, send: Send) -> None:
    payload = {"service": "anthropic-proxy", "messages": "/v1/messages", "admin": "/admin/"}
    await send_response(send, 200, json.dumps(payload).encode())


ROUTES = {
    "/v1/messages": {"POST": messages},
    "/v1/messages/count_tokens": {"POST": count_tokens},
    "/v1/models": {"GET": list_models},
    "/health": {"GET": health},
    "/metrics": {"GET": prometheus_metrics},
    "/live.json": {"GET": live_json},
    "/": {"GET": root},
}
