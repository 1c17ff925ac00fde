"""Several `manage.py serve` processes sharing one database and one Redis behave as one
gateway: keys, circuits, live figures and the request log. Real processes on loopback
ports (as if on different hosts), the test database of this run (PostgreSQL in the
PostgreSQL pass, the SQLite file otherwise) and a real Redis.

The processes poll the configuration only every 30 s here, so a change seen within a
second can only have come through the Redis nudge.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from bench.procs import PYTHON, process_tree, spawn, stop, wait_http_ok
from gateway.config_sync import channel
from gateway.models import ApiKey, Attempt, ConfigVersion, RequestLog
from tests import builders
from tests.conftest import service_available, skip_or_fail
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REDIS_URL = "redis://127.0.0.1:6379/13"
MODEL = "claude-multi"
HELLO = [{"role": "user", "content": "hi"}]
STAFF = ("multi-watcher", "pw-tests-0nly")


class Gateway:
    """One `manage.py serve` process on its own loopback port."""

    def __init__(self, name: str, logs: Path, env: dict[str, str], *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logs / f"{name}.log"
        argv = [PYTHON, "manage.py", "serve", "--port", str(self.port), *extra]
        self.proc = spawn(argv, self.log, env)

    def wait_ready(self) -> Gateway:
        wait_http_ok(f"{self.url}/health", self.proc, self.log, timeout=60)
        return self

    def live(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/live.json").json()

    def ask(self, key: str, *, stream: bool = False) -> int:
        body = {
            "model": MODEL,
            "max_tokens": 5,
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }
        reply = httpx.post(f"{self.url}/v1/messages", json=body, headers={"x-api-key": key})
        return reply.status_code


def database_url() -> str:
    """The database this test run uses, as the serve processes must be told it."""
    db = connection.settings_dict
    if "sqlite" in db["ENGINE"]:
        return f"sqlite:///{db['NAME']}"
    login = quote(db["USER"] or "postgres")
    if db.get("PASSWORD"):
        login += ":" + quote(db["PASSWORD"])
    return f"postgres://{login}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def within(seconds: float, check: Callable[[], bool], seen: Callable[[], Any] = str) -> float:
    """Poll `check` until it holds; the time it took, or a failure after `seconds` that
    shows what `seen()` says."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not true within {seconds}s: {seen()}")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def prefix(settings: Settings) -> Iterator[str]:
    """A Redis namespace of this test's own; the test process announces into it too."""
    if not service_available("127.0.0.1", 6379):
        skip_or_fail("Redis at 127.0.0.1:6379")
    name = f"ap-multi-{uuid.uuid4().hex[:10]}"
    settings.REDIS_URL, settings.REDIS_PREFIX = REDIS_URL, name
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{name}:*"):
        client.delete(key)
    client.close()


