"""The Anthropic-dialect path: what the client gets back and what the provider receives."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import pytest

from gateway.models import RoutingSettings
from tests import builders
from tests.fakes.upstream import FakeUpstream, Script, Synthetic
from tests.live import LiveProxy, both_relay_modes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
UPSTREAM_MODEL = "upstream-model-x"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def key(proxy: LiveProxy, upstream: FakeUpstream) -> str:
    prov = builders.provider("primary", upstream.url)
    builders.route(prov, UPSTREAM_MODEL, alias="claude-*")
    secret = builders.client_key()
    proxy.reload()
    return secret


def sdk(proxy: LiveProxy, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)


STREAM_FIXTURES = [
    "anthropic-stream-text.sse",
    "anthropic-stream-text-parallel-tool-use.sse",
    "anthropic-stream-thinking.sse",
    "anthropic-stream-thinking-then-tool-use.sse",
    "anthropic-stream-redacted-thinking.sse",
    "anthropic-stream-web-search-server-tool.sse",
    "anthropic-stream-tool-use-empty-input.sse",
    "anthropic-stream-cache-read-usage.sse",
    "anthropic-stream-stop-sequence.sse",
    "anthropic-stream-text-before-thinking-adaptive.sse",
]


@pytest.mark.parametrize("fixture", STREAM_FIXTURES)
@both_relay_modes
def test_streamed_reply_assembles_to_the_same_message_as_direct(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, fixture: str
) -> None:
    upstream.script(None, Script(stream_fixture=f"anthropic/{fixture}"))
    direct = anthropic.Anthropic(base_url=upstream.url, api_key="x", max_retries=0)
    with direct.messages.stream(model="m", max_tokens=50, messages=HELLO) as stream:
        expected = stream.get_final_message()

    with sdk(proxy, key).messages.stream(model="claude-x", max_tokens=50, messages=HELLO) as stream:
        received = stream.get_final_message()

    assert received.model_dump() == expected.model_dump()
    assert received.content, "the fixture's content blocks made it through"


@both_relay_modes
def test_stream_bytes_are_relayed_unchanged(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    fixture = FIXTURES / "anthropic" / "anthropic-stream-thinking.sse"
    upstream.script(None, Script(stream_fixture="anthropic/anthropic-stream-thinking.sse"))
    body = {"model": "claude-x", "max_tokens": 10, "messages": HELLO, "stream": True}
    response = httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content.replace(b"\r\n", b"\n").strip() == fixture.read_bytes().strip()


def _settled(read: Callable[[], int], quiet: float = 0.5, timeout: float = 20.0) -> int:
    """`read()` once it has stopped changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = read()
        if now == last:
            return now
        last = now
    raise AssertionError(f"still changing after {timeout} s")


