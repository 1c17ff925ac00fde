"""Once a second, render the live overview once and push it to every open dashboard.

One render per tick whatever the number of viewers, and no database query: the figures
come from this process's in-memory metrics and health registry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.template.loader import render_to_string

from dashboard.live import overview
from gateway.runtime import Runtime

GROUP = "dashboard-live"
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