@pytest.fixture
def env() -> dict[str, str]:
    return {
        "DATABASE_URL": database_url(),
        "DATA_DIR": str(django_settings.DATA_DIR),  # the same SECRET_KEY: the same key hashes
        "REDIS_URL": "",
        "METRICS_TOKEN": "",
        "LOG_FILE": "",
        "LOG_LEVEL": "WARNING",
        "CONFIG_POLL_SECONDS": "30",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def start(
    transactional_db: None, tmp_path: Path, env: dict[str, str]
) -> Iterator[Callable[..., list[Gateway]]]:
    """Starts serve processes (all at once, then waits for each); stops them all after."""
    running: list[Gateway] = []

    def start_many(count: int, *extra: str, **overrides: str) -> list[Gateway]:
        names = [f"serve-{len(running) + i}" for i in range(count)]
        started = [Gateway(name, tmp_path, {**env, **overrides}, *extra) for name in names]
        running.extend(started)
        return [gateway.wait_ready() for gateway in started]

    yield start_many
    for gateway in running:
        stop(gateway.proc)


@pytest.fixture
def pair(start: Callable[..., list[Gateway]], prefix: str) -> Callable[[], list[Gateway]]:
    """Two gateways sharing the database and this test's Redis namespace."""
    return lambda: start(2, REDIS_URL=REDIS_URL, REDIS_PREFIX=prefix)


def one_route(upstream: FakeUpstream) -> str:
    builders.route(builders.provider("acme", upstream.url), "acme-1", alias=MODEL)
    return builders.client_key()


def test_a_key_created_or_revoked_in_one_process_holds_in_all_within_a_second(
    pair: Callable[[], list[Gateway]], upstream: FakeUpstream
) -> None:
    a, b = pair()

    def answer(key: str) -> set[int]:
        return {
            httpx.get(f"{g.url}/v1/models", headers={"x-api-key": key}).status_code for g in (a, b)
        }

    row, key = ApiKey.issue("multi", ApiKey.Source.ADMIN)  # the dashboard's and CLI's path
    within(1.0, lambda: answer(key) == {200})
    with transaction.atomic():  # as the dashboard's revoke does
        ApiKey.objects.filter(pk=row.pk).update(revoked_at=timezone.now())
        ConfigVersion.bump()
    within(1.0, lambda: answer(key) == {401})


def test_a_circuit_opened_in_one_process_is_open_in_the_other(
    pair: Callable[[], list[Gateway]], upstream: FakeUpstream
) -> None:
    builders.route(builders.provider("flaky", upstream.url), "m-bad", alias=MODEL, weight=2)
    builders.route(builders.provider("steady", upstream.url), "m-good", alias=MODEL)
    key = builders.client_key()
    upstream.script("m-bad", Script(status=503))
    a, b = pair()
    for _ in range(5):  # the default failureThreshold; each request fails over to m-good
        assert a.ask(key) == 200
    within(1.0, lambda: circuit_in(b, "flaky", "m-bad") == "open")  # B's own registry
    tried = sum(1 for r in upstream.requests if r.model == "m-bad")
    for _ in range(3):
        assert b.ask(key) == 200
    assert sum(1 for r in upstream.requests if r.model == "m-bad") == tried  # B skipped it


def test_a_keys_concurrency_holds_for_the_whole_gateway(
    pair: Callable[[], list[Gateway]], upstream: FakeUpstream
) -> None:
    """A key allowed one request at a time gets one from the gateway, not one per process:
    while A streams for it, B refuses it, and frees it again once A's stream is over."""
    builders.route(builders.provider("acme", upstream.url), "acme-1", alias=MODEL)
    key = builders.client_key(max_concurrent=1)
    upstream.script("acme-1", Script(hang_after_events=4, times=1))
    a, b = pair()
    body = {"model": MODEL, "max_tokens": 5, "stream": True, "messages": HELLO}
    with httpx.stream("POST", f"{a.url}/v1/messages", json=body, headers={"x-api-key": key}):
        within(5.0, lambda: b.ask(key) == 429)  # the stream's headers are in: A holds it
        reply = httpx.post(f"{b.url}/v1/messages", json=body, headers={"x-api-key": key})
        assert reply.json()["error"]["type"] == "rate_limit_error"
        assert "1 requests in progress at once" in reply.json()["error"]["message"]
    within(5.0, lambda: b.ask(key) == 200)


def test_a_keys_requests_per_minute_hold_for_the_whole_gateway(
    pair: Callable[[], list[Gateway]], upstream: FakeUpstream
) -> None:
    """Four a minute means four through A and B together: once B has heard from A (its
    live figures count A's requests), B refuses a fifth instead of allowing four more."""
    builders.route(builders.provider("acme", upstream.url), "acme-1", alias=MODEL)
    key = builders.client_key(requests_per_minute=4)
    a, b = pair()
    within(10.0, lambda: b.live()["processes"] == 2, seen=b.live)  # B knows A, before
    for _ in range(4):
        assert a.ask(key) == 200
    within(10.0, lambda: b.live()["totals"]["requests_hour"] == 4, seen=b.live)
    assert b.ask(key) == 429


def circuit_in(gateway: Gateway, provider: str, model: str) -> str | None:
    """The circuit state a process's own /metrics reports (not the pooled live figures)."""
    for family in text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "anthropic_proxy_circuit_state"
                and (labels["provider"], labels["model"]) == (provider, model)
                and sample.value == 1.0
            ):
                return labels["state"]
    return None


