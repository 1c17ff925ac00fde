"""The live overview's websocket: staff only; receives the broadcaster's HTML once a second."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from dashboard.broadcaster import GROUP, Broadcaster


class LiveConsumer(AsyncWebsocketConsumer):
    groups = [GROUP]

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.accept()
        runtime = self.scope.get("gateway_runtime")
        if runtime is not None:
            broadcaster = Broadcaster(runtime, self.channel_layer)
            runtime.ensure_task("dashboard-broadcaster", broadcaster.run)
            await self.send(text_data=broadcaster.render())

    async def live_update(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["html"])
