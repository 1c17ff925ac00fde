"""Share circuit openings between workers through Redis, so that N workers do not each
have to discover (and hammer) a dead provider.

Local transitions arrive through the registry's `on_change` (see `attach`) and are only
queued; the sync's own tasks do all Redis I/O, so the request path never awaits Redis.
An open circuit is a key `{prefix}:circuit:{provider}:{model}` holding JSON
`{"until_wall", "reason", "provider", "model", "instance"}` that expires with the circuit
(PX), plus a message on channel `{prefix}:circuit`; a close deletes the key and publishes.
Every instance applies the others' messages to its own registry and, on start, loads the
keys already there.

Times: monotonic clocks are private to a process, so what crosses Redis is wall-clock
(`time.time()`) `until_wall`, converted back to remaining seconds on arrival. Clock skew
between hosts shifts the remote cooldown by the skew (NTP keeps it well under a second);
the key's expiry is computed from the remaining time, so Redis itself is skew-free.
Redis being down only disables sharing: each registry keeps working on its own. Messages
published while this instance was disconnected are not replayed (a reconnect reloads the
open keys); a missed close costs at most one cooldown, after which the local circuit
probes on its own.

The same subscription carries other channels (`also_listen`, e.g. the configuration
nudges of gateway/config_sync.py), so a process keeps one pub/sub connection and one
reconnect loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from gateway.health import CircuitState, HealthRegistry, Key, StateChange

log = logging.getLogger(__name__)

MAX_PENDING = 1000  # queued outgoing changes; beyond it changes are dropped with a warning
RECONNECT_MAX = 30.0  # seconds between attempts to resubscribe, at most
STOP_FLUSH = 1.0  # seconds `stop()` waits for queued changes to reach Redis
FIGURES_EVERY = 2.0  # seconds between exchanges of TPS/TTFT figures with other workers
FIGURES_TTL = 15  # seconds a worker's figures outlive its last update (it may be gone)
Pair = tuple[float | None, float | None]  # (TPS, TTFT ms) of one route


@dataclass(frozen=True)
class CircuitMessage:
    """One open or close, as it crosses Redis (both in the key value and on the channel)."""

    op: str  # "open" | "close"
    provider: str
    model: str
    instance: str
    reason: str
    until_wall: float | None = None  # unix time the circuit closes, for "open"

    @property
    def key(self) -> Key:
        return (self.provider, self.model)

    def dumps(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def loads(cls, raw: str | bytes) -> CircuitMessage | None:
        try:
            data: dict[str, Any] = json.loads(raw)
            message = cls(
                op=str(data["op"]),
                provider=str(data["provider"]),
                model=str(data["model"]),
                instance=str(data["instance"]),
                reason=str(data.get("reason", "")),
                until_wall=float(data["until_wall"]) if data.get("until_wall") else None,
            )
        except (ValueError, KeyError, TypeError):
            log.warning("circuit sync: ignoring a malformed message %.200r", raw)
            return None
        return message if message.op in ("open", "close") else None


def glob_escape(text: str) -> str:
    """`text` matched literally by a Redis SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisCircuitSync:
    """Publishes local circuit transitions and applies other instances' ones."""

    def __init__(
        self,
        registry: HealthRegistry,
        url: str,
        *,
        prefix: str = "anthropic-proxy",
        instance: str | None = None,
        figures_every: float = FIGURES_EVERY,
    ) -> None:
        self.registry = registry
        self.figures_every = figures_every
        self.url = url
        self.prefix = prefix
        self.channel = f"{prefix}:circuit"
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pending: asyncio.Queue[CircuitMessage] = asyncio.Queue(MAX_PENDING)
        self._applying = False
        self._redis: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: dict[str, Callable[[bytes | None], None]] = {}

    def key_for(self, key: Key) -> str:
        return f"{self.prefix}:circuit:{key[0]}:{key[1]}"

    def also_listen(self, channel: str, handler: Callable[[bytes | None], None]) -> None:
        """Hand each message on `channel` to `handler` (on the event loop), and None after
        every (re)subscription, since messages sent while disconnected are lost. Call it
        before `start()`."""
        self._channels[channel] = handler

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe and load the open circuits now if Redis answers; keep trying if not."""
        self._redis = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2.0, socket_timeout=5.0
        )
        try:
            await self._subscribe_and_load()
        except (RedisError, OSError) as exc:
            log.warning("circuit sync: Redis unavailable (%s); retrying in the background", exc)
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="circuit-sync-listen"),
            asyncio.create_task(self._write_forever(), name="circuit-sync-write"),
            asyncio.create_task(self._figures_forever(), name="health-figures-sync"),
        ]

    async def stop(self) -> None:
        """Flush what is queued (briefly), then close everything."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_FLUSH):
                await self._pending.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._drop_pubsub()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # -- measured figures ----------------------------------------------------------------

    async def _figures_forever(self) -> None:
        """Every few seconds: publish this worker's TPS/TTFT, read and pool the others'."""
        while True:
            await asyncio.sleep(self.figures_every)
            try:
                await self.exchange_figures()
            except (RedisError, OSError) as exc:
                log.debug("health figures not exchanged this time: %s", exc)

    async def exchange_figures(self) -> None:
        if self._redis is None:
            return
        mine = f"{self.prefix}:figures:{self.instance}"
        local = self.registry.local_figures()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(mine)
            if local:
                pipe.hset(mine, mapping={json.dumps(k): json.dumps(v) for k, v in local.items()})
                pipe.expire(mine, FIGURES_TTL)
            await pipe.execute()
        others: dict[Key, list[Pair]] = {}
        async for name in self._redis.scan_iter(match=f"{glob_escape(self.prefix)}:figures:*"):
            if name.decode() == mine:
                continue
            for field, value in (await self._redis.hgetall(name)).items():
                provider, model = json.loads(field)
                others.setdefault((provider, model), []).append(tuple(json.loads(value)))
        self.registry.share({key: _mean_pair(values) for key, values in others.items()})

    # -- outgoing ------------------------------------------------------------------------

    def publish(self, change: StateChange) -> None:
        """Queue a local transition for Redis; never blocks. Call it on the loop's thread."""
        if self._applying:  # the change came from Redis: do not echo it back
            return
        message = self._message_for(change)
        if message is None:
            return
        try:
            self._pending.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("circuit sync: queue full, %s of %s not shared", message.op, change.key)

    def _message_for(self, change: StateChange) -> CircuitMessage | None:
        provider, model = change.key
        if change.new is CircuitState.CLOSED:
            return CircuitMessage("close", provider, model, self.instance, change.reason)
        if change.new is CircuitState.OPEN and change.open_until is not None:
            until_wall = time.time() + (change.open_until - change.at)
            return CircuitMessage("open", provider, model, self.instance, change.reason, until_wall)
        return None  # HALF_OPEN is reached by each instance on its own as time passes

    async def _write_forever(self) -> None:
        while True:
            message = await self._pending.get()
            try:
                await self._write(message)
            except (RedisError, OSError) as exc:
                log.warning(
                    "circuit sync: could not share %s of %s: %s", message.op, message.key, exc
                )
            finally:
                self._pending.task_done()

    async def _write(self, message: CircuitMessage) -> None:
        assert self._redis is not None
        name = self.key_for(message.key)
        async with self._redis.pipeline(transaction=False) as pipe:
            if message.op == "open":
                px = int(((message.until_wall or 0) - time.time()) * 1000)
                if px <= 0:
                    return
                pipe.set(name, message.dumps(), px=px)
            else:
                pipe.delete(name)
            pipe.publish(self.channel, message.dumps())
            await pipe.execute()

    # -- incoming ------------------------------------------------------------------------

    async def _subscribe_and_load(self) -> None:
        """Subscribe first, then read the keys: nothing published in between is missed."""
        assert self._redis is not None
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel, *self._channels)
            pattern = glob_escape(f"{self.prefix}:circuit:") + "*"
            async for name in self._redis.scan_iter(match=pattern, count=200):
                raw = await self._redis.get(name)
                if raw is not None:
                    self.apply(CircuitMessage.loads(raw))
        except BaseException:
            await pubsub.aclose()
            raise
        self._pubsub = pubsub
        for handler in self._channels.values():
            handler(None)

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                if self._pubsub is None:
                    await self._subscribe_and_load()
                    log.info("circuit sync: subscribed to %s", self.channel)
                delay = 0.5
                await self._listen()
            except (RedisError, OSError) as exc:
                log.warning("circuit sync: lost Redis (%s); retrying in %gs", exc, delay)
                await self._drop_pubsub()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    async def _listen(self) -> None:
        while self._pubsub is not None:
            item = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if item is None or item.get("type") != "message":
                continue
            channel = item["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            handler = self._channels.get(channel)
            if handler is not None:
                handler(item["data"])
            else:
                self.apply(CircuitMessage.loads(item["data"]))

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    def apply(self, message: CircuitMessage | None) -> None:
        """Another instance's open or close, applied to our registry (our own are skipped)."""
        if message is None or message.instance == self.instance:
            return
        self._applying = True
        try:
            if message.op == "open":
                remaining = (message.until_wall or 0) - time.time()
                self.registry.open_for(message.key, remaining, f"shared: {message.reason}")
            else:
                self.registry.close(message.key, f"shared: {message.reason}")
        finally:
            self._applying = False


def _mean_pair(
    values: list[tuple[float | None, float | None]],
) -> tuple[float | None, float | None]:
    def mean(items: list[float | None]) -> float | None:
        present = [v for v in items if v is not None]
        return sum(present) / len(present) if present else None

    return mean([v[0] for v in values]), mean([v[1] for v in values])


def attach(registry: HealthRegistry, sync: RedisCircuitSync) -> None:
    """Make `sync` hear the registry's transitions, after whatever listened before."""
    previous = registry.on_change

    def chained(change: StateChange) -> None:
        if previous is not None:
            previous(change)
        sync.publish(change)

    registry.on_change = chained
