"""Retries, circuit breaking, hedging and session affinity over real loopback."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.models import Attempt, RequestLog, RoutingSettings
from tests import builders
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import LiveProxy

HELLO = [{"role": "user", "content": "hi"}]


def configure(proxy: LiveProxy, upstream: FakeUpstream, *, routing=None, retry=None) -> str:
    RoutingSettings.objects.update_or_create(
        pk=1, defaults={"routing": routing or {}, "retry": retry or {}}
    )
    first = builders.provider("first", upstream.url)
    second = builders.provider("second", f"{upstream.url}/second")
    builders.route(first, "model-a", alias="claude-*", weight=5)
    builders.route(second, "model-b", alias="claude-*", weight=1)
    key = builders.client_key()
    proxy.reload()
    return key


def ask(proxy: LiveProxy, key: str, *, stream: bool = True, session: str | None = None):
    headers = {"x-api-key": key}
    if session:
        headers["x-claude-code-session-id"] = session
    body = {"model": "claude-x", "max_tokens": 5, "messages": HELLO, "stream": stream}
    return httpx.post(f"{proxy.url}/v1/messages", json=body, headers=headers, timeout=15)


def last_row(proxy: LiveProxy) -> RequestLog:
    proxy.flush_logs()
    return RequestLog.objects.order_by("-created_at", "-id").first()


def outcomes(row: RequestLog) -> list[tuple[str, str]]:
    return [(a.model, a.outcome) for a in Attempt.objects.filter(request=row).order_by("seq")]


def models_asked(upstream: FakeUpstream) -> list[str]:
    return [r.model for r in upstream.requests]


RETRY = {"retrySameProvider": True, "maxRetries": 2, "initialDelay": 0.01, "maxDelay": 1.0}


def test_same_provider_retries_then_succeeds(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    key = configure(proxy, upstream, retry=RETRY)
    upstream.script("model-a", Script(status=529, times=2))
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream) == ["model-a"] * 3
    assert outcomes(last_row(proxy)) == [
        ("model-a", "retried"),
        ("model-a", "retried"),
        ("model-a", "won"),
    ]


def test_retries_run_out_then_fail_over(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    key = configure(proxy, upstream, retry=RETRY)
    upstream.script("model-a", Script(status=503))
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream) == ["model-a"] * 3 + ["model-b"]


def test_without_retry_same_provider_it_fails_over_at_once(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    key = configure(proxy, upstream)
    upstream.script("model-a", Script(status=529))
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream) == ["model-a", "model-b"]


def test_auth_errors_are_not_retried(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    key = configure(proxy, upstream, retry=RETRY)
    upstream.script("model-a", Script(status=401))
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream) == ["model-a", "model-b"]


def test_retry_after_within_max_delay_is_waited_for(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    key = configure(proxy, upstream, retry=RETRY)
    upstream.script("model-a", Script(status=429, headers={"retry-after": "0.4"}, times=1))
    assert ask(proxy, key).status_code == 200
    first, second = upstream.requests
    assert (first.model, second.model) == ("model-a", "model-a")
    assert second.at - first.at >= 0.4


def test_retry_after_beyond_max_delay_opens_the_circuit_instead(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    key = configure(proxy, upstream, retry=RETRY)
    upstream.script("model-a", Script(status=429, headers={"retry-after": "120"}))
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream) == ["model-a", "model-b"]
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream)[2:] == ["model-b"], "model-a rests for its Retry-After"
    skipped = last_row(proxy).skipped
    assert skipped[0]["model"] == "model-a" and "circuit open" in skipped[0]["reason"]


def test_circuit_opens_half_opens_and_closes(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    circuit = {"failureThreshold": 2, "cooldown": 0.5, "minRequests": 100}
    key = configure(proxy, upstream, routing={"circuit": circuit})
    upstream.script("model-a", Script(status=500, times=3))
    for _ in range(2):
        assert ask(proxy, key).status_code == 200
    assert models_asked(upstream) == ["model-a", "model-b"] * 2

    assert ask(proxy, key).status_code == 200  # open: model-a is not even asked
    assert models_asked(upstream)[4:] == ["model-b"]

    time.sleep(0.6)  # cooldown over: one probe, which fails, re-opens the circuit
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream)[5:] == ["model-a", "model-b"]
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream)[7:] == ["model-b"]

    time.sleep(0.6)  # the next probe succeeds (the faults are used up): closed again
    assert ask(proxy, key).status_code == 200
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream)[8:] == ["model-a", "model-a"]


def test_hedge_wins_and_the_slow_attempt_is_cancelled(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    key = configure(proxy, upstream, routing={"hedgeAfter": 0.2, "firstTokenTimeout": 10})
    upstream.script("model-a", Script(first_event_delay=5.0))
    started = time.monotonic()
    response = ask(proxy, key)
    assert response.status_code == 200
    assert time.monotonic() - started < 5.0, "the hedge answered, not the slow first route"
    assert upstream.wait_closed("model-a", timeout=1.0), "the loser's connection is closed"
    row = last_row(proxy)
    assert row.provider == "second"
    assert sorted(outcomes(row)) == [("model-a", "hedge_lost"), ("model-b", "won")]


def test_without_hedging_a_slow_first_route_is_waited_for(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    key = configure(proxy, upstream, routing={"firstTokenTimeout": 10})
    upstream.script("model-a", Script(first_event_delay=0.5))
    assert ask(proxy, key).status_code == 200
    assert models_asked(upstream) == ["model-a"]


def test_session_affinity_keeps_the_route_while_healthy(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    key = configure(proxy, upstream, routing={"circuit": {"failureThreshold": 1, "cooldown": 60}})
    upstream.script("model-a", Script(status=500, times=1))
    assert ask(proxy, key, session="s1").status_code == 200
    assert models_asked(upstream) == ["model-a", "model-b"]  # s1 is now served by model-b
    proxy.call(_close_circuit(proxy, ("first", "model-a")))  # model-a has recovered

    assert ask(proxy, key, session="s1").status_code == 200
    assert models_asked(upstream)[2:] == ["model-b"], "the session stays where its cache is"
    assert ask(proxy, key, session="s2").status_code == 200
    assert models_asked(upstream)[3:] == ["model-a"], "a new session takes the weight order"


def test_session_affinity_is_dropped_when_the_route_is_unhealthy(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    circuit = {"failureThreshold": 1, "cooldown": 60}
    key = configure(proxy, upstream, routing={"circuit": circuit})
    upstream.script("model-a", Script(status=500, times=1))
    assert ask(proxy, key, session="s1").status_code == 200  # served by model-b
    proxy.call(_close_circuit(proxy, ("first", "model-a")))
    upstream.script("model-b", Script(status=500, times=1))
    assert ask(proxy, key, session="s1").status_code == 200
    # model-b failed (its circuit opened), so the session moved to model-a
    assert models_asked(upstream)[2:] == ["model-b", "model-a"]
    assert ask(proxy, key, session="s1").status_code == 200
    assert models_asked(upstream)[4:] == ["model-a"]


async def _close_circuit(proxy: LiveProxy, key: tuple[str, str]) -> None:
    proxy.runtime.health.close(key, "test: provider recovered")


@pytest.mark.parametrize("fault", [Script(status=529), Script(reset_before_reply=True)])
def test_a_failing_route_is_skipped_once_its_circuit_opens(
    proxy: LiveProxy, upstream: FakeUpstream, fault: Script
) -> None:
    key = configure(proxy, upstream, routing={"circuit": {"failureThreshold": 3, "cooldown": 60}})
    upstream.script("model-a", fault)
    for _ in range(5):
        assert ask(proxy, key).status_code == 200
    assert models_asked(upstream).count("model-a") == 3


def test_two_proxies_share_an_open_circuit_through_redis(
    proxy: LiveProxy, upstream: FakeUpstream, settings
) -> None:
    """Two runtimes with their own registries and event loops, like two workers: the one
    that saw the failures opens the circuit, and the other skips the route at once."""
    from tests.conftest import service_available, skip_or_fail

    if not service_available("127.0.0.1", 6379):
        skip_or_fail("Redis at 127.0.0.1:6379")
    import redis

    redis.Redis.from_url("redis://127.0.0.1:6379/15").flushdb()
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"
    key = configure(proxy, upstream, routing={"circuit": {"failureThreshold": 2, "cooldown": 60}})
    first, second = LiveProxy().start(), LiveProxy().start()
    try:
        upstream.script("model-a", Script(status=529))
        for _ in range(2):
            assert ask(first, key).status_code == 200
        assert models_asked(upstream) == ["model-a", "model-b"] * 2
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            view = second.call(_view(second, ("first", "model-a")))
            if view.state.value == "open":
                break
            time.sleep(0.05)
        assert ask(second, key).status_code == 200
        assert models_asked(upstream)[4:] == ["model-b"], "the second worker never asked model-a"
    finally:
        first.stop()
        second.stop()
        redis.Redis.from_url("redis://127.0.0.1:6379/15").flushdb()


async def _view(proxy: LiveProxy, key: tuple[str, str]):
    return proxy.runtime.health.view(key)


def test_health_is_measured_from_real_traffic(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    key = configure(proxy, upstream)
    upstream.script("model-a", Script(event_delay=0.01))
    assert ask(proxy, key).status_code == 200
    assert ask(proxy, key, stream=False).status_code == 200
    view = proxy.call(_view(proxy, ("first", "model-a")))
    assert view.tps is not None and view.tps > 0
    assert view.ttft_ms is not None and view.ttft_ms > 0
    assert (view.in_flight, view.outcomes, view.error_rate) == (0, 2, 0.0)
