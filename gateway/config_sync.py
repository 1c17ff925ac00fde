"""Configuration changes reach every process at once, not at the next poll.

`announce(version)` runs after the transaction that bumped `ConfigVersion` commits and
publishes the new number on `{REDIS_PREFIX}:config`; each Runtime hears it through the
circuit sync's subscription and rebuilds its snapshot on its database thread
(`ConfigNudges`). The once-a-second poll stays as the fallback, so a lost nudge (Redis
down, a process reconnecting) costs at most that second, and announcing never fails the
admin action that changed the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import Executor

import redis
from django.conf import settings
from redis.exceptions import RedisError

from gateway.snapshot import SnapshotHolder

log = logging.getLogger(__name__)

ANNOUNCE_TIMEOUT = 0.5  # seconds an admin action may wait for Redis, at most


def channel(prefix: str) -> str:
    return f"{prefix}:config"


def announce(version: int) -> None:
    """Tell every process that configuration `version` is committed (sync; no-op without
    REDIS_URL). Redis trouble is logged, never raised."""
    url = settings.REDIS_URL
    if not url:
        return
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=ANNOUNCE_TIMEOUT, socket_timeout=ANNOUNCE_TIMEOUT
        )
        try:
            client.publish(channel(settings.REDIS_PREFIX), str(version))
        finally:
            client.close()
    except (RedisError, OSError) as exc:
        log.warning(
            "configuration version %s saved, but not announced through Redis (%s); "
            "processes pick it up at their next poll",
            version,
            exc,
        )


class ConfigNudges:
    """Reloads the snapshot (if its version moved) whenever a nudge is heard. Nudges that
    arrive during a reload are folded into one more check after it."""

    def __init__(self, holder: SnapshotHolder, executor: Executor) -> None:
        self.holder = holder
        self.executor = executor
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def heard(self, payload: bytes | None) -> None:
        """A nudge (or None after a resubscription). Call on the event loop; never blocks."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._check(), name="config-nudge")

    async def _check(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            await self.holder.check(self.executor)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
