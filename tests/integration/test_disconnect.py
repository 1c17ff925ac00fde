"""A client that goes away takes its upstream call with it, at once."""

from __future__ import annotations

import socket

import httpx
import pytest

from gateway.models import RequestLog
from tests import builders
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import LiveProxy, both_relay_modes

BODY = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def key(proxy: LiveProxy, upstream: FakeUpstream) -> str:
    builders.route(builders.provider("p", upstream.url), "model-a", alias="claude-*")
    secret = builders.client_key()
    proxy.reload()
    return secret


def logged_outcome(proxy: LiveProxy) -> str:
    for _ in range(50):
        proxy.flush_logs()
        row = RequestLog.objects.order_by("-id").first()
        if row is not None:
            return row.outcome
    raise AssertionError("no log row was written")


@both_relay_modes
def test_disconnect_mid_stream_closes_the_upstream_connection(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    upstream.script("model-a", Script(hang_after_events=4))
    with httpx.Client(base_url=proxy.url) as client:
        body = {**BODY, "stream": True}
        with client.stream("POST", "/v1/messages", json=body, headers={"x-api-key": key}) as r:
            first = next(r.iter_bytes())
            assert b"message_start" in first
    # the client connection is closed here; the proxy must drop the upstream call
    assert upstream.wait_closed("model-a", timeout=1.0)
    assert logged_outcome(proxy) == "client_cancelled"


def test_disconnect_before_the_first_byte_closes_the_upstream_connection(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    upstream.script("model-a", Script(hang=True))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{proxy.url}/v1/messages", json=BODY, headers={"x-api-key": key}, timeout=0.3)
    assert upstream.wait_for(lambda: len(upstream.requests) == 1)
    assert upstream.wait_closed("model-a", timeout=1.0)
    assert logged_outcome(proxy) == "client_cancelled"


def test_abrupt_reset_by_the_client_is_noticed_too(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    upstream.script("model-a", Script(hang=True))
    payload = httpx.Request("POST", "http://x/v1/messages", json=BODY).content
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.sendall(head + payload)
    assert upstream.wait_for(lambda: len(upstream.requests) == 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    assert upstream.wait_closed("model-a", timeout=1.0)
