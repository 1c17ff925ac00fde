"""Every process's live figures in Redis, so that any process can show the whole gateway's.

Once a second each process writes its report (gateway/live_feed.py `process_report`) as
JSON under `{prefix}:live:{host}:{pid}`, expiring after `ttl` seconds so that a process
that died drops out, and reads everyone's back. The processes find each other through a
sorted set `{prefix}:live` (instance -> last write, wall clock), so nothing scans Redis's
key space; the keys' expiry, not the set, decides who is alive.

The dashboard and /live.json merge the latest reports with their own fresh one
(gateway/live_merge.py) without touching Redis: readers never wait on I/O, and other
processes' figures are at most about two seconds old. Redis being down leaves each
process showing its own figures. The charts (per-minute medians, the costly part) are
recomputed only every `charts_every` seconds; in between the last ones are sent again.
The reports also carry each process's use of limited keys (gateway/limits.py), handed
to `on_others` after every exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.live_merge import ProcessReport

log = logging.getLogger(__name__)

EVERY = 1.0  # seconds between exchanges
TTL = 5  # seconds a report outlives its process's last exchange
CHARTS_EVERY = 10.0  # seconds between recomputations of this process's charts
FORGET = 300.0  # seconds after its last write an instance leaves the index
Report = Callable[[bool], ProcessReport]  # report(with_charts)


def this_instance() -> str:
    """How this process is named in Redis and in the reports: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LiveShare:
    """Publishes this process's report and keeps the latest reports of all the others."""

    def __init__(
        self,
        url: str,
        report: Report,
        *,
        prefix: str,
        every: float = EVERY,
        ttl: int = TTL,
        charts_every: float = CHARTS_EVERY,
        on_others: Callable[[list[ProcessReport]], None] | None = None,
    ) -> None:
        self.url = url
        self.report = report
        self.every = every
        self.ttl = ttl
        self.charts_every = charts_every
        self.on_others = on_others  # told the others' reports after every exchange
        self._charts: dict[str, Any] = {}
        self._charts_at: float | None = None
        self.prefix = prefix
        self.instance = this_instance()
        self.index = f"{prefix}:live"
        self.key = f"{prefix}:live:{self.instance}"
        self._others: list[ProcessReport] = []
        self._redis: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def others(self) -> list[ProcessReport]:
        """The other live processes' reports, as of the last exchange."""
        return self._others

    async def start(self) -> None:
        self._redis = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2.0, socket_timeout=5.0
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="live-share")

    async def stop(self) -> None:
        """Stop exchanging, and drop out of the others' figures at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.delete(self.key)
                await self._redis.zrem(self.index, self.instance)
            await self._redis.aclose()
            self._redis = None

    async def _run(self) -> None:
        while True:
            try:
                await self.exchange()
                self._failing = False
            except (RedisError, OSError) as exc:
                self._others = []
                if self.on_others is not None:
                    self.on_others([])
                if not self._failing:
                    log.warning("live figures not shared (Redis: %s); showing this process's", exc)
                self._failing = True
            await asyncio.sleep(self.every)

    async def exchange(self) -> None:
        """Write this process's report, read everyone else's."""
        assert self._redis is not None
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key, json.dumps(self._mine()), ex=self.ttl)
            pipe.zadd(self.index, {self.instance: now})
            pipe.zremrangebyscore(self.index, "-inf", now - FORGET)
            pipe.zrange(self.index, 0, -1)
            *_, members = await pipe.execute()
        names = [f"{self.prefix}:live:{m.decode()}" for m in members if m.decode() != self.instance]
        values = await self._redis.mget(names) if names else []
        self._others = [report for value in values if (report := _loads(value)) is not None]
        if self.on_others is not None:
            self.on_others(self._others)

    def _mine(self) -> ProcessReport:
        now = time.monotonic()
        due = self._charts_at is None or now - self._charts_at >= self.charts_every
        report = self.report(due)
        if due:
            self._charts, self._charts_at = report["charts"], now
        else:
            report["charts"] = self._charts
        return report


def _loads(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        report = json.loads(raw)
    except ValueError:
        log.warning("ignoring a malformed live report %.200r", raw)
        return None
    return report if isinstance(report, dict) and "routes" in report else None
