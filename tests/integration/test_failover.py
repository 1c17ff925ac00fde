"""Failover before the first byte, and what the client sees when it cannot help."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from gateway.models import Attempt, RequestLog, RoutingSettings
from tests import builders
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import LiveProxy, both_relay_modes, free_port

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def key(proxy: LiveProxy, upstream: FakeUpstream) -> str:
    """Two providers on the same fake: "first" (weight 5) is tried before "second"."""
    RoutingSettings.objects.create(
        pk=1, routing={"firstTokenTimeout": 0.5, "nonStreamTimeout": 0.5}
    )
    first = builders.provider("first", upstream.url)
    second = builders.provider("second", f"{upstream.url}/second/v1")
    builders.route(first, "model-a", alias="claude-*", weight=5)
    builders.route(second, "model-b", alias="claude-*", weight=1)
    secret = builders.client_key()
    proxy.reload()
    return secret


def ask(proxy: LiveProxy, key: str, *, stream: bool = False) -> httpx.Response:
    body = {"model": "claude-x", "max_tokens": 5, "messages": HELLO, "stream": stream}
    return httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=10)


def last_log(proxy: LiveProxy) -> RequestLog:
    proxy.flush_logs()
    return RequestLog.objects.order_by("-id").first()


FAULTS = {
    "408": Script(status=408),
    "409": Script(status=409),
    "429": Script(status=429, headers={"retry-after": "1"}),
    "500": Script(status=500),
    "502": Script(status=502),
    "503": Script(status=503),
    "529": Script(status=529),
    "401": Script(status=401),
    "403": Script(status=403),
    "404": Script(status=404),
    "reset before reply": Script(reset_before_reply=True),
    "hang": Script(hang=True),
    "slow first event": Script(first_event_delay=2.0),
    "reset after message_start": Script(reset_after_events=1),
    "reset after content_block_start": Script(reset_after_events=2),
}
STREAM_ONLY = {"reset after message_start", "reset after content_block_start"}
CASES = [(fault, True) for fault in FAULTS] + [
    (fault, False) for fault in FAULTS if fault not in STREAM_ONLY
]


@pytest.mark.parametrize(
    ("fault", "stream"), CASES, ids=[f"{f}-{'stream' if s else 'json'}" for f, s in CASES]
)
def test_fails_over_to_the_next_provider(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, fault: str, stream: bool
) -> None:
    upstream.script("model-a", FAULTS[fault])
    response = ask(proxy, key, stream=stream)

    assert response.status_code == 200
    assert [r.model for r in upstream.requests] == ["model-a", "model-b"]
    row = last_log(proxy)
    assert (row.provider, row.upstream_model, row.outcome) == ("second", "model-b", "ok")
    attempts = list(Attempt.objects.filter(request=row).order_by("seq"))
    assert [a.outcome for a in attempts] == ["failed", "won"]
    assert attempts[0].error_kind


def test_connection_refused_fails_over(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    dead = builders.provider("dead", f"http://127.0.0.1:{free_port()}")
    live = builders.provider("live", upstream.url)
    builders.route(dead, "model-dead", alias="claude-*", weight=9)
    builders.route(live, "model-live", alias="claude-*", weight=1)
    key = builders.client_key()
    proxy.reload()
    assert ask(proxy, key).status_code == 200
    attempts = list(last_log(proxy).attempts.order_by("seq"))
    assert [(a.provider, a.error_kind) for a in attempts] == [("dead", "connect"), ("live", "")]


def test_bad_request_goes_back_as_is_without_failover(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad tool"}}
    upstream.script("model-a", Script(status=400, error_body=error))
    response = ask(proxy, key)
    assert response.status_code == 400
    assert response.json() == error
    assert [r.model for r in upstream.requests] == ["model-a"]


def test_context_overflow_400_moves_on(proxy: LiveProxy, upstream: FakeUpstream, key: str) -> None:
    message = "prompt is too long: 250000 tokens > 200000 maximum"
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    upstream.script("model-a", Script(status=400, error_body=error))
    assert ask(proxy, key).status_code == 200
    assert [r.model for r in upstream.requests] == ["model-a", "model-b"]


@pytest.mark.parametrize(
    ("statuses", "expected"), [((429, 429), 429), ((529, 503), 529), ((500, 429), 502)]
)
def test_all_failed_is_one_anthropic_error_listing_each_attempt(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, statuses: tuple[int, int], expected: int
) -> None:
    upstream.script("model-a", Script(status=statuses[0]))
    upstream.script("model-b", Script(status=statuses[1]))
    client = anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-x", max_tokens=5, messages=HELLO)

    assert caught.value.status_code == expected
    body = caught.value.body
    assert body["type"] == "error"
    message = body["error"]["message"]
    assert "first/model-a" in message and "second/model-b" in message
    assert f"HTTP {statuses[0]}" in message and f"HTTP {statuses[1]}" in message
    assert builders.UPSTREAM_SECRET not in message and key not in message
    row = last_log(proxy)
    assert (row.status, row.outcome, row.attempt_count) == (expected, "error", 2)


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events = []
    for block in response.text.replace("\r\n", "\n").split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.mark.parametrize(
    "fault", [Script(reset_after_events=4), Script(hang_after_events=4)], ids=["reset", "hang"]
)
@both_relay_modes
def test_fault_after_first_byte_ends_the_stream_with_an_error_event(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, fault: Script
) -> None:
    RoutingSettings.objects.filter(pk=1).update(
        routing={"idleTimeout": 0.5, "firstTokenTimeout": 0.5}
    )
    proxy.reload()
    upstream.script("model-a", fault)
    response = ask(proxy, key, stream=True)

    assert response.status_code == 200
    events = sse_events(response)
    assert [name for name, _ in events][:4] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
    ]
    name, payload = events[-1]
    assert name == "error"
    assert payload["error"]["type"] in {"api_error", "overloaded_error"}
    assert [r.model for r in upstream.requests] == ["model-a"], "no failover after commit"
    row = last_log(proxy)
    assert row.outcome == "error" and "after the first byte" in row.error_message


@both_relay_modes
def test_a_stream_that_stalls_after_its_first_byte_ends_at_the_idle_deadline(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    """The idle deadline, not the much longer first-token one, ends it: the client's 10 s
    timeout would fail the request long before the 60 s one."""
    RoutingSettings.objects.filter(pk=1).update(
        routing={"idleTimeout": 0.5, "firstTokenTimeout": 60}
    )
    proxy.reload()
    upstream.script("model-a", Script(hang_after_events=4))
    response = ask(proxy, key, stream=True)

    assert response.status_code == 200
    name, payload = sse_events(response)[-1]
    assert name == "error" and payload["error"]["type"] == "api_error"
    row = last_log(proxy)
    assert (row.outcome, row.error_type) == ("error", "idle_timeout")
    assert "no data from the provider for 0.5s" in row.error_message


@both_relay_modes
def test_sdk_raises_on_a_mid_stream_error(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    upstream.script("model-a", Script(reset_after_events=4))
    client = anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)
    stream = client.messages.stream(model="claude-x", max_tokens=5, messages=HELLO)
    with pytest.raises(anthropic.APIStatusError), stream as events:
        events.get_final_message()
