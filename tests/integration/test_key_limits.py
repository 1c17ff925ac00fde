"""Per-key limits and the gateway's total cap, through the live proxy: each refusal is an
Anthropic error with retry-after, and nothing on the request path asks the database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.logbook import Entry, write_batch
from gateway.models import ApiKey, ConfigVersion
from tests import builders
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import LiveProxy

HELLO = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def routed(proxy: LiveProxy, upstream: FakeUpstream) -> Iterator[LiveProxy]:
    builders.route(builders.provider("p", upstream.url), "upstream-a", alias="claude-*")
    yield proxy


def limited_key(proxy: LiveProxy, name: str, **limits: Any) -> str:
    secret = builders.client_key(name)
    ApiKey.objects.filter(name=name).update(**limits)
    ConfigVersion.bump()
    proxy.reload()
    return secret


def post(proxy: LiveProxy, key: str, body: dict[str, Any] = HELLO) -> httpx.Response:
    return httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=30)


def assert_refused(response: httpx.Response, status: int, error_type: str, words: str) -> None:
    assert response.status_code == status, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["type"] == error_type and words in error["message"]


def in_background(call: Any) -> tuple[threading.Thread, list[httpx.Response]]:
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(call()))
    thread.start()
    return thread, out


def wait_in_flight(proxy: LiveProxy, count: int) -> None:
    for _ in range(300):
        if proxy.runtime.limiter.in_flight >= count:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the request never got under way")


def test_a_key_limited_to_one_request_at_a_time(routed: LiveProxy, upstream: FakeUpstream) -> None:
    key = limited_key(routed, "one-at-a-time", max_concurrent=1)
    other = limited_key(routed, "unlimited")
    upstream.script("upstream-a", Script(first_event_delay=1.0, times=1))
    thread, first = in_background(lambda: post(routed, key))
    wait_in_flight(routed, 1)
    assert_refused(post(routed, key), 429, "rate_limit_error", "1 requests in progress")
    assert post(routed, other).status_code == 200  # other keys are not held back
    thread.join()
    assert first[0].status_code == 200
    assert post(routed, key).status_code == 200  # its place was given back


def test_requests_per_minute(routed: LiveProxy) -> None:
    key = limited_key(routed, "two-a-minute", requests_per_minute=2)
    assert [post(routed, key).status_code for _ in range(2)] == [200, 200]
    refused = post(routed, key)
    assert_refused(refused, 429, "rate_limit_error", "2 requests per minute")
    assert int(refused.headers["retry-after"]) <= 30


def test_the_day_budget_counts_what_the_key_spent(routed: LiveProxy) -> None:
    usage = post(routed, limited_key(routed, "probe")).json()["usage"]
    cost = usage["input_tokens"] + usage["output_tokens"]
    key = limited_key(routed, "small-budget", tokens_per_day=cost + 1)
    assert post(routed, key).status_code == 200  # 0 spent before it
    assert post(routed, key).status_code == 200  # cost spent: still under the budget
    refused = post(routed, key)  # 2 x cost spent
    assert_refused(refused, 429, "rate_limit_error", "token budget for today is spent")
    assert f"{2 * cost} of {cost + 1} tokens" in refused.json()["error"]["message"]


def test_budgets_see_what_other_processes_spent(routed: LiveProxy) -> None:
    """Another process's rows in the request log count after the next refresh."""
    key = limited_key(routed, "shared-budget", tokens_per_month=1000)
    assert post(routed, key).status_code == 200
    row = ApiKey.objects.get(name="shared-budget")
    elsewhere = Entry(created_at=datetime.now(UTC), path="/v1/messages", api_key_id=row.pk)
    elsewhere.input_tokens, elsewhere.output_tokens = 900, 200
    write_batch([elsewhere])
    from gateway.budgets import refresh

    runtime = routed.runtime
    routed.call(refresh(runtime.limiter, runtime.snapshot, runtime.db))
    assert_refused(post(routed, key), 429, "rate_limit_error", "budget for this month")


def test_the_total_cap_answers_529(routed: LiveProxy, upstream: FakeUpstream) -> None:
    key = limited_key(routed, "anyone")
    routed.runtime.limiter.total = 1
    upstream.script("upstream-a", Script(first_event_delay=1.0, times=1))
    thread, first = in_background(lambda: post(routed, key))
    wait_in_flight(routed, 1)
    assert_refused(post(routed, key), 529, "overloaded_error", "at its limit of 1 requests")
    thread.join()
    assert first[0].status_code == 200
    assert post(routed, key).status_code == 200  # the place was given back
