"""The ASGI front door: /v1 and /health are served here, everything else goes to Django.

The proxy endpoints bypass Django's request machinery (middleware, sessions, templates):
they need none of it, and every request pays for it. This is also where the client's
disconnect is noticed: the handler runs as a task that is cancelled the moment the client
goes away, which closes the upstream connection through the handler's `finally`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from gateway import lifecycle
from gateway.http_protocol import CLIENT_STREAM, ClientStream
from gateway.runtime import Runtime
from gateway.translate.errors import error_json

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[bytes, bytes]
    body: bytes
    client_stream: ClientStream | None = None  # uvicorn's, for relays; see http_protocol


Handler = Callable[[Runtime, Request, Send], Awaitable[None]]


async def send_response(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-length", str(len(body)).encode())]
    raw.extend((k.encode(), v.encode()) for k, v in (headers or {}).items())
    if not headers or "content-type" not in headers:
        raw.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    await send_response(send, status, error_json(status, message), headers)


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class GatewayApp:
    """Routes /v1/*, /health and / to the gateway handlers; the rest to `fallback`."""

    def __init__(self, fallback: Callable[..., Awaitable[None]], runtime: Runtime | None = None):
        from gateway.views import ROUTES

        self.fallback = fallback
        self.runtime = runtime or Runtime()
        self.routes: dict[str, dict[str, Handler]] = ROUTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            methods = self.routes.get(scope["path"])
            if methods is not None or scope["path"].startswith("/v1/"):
                await self._serve(methods or {}, scope, receive, send)
                return
        elif kind == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.fallback({**scope, "gateway_runtime": self.runtime}, receive, send)

    def with_runtime(self, app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """`app` with this runtime in its scope (`scope["gateway_runtime"]`), starting it
        first if no request has (websockets arrive without a lifespan on some servers)."""

        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if not self.runtime.started:
                await self.runtime.start()
            await app({**scope, "gateway_runtime": self.runtime}, receive, send)

        return wrapped

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    log.exception("gateway startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _serve(
        self, methods: dict[str, Handler], scope: Scope, receive: Receive, send: Send
    ) -> None:
        method = scope["method"]
        handler = methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            if not methods:
                await send_error(send, 404, f"no such endpoint: {method} {scope['path']}")
            else:
                allow = ", ".join(sorted(methods))
                await send_error(send, 405, f"method {method} not allowed", {"allow": allow})
            return
        if not self.runtime.started:
            await self.runtime.start()
        headers = {name.lower(): value for name, value in scope["headers"]}
        try:
            body = b""
            if method == "POST":
                async with asyncio.timeout(settings.CLIENT_BODY_TIMEOUT):
                    body = await read_body(receive, headers, settings.MAX_BODY_BYTES)
        except BodyTooLarge:
            limit = settings.MAX_BODY_BYTES
            await send_error(send, 413, f"request body is larger than {limit} bytes")
            return
        except TimeoutError:
            seconds = f"{settings.CLIENT_BODY_TIMEOUT:g}"
            message = f"the request body did not arrive within {seconds} s"
            await send_error(send, 408, message, {"connection": "close"})
            return
        except ClientGone:
            return
        query = scope.get("query_string", b"").decode("latin-1")
        client_stream = scope.get("extensions", {}).get(CLIENT_STREAM)
        request = Request(method, scope["path"], query, headers, body, client_stream)
        if method == "POST":
            await _cancel_on_disconnect(handler(self.runtime, request, send), receive)
        else:
            await handler(self.runtime, request, _head_aware(send, method))


async def _cancel_on_disconnect(work: Awaitable[None], receive: Receive) -> None:
    """Run `work`; cancel it as soon as the client disconnects."""
    task = asyncio.ensure_future(work)
    lifecycle.STATE.track(task)  # ended with an error if still running when grace is over
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    watcher.add_done_callback(lambda _: task.cancel())  # a no-op once the work is done
    try:
        await task  # cancelling this coroutine cancels the work and waits for its end
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            return  # the client left; the handler logged it as client_cancelled
        raise
    finally:
        watcher.cancel()


def _head_aware(send: Send, method: str) -> Send:
    if method != "HEAD":
        return send

    async def send_headers_only(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            message = {"type": "http.response.body", "body": b""}
        await send(message)

    return send_headers_only
