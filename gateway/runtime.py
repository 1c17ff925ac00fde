"""The process-wide objects of the gateway, created in one place and reached through it.

One Runtime per process owns the HTTP client, the snapshot holder, the request-log writer
and the single database thread they share. The ASGI app starts it on lifespan startup (or
on the first request, for servers without lifespan) and stops it on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from django.conf import settings

from gateway.affinity import AffinityTable
from gateway.budgets import refresh_forever
from gateway.config_sync import ConfigNudges
from gateway.config_sync import channel as config_channel
from gateway.health import CircuitPolicy, HealthRegistry, StateChange
from gateway.health_sync import RedisCircuitSync, attach
from gateway.jsonl import JsonlLog
from gateway.limits import Limiter
from gateway.live_share import LiveShare
from gateway.logbook import Logbook
from gateway.metrics import Metrics, observe_entry
from gateway.prometheus import PromMetrics
from gateway.snapshot import Snapshot, SnapshotHolder
from gateway.upstream import new_client

log = logging.getLogger(__name__)


def _log_state_change(change: StateChange) -> None:
    provider, model = change.key
    log.warning(
        "circuit %s/%s: %s -> %s (%s)",
        provider,
        model,
        change.old.value,
        change.new.value,
        change.reason,
    )


def _close_db_connections() -> None:
    from django.db import connections

    connections.close_all()


class Runtime:
    def __init__(self, holder: SnapshotHolder | None = None) -> None:
        # One thread for all ORM work: a stable connection, no SQLite write contention.
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-db")
        self.holder = holder or SnapshotHolder()
        self.holder.on_reload = self._apply
        self.logbook = Logbook(self.db)
        self.health = HealthRegistry(on_change=_log_state_change)
        self.affinity = AffinityTable()
        self.limiter = Limiter(settings.MAX_CONCURRENT_REQUESTS)
        self.metrics = Metrics()
        self.prometheus = PromMetrics(self.health, self.logbook)
        self.jsonl: JsonlLog | None = None
        self.circuit_sync: RedisCircuitSync | None = None
        self.config_nudges: ConfigNudges | None = None
        self.live_share: LiveShare | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.client: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        self.started = False

    @property
    def snapshot(self) -> Snapshot:
        return self.holder.current

    @property
    def capture_bodies(self) -> bool:
        return bool(settings.LOG_BODIES or self.jsonl is not None)

    def record(self, entry: Any) -> None:
        """Everything that learns of a finished request: log, JSONL, live figures."""
        self.logbook.record(entry)
        if self.jsonl is not None:
            self.jsonl.write(entry)
        observe_entry(self.metrics, entry)
        self.prometheus.observe(entry)

    @property
    def tps_threshold(self) -> float:
        override = settings.TPS_THRESHOLD
        return self.snapshot.tps_threshold if override is None else override

    def _apply(self, snapshot: Snapshot) -> None:
        """Settings that live outside the snapshot follow it. Reloads run on the database
        thread; the health registry belongs to the event loop, so the change is handed
        over to it."""
        if self._loop is None:
            self._apply_now(snapshot)
        else:
            self._loop.call_soon_threadsafe(self._apply_now, snapshot)

    def _apply_now(self, snapshot: Snapshot) -> None:
        self.health.policy = CircuitPolicy.from_config(snapshot.routing.get("circuit") or {})
        self.health.retain(route.key for route in snapshot.routes)

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.client is not None, "Runtime.start() has not run"
        return self.client

    async def start(self) -> None:
        async with self._start_lock:
            if self.started:
                return
            loop = asyncio.get_running_loop()
            self._loop = loop
            await loop.run_in_executor(self.db, self.holder.reload)
            self.client = new_client()
            self.logbook.start()
            if settings.LOG_FILE:
                self.jsonl = JsonlLog(settings.LOG_FILE, max_bytes=settings.LOG_FILE_MAX_BYTES)
                self.jsonl.start()
            if settings.REDIS_URL:
                await self._start_sharing(settings.REDIS_URL, settings.REDIS_PREFIX)
            poll = self.holder.poll_forever(settings.CONFIG_POLL_SECONDS, self.db)
            self._tasks.append(loop.create_task(poll, name="config-poll"))
            budgets = refresh_forever(
                self.limiter, lambda: self.snapshot, self.db, settings.BUDGET_REFRESH_SECONDS
            )
            self._tasks.append(loop.create_task(budgets, name="budgets"))
            if settings.SERVE_RETENTION:
                self._tasks.append(loop.create_task(self._prune_daily(), name="retention"))
            self.started = True
            log.info("gateway ready: configuration version %s", self.snapshot.version)

    async def _start_sharing(self, url: str, prefix: str) -> None:
        """With Redis, every worker and host shares circuits and measured speeds, hears of
        configuration changes at once, publishes its live figures and counts the others'
        use of limited keys."""
        from gateway.live_feed import process_report

        self.circuit_sync = RedisCircuitSync(self.health, url, prefix=prefix)
        attach(self.health, self.circuit_sync)
        self.config_nudges = ConfigNudges(self.holder, self.db)
        self.circuit_sync.also_listen(config_channel(prefix), self.config_nudges.heard)
        await self.circuit_sync.start()
        self.live_share = LiveShare(
            url,
            lambda charts: process_report(self, charts=charts),
            prefix=prefix,
            on_others=lambda reports: self.limiter.observe(
                {report["instance"]: report.get("keys", {}) for report in reports}
            ),
        )
        await self.live_share.start()

    async def _stop_sharing(self) -> None:
        if self.live_share is not None:
            await self.live_share.stop()
        if self.circuit_sync is not None:
            await self.circuit_sync.stop()
        if self.config_nudges is not None:
            await self.config_nudges.stop()

    def ensure_task(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `factory()` as a background task of this runtime, once per name (the
        dashboard's broadcaster starts this way, on its first viewer)."""
        if any(task.get_name() == name and not task.done() for task in self._tasks):
            return
        self._tasks.append(asyncio.get_running_loop().create_task(factory(), name=name))

    async def _prune_daily(self) -> None:
        """`serve` runs retention once a day (the first time an hour after start)."""
        from gateway.retention import prune

        delay = 3600.0
        while True:
            await asyncio.sleep(delay)
            delay = 86400.0
            try:
                report = await asyncio.get_running_loop().run_in_executor(self.db, prune)
                log.info("retention: deleted %d request-log rows", report.deleted)
            except Exception:
                log.exception("retention failed; trying again tomorrow")

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
        if self.jsonl is not None:
            self.jsonl.stop()
        await self._stop_sharing()
        if self.client is not None:
            await self.client.close()
        await asyncio.get_running_loop().run_in_executor(self.db, _close_db_connections)
        self.db.shutdown(wait=True)
        self.started = False
