"""uvicorn's Server with the gateway's shutdown: drain, grace, then end what is left.

See gateway/lifecycle.py for the sequence. SIGTERM (what orchestrators and the workers'
supervisor send) drains first; SIGINT (Ctrl-C) skips the drain; a second signal of either
kind stops the drain and shuts down at once, and a second SIGINT forces the exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType

import uvicorn

from gateway.lifecycle import STATE

log = logging.getLogger(__name__)
ENDING_SECONDS = 5.0  # for ended requests to send their last bytes


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain: float, grace: float) -> None:
        config.timeout_graceful_shutdown = int(grace + ENDING_SECONDS)
        super().__init__(config)
        self.drain = drain
        self.grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if STATE.draining or sig != signal.SIGTERM or self.drain <= 0 or self._loop is None:
            super().handle_exit(sig, frame)
            return
        STATE.draining = True
        log.warning("SIGTERM: draining for %gs (/health answers 503), then stopping", self.drain)
        loop = self._loop
        loop.call_soon_threadsafe(loop.call_later, self.drain, self._stop_after_drain, sig)

    def _stop_after_drain(self, sig: int) -> None:
        if not self.should_exit:
            super().handle_exit(sig, None)

    async def _wait_tasks_to_complete(self) -> None:
        STATE.draining = True
        try:
            await asyncio.wait_for(super()._wait_tasks_to_complete(), self.grace)
            return
        except TimeoutError:
            ended = STATE.end_requests()
            log.warning(
                "shutdown: the %gs grace period is over; ended %d requests in progress "
                "with an overloaded_error",
                self.grace,
                ended,
            )
        await super()._wait_tasks_to_complete()
