"""Once a second, render the live overview once and push it to every open dashboard.

One render per tick whatever the number of viewers, and no database query: the figures
come from the in-memory metrics and health registry, with every other process's figures
pooled through Redis (gateway/live_share.py) when REDIS_URL is set.

The group is this process's own: with the Redis channel layer a shared group would have
every process's broadcaster push the same merged overview to every viewer, N times a
second; this way each viewer hears only the process its websocket is connected to.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import Any

from django.template.loader import render_to_string

from dashboard.live import overview
from gateway.runtime import Runtime

GROUP = f"dashboard-live-{os.getpid()}-{uuid.uuid4().hex[:8]}"
INTERVAL = 1.0
log = logging.getLogger(__name__)


class Broadcaster:
    def __init__(self, runtime: Runtime, layer: Any, interval: float = INTERVAL) -> None:
        self.runtime = runtime
        self.layer = layer
        self.interval = interval

    def render(self) -> str:
        context = {**overview(self.runtime), "oob": True}
        return render_to_string("dashboard/partials/overview_live.html", context)

    async def tick(self) -> None:
        await self.layer.group_send(GROUP, {"type": "live.update", "html": self.render()})

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:
                log.exception("dashboard broadcast failed; trying again next tick")
