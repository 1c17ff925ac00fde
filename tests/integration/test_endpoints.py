"""Every bad input gets an Anthropic-shaped error, and the server keeps serving."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
import pytest

from gateway.models import RequestLog
from tests import builders
from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HELLO = [{"role": "user", "content": "hi"}]
GOOD = {"model": "claude-x", "max_tokens": 5, "messages": HELLO}


@pytest.fixture
def key(proxy: LiveProxy, upstream: FakeUpstream) -> str:
    prov = builders.provider("p", upstream.url)
    builders.route(prov, "upstream-a", alias="claude-*")
    builders.route(prov, "exact-name", alias="my-model")
    secret = builders.client_key()
    proxy.reload()
    return secret


def post(proxy: LiveProxy, key: str, content: bytes, path: str = "/v1/messages") -> httpx.Response:
    headers = {"x-api-key": key, "content-type": "application/json"}
    return httpx.post(f"{proxy.url}{path}", content=content, headers=headers)


def assert_anthropic_error(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    return body["error"]["message"]


BAD_BODIES = {
    "invalid json": (b'{"model": ', "not valid JSON"),
    "not an object": (b"[1, 2]", "JSON object"),
    "empty": (b"", "empty"),
    "invalid utf-8": (b'{"model": "\xff"}', "UTF-8"),
    "missing model": (json.dumps({"max_tokens": 5, "messages": HELLO}).encode(), "model"),
    "missing messages": (json.dumps({"model": "claude-x", "max_tokens": 5}).encode(), "messages"),
    "missing max_tokens": (
        json.dumps({"model": "claude-x", "messages": HELLO}).encode(),
        "max_tokens",
    ),
    "max_tokens not a number": (json.dumps({**GOOD, "max_tokens": "5"}).encode(), "max_tokens"),
    "messages not a list": (json.dumps({**GOOD, "messages": "hi"}).encode(), "messages"),
    "stream not a bool": (json.dumps({**GOOD, "stream": "yes"}).encode(), "stream"),
    "deeply nested": (b'{"model": "x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_body_is_a_400_and_the_server_keeps_serving(
    proxy: LiveProxy, key: str, case: str
) -> None:
    content, hint = BAD_BODIES[case]
    message = assert_anthropic_error(post(proxy, key, content), 400, "invalid_request_error")
    assert hint in message
    assert post(proxy, key, json.dumps(GOOD).encode()).status_code == 200


def test_unknown_model_is_404_not_found(proxy: LiveProxy, key: str) -> None:
    response = post(proxy, key, json.dumps({**GOOD, "model": "gpt-nothing"}).encode())
    assert "gpt-nothing" in assert_anthropic_error(response, 404, "not_found_error")


def test_exact_alias_and_upstream_name_both_route(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    for requested in ("my-model", "exact-name"):
        assert post(proxy, key, json.dumps({**GOOD, "model": requested}).encode()).is_success
    assert [r.model for r in upstream.requests] == ["exact-name", "exact-name"]


def test_body_over_the_limit_is_413(proxy: LiveProxy, key: str, settings) -> None:
    settings.MAX_BODY_BYTES = 1000
    big = json.dumps({**GOOD, "messages": [{"role": "user", "content": "x" * 2000}]}).encode()
    assert_anthropic_error(post(proxy, key, big), 413, "request_too_large")
    assert post(proxy, key, json.dumps(GOOD).encode()).status_code == 200


def test_chunked_body_over_the_limit_is_413(proxy: LiveProxy, key: str, settings) -> None:
    settings.MAX_BODY_BYTES = 1000

    def chunks():
        yield b'{"model": "claude-x", "pad": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    response = httpx.post(f"{proxy.url}/v1/messages", content=chunks(), headers={"x-api-key": key})
    assert_anthropic_error(response, 413, "request_too_large")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/messages", 405),
        ("PUT", "/v1/messages", 405),
        ("DELETE", "/v1/models", 405),
        ("POST", "/v1/nothing-here", 404),
    ],
)
def test_wrong_method_or_path_is_an_anthropic_error(
    proxy: LiveProxy, key: str, method: str, path: str, status: int
) -> None:
    response = httpx.request(method, f"{proxy.url}{path}", headers={"x-api-key": key})
    expected = "not_found_error" if status == 404 else "invalid_request_error"
    assert_anthropic_error(response, status, expected)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "sk-wrong"},
        {"authorization": "Bearer sk-wrong"},
        {"authorization": "Basic abc"},
    ],
    ids=["missing", "wrong x-api-key", "wrong bearer", "not bearer"],
)
def test_missing_or_wrong_key_is_401(proxy: LiveProxy, key: str, headers: dict) -> None:
    response = httpx.post(f"{proxy.url}/v1/messages", json=GOOD, headers=headers)
    message = assert_anthropic_error(response, 401, "authentication_error")
    assert "sk-wrong" not in message


def test_unauthenticated_requests_never_reach_a_provider(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    httpx.post(f"{proxy.url}/v1/messages", json=GOOD, headers={"x-api-key": "nope"})
    assert upstream.requests == []


def test_models_list_in_anthropic_format_honours_limit(proxy: LiveProxy, key: str) -> None:
    client = anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert ids == ["upstream-a", "my-model", "exact-name"]

    page = httpx.get(f"{proxy.url}/v1/models?limit=2", headers={"x-api-key": key}).json()
    assert [m["id"] for m in page["data"]] == ["upstream-a", "my-model"]
    assert page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == ("upstream-a", "my-model")
    assert page["data"][0]["type"] == "model" and page["data"][0]["created_at"]
    rest = httpx.get(f"{proxy.url}/v1/models?after_id=my-model", headers={"x-api-key": key})
    assert [m["id"] for m in rest.json()["data"]] == ["exact-name"]


def test_models_needs_a_key(proxy: LiveProxy, key: str) -> None:
    assert httpx.get(f"{proxy.url}/v1/models").status_code == 401


def test_count_tokens_is_answered_by_an_anthropic_provider(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    raw = (FIXTURES / "claude-code" / "count-tokens-request.json").read_bytes()
    response = post(proxy, key, raw, "/v1/messages/count_tokens?beta=true")
    assert response.status_code == 200
    received = upstream.requests[-1]
    assert received.path.endswith("/v1/messages/count_tokens")
    assert response.json() == {"input_tokens": len(received.body) // 4}


def test_count_tokens_estimates_when_no_provider_can_count(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    upstream.stop()
    client = anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)
    counted = client.messages.count_tokens(
        model="claude-x", messages=[{"role": "user", "content": "word " * 400}]
    )
    assert 300 <= counted.input_tokens <= 1000


def test_health_and_root_answer_without_a_key(proxy: LiveProxy) -> None:
    health = httpx.get(f"{proxy.url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert httpx.get(f"{proxy.url}/").status_code == 200
    head = httpx.head(f"{proxy.url}/")
    assert head.status_code == 200 and head.content == b""


@pytest.mark.postgres
def test_every_request_is_logged_with_tokens_and_timings(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    client = anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)
    with client.messages.stream(model="claude-x", max_tokens=5, messages=HELLO) as stream:
        stream.get_final_message()
    httpx.post(f"{proxy.url}/v1/messages", json=GOOD, headers={"x-api-key": "bad"})
    proxy.flush_logs()

    ok, denied = RequestLog.objects.order_by("id")
    assert (ok.status, ok.outcome, ok.stream, ok.provider) == (200, "ok", True, "p")
    assert (ok.input_tokens, ok.output_tokens) == (10, 4)  # anthropic-stream-text.sse usage
    assert ok.ttft_ms > 0 and ok.duration_ms >= ok.ttft_ms and ok.tps > 0
    assert ok.api_key_name == "test-client" and ok.attempt_count == 1
    assert (denied.status, denied.error_type, denied.api_key_id) == (
        401,
        "authentication_error",
        None,
    )
