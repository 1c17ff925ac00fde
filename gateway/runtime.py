"""The process-wide objects of the gateway, created in one place and reached through it.

One Runtime per process owns the HTTP client, the snapshot holder, the request-log writer
and the single database thread they share. The ASGI app starts it on lifespan startup (or
on the first request, for servers without lifespan) and stops it on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from django.conf import settings

from gateway.logbook import Logbook
from gateway.snapshot import Snapshot, SnapshotHolder
from gateway.upstream import new_client

log = logging.getLogger(__name__)


def _close_db_connections() -> None:
    from django.db import connections

    connections.close_all()


class Runtime:
    def __init__(self, holder: SnapshotHolder | None = None) -> None:
        # One thread for all ORM work: a stable connection, no SQLite write contention.
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-db")
        self.holder = holder or SnapshotHolder()
        self.logbook = Logbook(self.db)
        self.client: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        self.started = False

    @property
    def snapshot(self) -> Snapshot:
        return self.holder.current

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.client is not None, "Runtime.start() has not run"
        return self.client

    async def start(self) -> None:
        async with self._start_lock:
            if self.started:
                return
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.db, self.holder.reload)
            self.client = new_client()
            self.logbook.start()
            poll = self.holder.poll_forever(settings.CONFIG_POLL_SECONDS, self.db)
            self._tasks.append(loop.create_task(poll, name="config-poll"))
            self.started = True
            log.info("gateway ready: configuration version %s", self.snapshot.version)

    async def reload(self) -> None:
        """Rebuild the snapshot now (after an import, or from tests)."""
        await asyncio.get_running_loop().run_in_executor(self.db, self.holder.reload)

    async def stop(self) -> None:
        if not self.started:
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.logbook.stop()
        if self.client is not None:
            await self.client.close()
        await asyncio.get_running_loop().run_in_executor(self.db, _close_db_connections)
        self.db.shutdown(wait=True)
        self.started = False
