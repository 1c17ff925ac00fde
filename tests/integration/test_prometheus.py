"""GET /metrics: Prometheus format that parses, and counts what happened."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests import builders
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import LiveProxy


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_parse_and_count_a_failover(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    builders.route(builders.provider("first", upstream.url), "model-a", alias="c*", weight=5)
    builders.route(builders.provider("second", f"{upstream.url}/2"), "model-b", alias="c*")
    key = builders.client_key()
    proxy.reload()
    upstream.script("model-a", Script(status=529))
    body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert (
        httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key}).status_code
        == 200
    )

    response = httpx.get(f"{proxy.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    b = {"provider": "second", "model": "model-b"}
    assert got[("anthropic_proxy_failovers_total", labels(**b))] == 1
    assert (
        got[
            (
                "anthropic_proxy_attempts_total",
                labels(provider="first", model="model-a", outcome="failed"),
            )
        ]
        == 1
    )
    assert got[("anthropic_proxy_requests_total", labels(**b, outcome="ok", status="200"))] == 1
    assert got[("anthropic_proxy_ttft_seconds_count", labels(**b))] == 1
    assert got[("anthropic_proxy_tokens_total", labels(**b, kind="output"))] > 0
    assert (
        got[
            (
                "anthropic_proxy_circuit_state",
                labels(provider="first", model="model-a", state="closed"),
            )
        ]
        == 1
    )


def test_errors_are_counted_by_type(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    builders.route(builders.provider("only", upstream.url), "model-a", alias="c*")
    key = builders.client_key()
    proxy.reload()
    upstream.script("model-a", Script(status=529))
    body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert (
        httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key}).status_code
        == 529
    )
    got = samples(httpx.get(f"{proxy.url}/metrics").text)
    assert (
        got[
            (
                "anthropic_proxy_errors_total",
                labels(provider="-", model="-", error_type="overloaded_error"),
            )
        ]
        == 1
    )


def labels(**values: str) -> tuple:
    return tuple(sorted(values.items()))


def test_metrics_token_is_required_when_set(proxy: LiveProxy, settings) -> None:
    settings.METRICS_TOKEN = "metrics-secret"
    assert httpx.get(f"{proxy.url}/metrics").status_code == 401
    ok = httpx.get(f"{proxy.url}/metrics", headers={"authorization": "Bearer metrics-secret"})
    assert ok.status_code == 200


def test_the_request_log_writer_is_visible(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    """Written, dropped and waiting entries, and whether the writer is failing."""
    builders.route(builders.provider("p", upstream.url), "model-a", alias="c*")
    key = builders.client_key()
    proxy.reload()
    body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key})
    proxy.flush_logs()
    logbook = proxy.runtime.logbook
    logbook.dropped, logbook.failing_since = 2, logbook._clock() - 12.0  # as after an outage
    got = samples(httpx.get(f"{proxy.url}/metrics").text)
    assert got[("anthropic_proxy_log_rows_total", labels(fate="written"))] == 3
    assert got[("anthropic_proxy_log_rows_total", labels(fate="dropped"))] == 2
    assert got[("anthropic_proxy_log_rows_waiting", ())] == 0
    assert got[("anthropic_proxy_log_failing_seconds", ())] >= 12.0
    live = httpx.get(f"{proxy.url}/live.json").json()
    assert live["totals"]["log_dropped"] == 2 and live["totals"]["log_failing_for"] >= 12.0
