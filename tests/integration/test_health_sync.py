"""Circuit sharing between two registries (as if two worker processes) over a real Redis."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from gateway.health import CircuitState, HealthRegistry, StateChange
from gateway.health_sync import CircuitMessage, RedisCircuitSync, attach
from tests.conftest import service_available, skip_or_fail

REDIS_URL = "redis://127.0.0.1:6379/15"
KEY = ("zai", "glm-4.6:fp8")  # a colon in the model name must survive the round trip


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 1.0) -> None:
    """Poll `check` until it holds, failing after `within` seconds."""
    for _ in range(int(within / 0.01)):
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"not true within {within}s")


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    if not service_available("127.0.0.1", 6379):
        skip_or_fail("Redis at 127.0.0.1:6379")
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: aioredis.Redis) -> AsyncIterator[str]:
    name = f"ap-test-{uuid.uuid4().hex[:12]}"
    yield name
    async for key in redis.scan_iter(match=f"{name}:*"):
        await redis.delete(key)


@pytest.fixture
async def make_sync(
    prefix: str,
) -> AsyncIterator[Callable[[HealthRegistry], Awaitable[RedisCircuitSync]]]:
    started: list[RedisCircuitSync] = []

    async def make(registry: HealthRegistry) -> RedisCircuitSync:
        sync = RedisCircuitSync(registry, REDIS_URL, prefix=prefix)
        attach(registry, sync)
        await sync.start()
        started.append(sync)
        return sync

    yield make
    for sync in started:
        await sync.stop()


def open_circuit(registry: HealthRegistry) -> None:
    for _ in range(registry.policy.failure_threshold):
        registry.failure(KEY, kind="http_status", message="503")


async def test_an_open_circuit_reaches_the_other_worker_within_a_second(
    redis: aioredis.Redis, make_sync: Callable[[HealthRegistry], Awaitable[RedisCircuitSync]]
) -> None:
    first, second = HealthRegistry(), HealthRegistry()
    sync = await make_sync(first)
    await make_sync(second)
    open_circuit(first)
    await eventually(lambda: second.view(KEY).state is CircuitState.OPEN)
    assert second.admit(KEY) == (False, "circuit open for 30s")
    stored = json.loads(await redis.get(sync.key_for(KEY)))
    assert stored["instance"] == sync.instance and stored["reason"] == "5 consecutive failures"
    assert 29_000 < await redis.pttl(sync.key_for(KEY)) <= 30_000


async def test_a_shared_open_is_not_echoed_back(
    redis: aioredis.Redis,
    prefix: str,
    make_sync: Callable[[HealthRegistry], Awaitable[RedisCircuitSync]],
) -> None:
    listener = redis.pubsub(ignore_subscribe_messages=True)
    await listener.subscribe(f"{prefix}:circuit")
    first, second = HealthRegistry(), HealthRegistry()
    await make_sync(first)
    await make_sync(second)
    open_circuit(first)
    await eventually(lambda: second.view(KEY).state is CircuitState.OPEN)
    heard = []
    for _ in range(20):  # listen for 0.2 s more: an echo would come by then
        item = await listener.get_message(ignore_subscribe_messages=True, timeout=0.01)
        if item is not None:
            heard.append(json.loads(item["data"]))
    await listener.aclose()
    assert [(m["op"], m["reason"]) for m in heard] == [("open", "5 consecutive failures")]


async def test_a_probe_success_closes_the_circuit_everywhere(
    redis: aioredis.Redis, make_sync: Callable[[HealthRegistry], Awaitable[RedisCircuitSync]]
) -> None:
    clock = Clock()
    first, second = HealthRegistry(clock=clock), HealthRegistry()
    second_changes: list[StateChange] = []
    second.on_change = second_changes.append
    sync = await make_sync(first)
    await make_sync(second)
    open_circuit(first)
    await eventually(lambda: second.view(KEY).state is CircuitState.OPEN)
    clock.now += first.policy.cooldown
    assert first.admit(KEY) == (True, None)
    first.success(KEY)
    await eventually(lambda: second.view(KEY).state is CircuitState.CLOSED)
    assert [c.reason for c in second_changes] == [
        "shared: 5 consecutive failures",
        "shared: probe succeeded",
    ]
    assert await redis.exists(sync.key_for(KEY)) == 0


async def test_a_late_worker_learns_an_already_open_circuit_on_start(
    redis: aioredis.Redis, make_sync: Callable[[HealthRegistry], Awaitable[RedisCircuitSync]]
) -> None:
    first = HealthRegistry()
    sync = await make_sync(first)
    first.open_for(KEY, 120, "Retry-After 120s")
    await eventually(lambda: redis.exists(sync.key_for(KEY)))
    late = HealthRegistry()
    await make_sync(late)
    view = late.view(KEY)
    assert view.state is CircuitState.OPEN
    assert view.open_until is not None and 118 < view.open_until - late.clock() <= 120


async def test_attach_keeps_the_existing_listener() -> None:
    heard: list[StateChange] = []
    registry = HealthRegistry(on_change=heard.append)
    attach(registry, RedisCircuitSync(registry, REDIS_URL, prefix="ap-x"))
    registry.open_for(KEY, 10, "test")
    assert [c.reason for c in heard] == ["test"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_redis_leaves_the_registry_working_alone() -> None:
    registry = HealthRegistry()
    sync = RedisCircuitSync(registry, f"redis://127.0.0.1:{closed_port()}/15", prefix="ap-x")
    attach(registry, sync)
    async with asyncio.timeout(5):
        await sync.start()
        open_circuit(registry)
        assert registry.view(KEY).state is CircuitState.OPEN
        await sync.stop()


def test_messages_from_this_instance_are_ignored() -> None:
    registry = HealthRegistry()
    sync = RedisCircuitSync(registry, REDIS_URL, prefix="ap-x", instance="me")
    until = time.time() + 60
    sync.apply(CircuitMessage("open", *KEY, instance="me", reason="x", until_wall=until))
    assert registry.view(KEY).state is CircuitState.CLOSED
    sync.apply(CircuitMessage("open", *KEY, instance="other", reason="x", until_wall=until))
    assert registry.view(KEY).state is CircuitState.OPEN


async def test_workers_pool_their_measured_tps_and_ttft() -> None:
    """A worker that has not served a route yet routes by what the others measured."""
    if not service_available("127.0.0.1", 6379):
        skip_or_fail("Redis at 127.0.0.1:6379")
    from gateway.health import HealthRegistry
    from gateway.health_sync import RedisCircuitSync

    prefix = f"ap-test-figures-{uuid.uuid4().hex[:8]}"
    first, second = HealthRegistry(), HealthRegistry()
    syncs = [
        RedisCircuitSync(r, "redis://127.0.0.1:6379/15", prefix=prefix, figures_every=60)
        for r in (first, second)
    ]
    for sync in syncs:
        await sync.start()
    try:
        key = ("acme", "model-a")
        first.success(key, ttft=0.4, output_tokens=100, generation_seconds=2.0)
        assert second.view(key).tps is None
        await syncs[0].exchange_figures()
        await syncs[1].exchange_figures()
        view = second.view(key)
        assert (view.tps, view.ttft_ms) == (50.0, 400.0)
        second.success(key, ttft=0.2, output_tokens=100, generation_seconds=1.0)
        assert second.view(key).tps == (100.0 + 50.0) / 2, "its own and the others', pooled"
    finally:
        for sync in syncs:
            await sync.stop()
