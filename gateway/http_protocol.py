"""uvicorn's HTTP/1.1 protocol (httptools) with the gateway's own limits at the door.

What happens before a request reaches the ASGI app is the server's: uvicorn answers a
malformed request with a plain-text 400, accepts headers of any size and waits forever for
a client that never finishes its request head. Here every such answer is an Anthropic
error (JSON, like every other error of the proxy), headers are capped at MAX_HEADER_BYTES
(431), and a request head must arrive within CLIENT_HEADER_TIMEOUT seconds of the
connection or of the previous request (408). The body's own limits (size, time) are
checked in gateway/app.py.

Each request's scope also carries a `ClientStream` (`scope["extensions"]`): a started,
chunked response body can be written through it straight to the client's transport from a
callback, without a task switch per write. Relays use it to hand upstream bytes on the
moment they arrive (gateway/relay.py); other servers leave it out and relays fall back to
ASGI `send`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway.translate.errors import error_json

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


CLIENT_STREAM = "gateway.client_stream"  # the scope extension's name


class ClientStream:
    """The body of one response, written from callbacks once its ASGI start is sent.

    Bytes go out framed as HTTP/1.1 chunks, exactly as uvicorn frames `http.response.body`
    messages, so ASGI sends and direct writes can alternate in one response.
    """

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle

    @property
    def ready(self) -> bool:
        """True while a chunked body is open: after its start, before its end."""
        cycle = self._cycle
        return bool(
            cycle.response_started and cycle.chunked_encoding and not cycle.response_complete
        )

    @property
    def gone(self) -> bool:
        return self._cycle.disconnected

    def write(self, data: bytes) -> bool:
        """Send `data` now; False when the client can take no more for the moment."""
        cycle = self._cycle
        if cycle.disconnected:
            return False
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return not cycle.flow.write_paused

    async def drain(self) -> None:
        """Wait until the client can take more (or has gone)."""
        await self._cycle.flow.drain()


class _HeadersTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into an HttpParserError."""


class GatewayHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes: int = settings.MAX_HEADER_BYTES
        self.header_timeout: float = settings.CLIENT_HEADER_TIMEOUT
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None

    # the request head's clock: from the connection (or the previous request) to its end
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # a request (not an upgrade)
            self.scope.setdefault("extensions", {})[CLIENT_STREAM] = ClientStream(cycle)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0
        self._arm_head_timer()  # the next request on this connection gets a fresh clock

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            limit = self.max_header_bytes
            self._refusal = (431, f"the request's headers are larger than {limit} bytes")
            raise _HeadersTooLarge

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        if self.header_timeout > 0:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is under way: its own deadlines apply
        if self.transport.is_closing():
            return
        if not self._head_bytes:
            self.transport.close()  # an idle connection: nothing was asked, nothing to answer
            return
        seconds = f"{self.header_timeout:g}"
        self._refusal = (408, f"the request's headers did not arrive within {seconds} s")
        self.send_400_response("timeout")

    def send_400_response(self, msg: str) -> None:
        """Every refusal at the HTTP layer, as an Anthropic error; the connection closes."""
        status, message = self._refusal or (400, f"invalid HTTP request: {msg.rstrip('.')}")
        self._refusal = None
        body = error_json(status, message)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
