"""A real proxy server on loopback for integration tests: uvicorn in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any

import pytest
import uvicorn

from gateway.http_protocol import CLIENT_STREAM, GatewayHttpProtocol
from gateway.runtime import Runtime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SendOnlyProtocol(GatewayHttpProtocol):
    """The gateway's protocol without the client stream, as under a server that has none
    (daphne): relays then hand every chunk to ASGI `send`."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.scope.get("extensions", {}).pop(CLIENT_STREAM, None)


RELAY_MODES: dict[str, type[GatewayHttpProtocol]] = {
    "push": GatewayHttpProtocol,  # what `serve` runs: relays write from upstream callbacks
    "send": SendOnlyProtocol,
}

# on a test using the `proxy` fixture: run it under both
both_relay_modes = pytest.mark.parametrize("proxy", list(RELAY_MODES), indirect=True)


class LiveProxy:
    """The gateway's ASGI app served by uvicorn on 127.0.0.1, in a background thread."""

    def __init__(self, relay_mode: str = "push") -> None:
        from proxy_site.asgi import build_application

        self.runtime = Runtime()
        self.app = build_application(self.runtime)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            http=RELAY_MODES[relay_mode],
            lifespan="on",
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def start(self) -> LiveProxy:
        self._thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            self._thread.join(0.01)
        raise RuntimeError("the proxy did not start")

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def reload(self) -> None:
        """Pick up configuration written by the test (the poll would, within a second)."""
        self.call(self.runtime.reload())

    def flush_logs(self) -> None:
        self.call(self.runtime.logbook.flush())

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