@both_relay_modes
def test_a_client_that_stops_reading_holds_the_provider_back_and_loses_nothing(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    """48 MB of stream for a client that reads nothing for a while: the proxy stops
    reading the provider instead of buffering the stream (the provider's writes block
    well before the end), the 0.5 s idle deadline does not take that wait for a silent
    provider, and once the client reads, every event arrives."""
    RoutingSettings.objects.update_or_create(pk=1, defaults={"routing": {"idleTimeout": 0.5}})
    proxy.reload()
    tokens, text = 768, "x" * 65536
    upstream.script(None, Script(synthetic=Synthetic(tokens=tokens, text=text)))
    body = {"model": "claude-x", "max_tokens": 5, "messages": HELLO, "stream": True}
    url, headers = f"{proxy.url}/v1/messages", {"x-api-key": key}
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        assert upstream.wait_for(lambda: len(upstream.connections) == 1)
        connection = upstream.connections[0]
        held_at = _settled(lambda: connection.bytes_sent)  # the provider is blocked
        time.sleep(1.0)  # twice the idle deadline, with nothing read
        stream = b"".join(r.iter_bytes())

    total = connection.bytes_sent
    assert held_at < total * 0.75, f"{held_at} of {total} bytes were taken before a read"
    assert b"event: error" not in stream
    assert stream.count(b'"text_delta"') == tokens
    assert stream.count(text.encode()) == tokens
    assert stream.rstrip().endswith(b'data: {"type":"message_stop"}')
    # the paused and resumed connection went back to the pool fit for the next request
    upstream.script(None, Script(stream_fixture="anthropic/anthropic-stream-text.sse"))
    again = httpx.post(url, json=body, headers=headers, timeout=10)
    assert again.status_code == 200 and b"message_stop" in again.content
    assert len(upstream.connections) == 1


@pytest.mark.parametrize(
    "fixture",
    [
        "anthropic-message-text-tool-use.json",
        "anthropic-message-thinking.json",
        "anthropic-message-redacted-thinking.json",
        "anthropic-message-max-tokens.json",
        "anthropic-message-tool-use-cache-read.json",
    ],
)
def test_non_streamed_reply_is_the_providers_message(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, fixture: str
) -> None:
    upstream.script(None, Script(message_fixture=f"anthropic/{fixture}"))
    message = sdk(proxy, key).messages.create(model="claude-x", max_tokens=50, messages=HELLO)
    expected = json.loads((FIXTURES / "anthropic" / fixture).read_text())
    assert message.model_dump(exclude_none=True) == anthropic.types.Message.model_validate(
        expected
    ).model_dump(exclude_none=True)


def test_bearer_token_authenticates_like_x_api_key(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    client = anthropic.Anthropic(base_url=proxy.url, auth_token=key, max_retries=0)
    message = client.messages.create(model="claude-x", max_tokens=5, messages=HELLO)
    assert message.content
    assert "authorization" not in {k.lower() for k, _ in upstream.requests[-1].headers}


def test_provider_receives_its_own_key_and_never_the_clients(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    headers = {
        "x-api-key": key,
        "Authorization": f"Bearer {key}",
        "anthropic-beta": "interleaved-thinking-2025-05-14",
        "Connection": "keep-alive, x-drop-me",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "Cookie": "session=abc",
        "X-Claude-Code-Session-Id": "s-1",
    }
    body = {"model": "claude-x", "max_tokens": 5, "messages": HELLO}
    response = httpx.post(f"{proxy.url}/v1/messages", json=body, headers=headers)
    assert response.status_code == 200

    received = upstream.requests[-1]
    names = {name.lower() for name, _ in received.headers}
    assert received.header("x-api-key") == builders.UPSTREAM_SECRET
    assert received.header("anthropic-version") == "2023-06-01"
    assert received.header("anthropic-beta") == "interleaved-thinking-2025-05-14"
    assert received.header("x-claude-code-session-id") == "s-1"
    assert not names & {"authorization", "keep-alive", "te", "proxy-authorization", "cookie"}
    assert all(key not in value for _, value in received.headers)


def test_provider_sees_the_clients_user_agent_or_else_the_gateways(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    body = {"model": "claude-x", "max_tokens": 5, "messages": HELLO}
    claude_code = {"x-api-key": key, "user-agent": "claude-cli/2.1.0 (external, cli)"}
    httpx.post(f"{proxy.url}/v1/messages", json=body, headers=claude_code)
    assert upstream.requests[-1].header("user-agent") == "claude-cli/2.1.0 (external, cli)"

    with httpx.Client() as client:
        del client.headers["user-agent"]
        client.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key})
    assert upstream.requests[-1].header("user-agent") == "anthropic-proxy", "not aiohttp's"


def test_client_anthropic_version_is_forwarded(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    body = {"model": "claude-x", "max_tokens": 5, "messages": HELLO}
    headers = {"x-api-key": key, "anthropic-version": "2099-01-01"}
    httpx.post(f"{proxy.url}/v1/messages", json=body, headers=headers)
    assert upstream.requests[-1].header("anthropic-version") == "2099-01-01"


def _claude_code_headers(name: str, key: str) -> dict[str, str]:
    recorded = json.loads((FIXTURES / "claude-code" / "headers.json").read_text())[name]
    skip = {"authorization", "host", "content-length", "connection", "accept-encoding"}
    headers = {k: v for k, v in recorded["headers"] if k.lower() not in skip}
    headers["Authorization"] = f"Bearer {key}"
    return headers


@pytest.mark.parametrize(
    "name",
    [
        "main-request.json",
        "tool-result-request.json",
        "side-title-request.json",
        "interactive-auto-mode-request.json",
        "nonstream-fallback-request.json",
    ],
)
def test_claude_code_request_reaches_provider_byte_identical_but_model(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, name: str
) -> None:
    raw = (FIXTURES / "claude-code" / name).read_bytes()
    sent_model = json.loads(raw)["model"]
    response = httpx.post(
        f"{proxy.url}/v1/messages?beta=true", content=raw, headers=_claude_code_headers(name, key)
    )
    assert response.status_code == 200

    received = upstream.requests[-1]
    expected = raw.replace(
        f'"model": "{sent_model}"'.encode(), f'"model": "{UPSTREAM_MODEL}"'.encode(), 1
    )
    assert received.body == expected
    assert received.query == "beta=true"
    assert received.header("anthropic-beta") == _claude_code_headers(name, key)["anthropic-beta"]