def test_live_figures_of_every_process_show_in_each(
    pair: Callable[[], list[Gateway]], upstream: FakeUpstream
) -> None:
    key = one_route(upstream)
    get_user_model().objects.create_user(STAFF[0], password=STAFF[1], is_staff=True)
    a, b = pair()
    for i in range(6):
        assert a.ask(key, stream=i % 2 == 0) == 200

    def b_counts_a() -> bool:
        feed = b.live()
        return feed["processes"] == 2 and feed["totals"]["requests_hour"] == 6

    within(10.0, b_counts_a, seen=b.live)
    feed = b.live()
    assert feed["served_by"]["pid"] == b.proc.pid
    assert [r["requests_per_min"] for r in feed["routes"] if r["model"] == "acme-1"] == [6]
    assert len(feed["recent"]) == 6
    pushed = asyncio.run(first_push(b))
    assert 'data-total="requests_hour">6<' in pushed
    assert 'data-total="processes">2<' in pushed


async def first_push(gateway: Gateway) -> str:
    """Log in to the dashboard and return the overview its websocket sends first."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        login = f"{gateway.url}/dashboard/login/"
        async with session.get(login) as page:
            token = page.cookies["csrftoken"].value
        form = {"username": STAFF[0], "password": STAFF[1], "csrfmiddlewaretoken": token}
        async with session.post(login, data=form, headers={"referer": login}) as done:
            assert done.status == 200 and done.url.path == "/dashboard/"
        ws_url = f"{gateway.url}/dashboard/ws/live/"
        async with session.ws_connect(ws_url, headers={"Origin": gateway.url}) as ws:
            message = await ws.receive(timeout=5)
    return str(message.data)


def test_every_request_is_logged_once_whichever_process_served_it(
    pair: Callable[[], list[Gateway]], upstream: FakeUpstream
) -> None:
    key = one_route(upstream)
    a, b = pair()
    total = 40
    for i in range(total):
        assert (a if i % 2 else b).ask(key, stream=i % 4 == 0) == 200
    within(10.0, lambda: RequestLog.objects.count() >= total)
    time.sleep(1.0)  # a second batch, were anything written twice, would land by now
    assert RequestLog.objects.count() == total
    assert Attempt.objects.count() == total


def test_a_committed_bump_is_announced_and_a_rolled_back_one_is_not(prefix: str) -> None:
    listener = redis.Redis.from_url(REDIS_URL).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(channel(prefix))
    version = ConfigVersion.bump()
    with pytest.raises(RuntimeError), transaction.atomic():
        ConfigVersion.bump()
        raise RuntimeError("the admin action failed")
    heard = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        message = listener.get_message(timeout=0.1)
        if message is not None:
            heard.append(message["data"])
    listener.close()
    assert heard == [str(version).encode()]


def served_by(gateway: Gateway) -> int:
    """The worker that answered a request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        conn.request("GET", "/live.json")
        return json.loads(conn.getresponse().read())["served_by"]["pid"]
    finally:
        conn.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_share_new_connections_evenly_and_stop_on_sigterm(
    start: Callable[..., list[Gateway]],
) -> None:
    (gateway,) = start(1, "--workers", "2")
    workers = set(process_tree(gateway.proc.pid)) - {gateway.proc.pid}
    assert len(workers) == 2
    seen: set[int] = set()

    def both_answer() -> bool:  # the second may still be starting after /health answers
        seen.add(served_by(gateway))
        return seen == workers

    within(30.0, both_answer)
    spread = Counter(served_by(gateway) for _ in range(200))
    assert set(spread) == workers
    assert all(50 <= count <= 150 for count in spread.values()), spread
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(timeout=60) == 0
    assert not any(alive(pid) for pid in workers)
    assert "REDIS_URL is not set, so each worker keeps its own circuits" in gateway.log.read_text()


def test_workers_write_every_log_row_to_the_shared_database(
    start: Callable[..., list[Gateway]], upstream: FakeUpstream
) -> None:
    key = one_route(upstream)
    (gateway,) = start(1, "--workers", "2")
    total = 30
    for i in range(total):
        assert gateway.ask(key, stream=i % 3 == 0) == 200
    within(10.0, lambda: RequestLog.objects.count() >= total)
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(timeout=60) == 0
    assert RequestLog.objects.count() == total
