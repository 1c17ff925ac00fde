"""Limits at the door, each with its Anthropic error: header size, slow request heads,
slow bodies, body size and JSON nesting."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from django.test import override_settings

from tests import builders
from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy
from tests.rawhttp import Reply, exchange, read_reply, request_bytes

HELLO = [{"role": "user", "content": "hi"}]
BODY = json.dumps({"model": "claude-x", "max_tokens": 5, "messages": HELLO}).encode()


@pytest.fixture
def key(proxy: LiveProxy, upstream: FakeUpstream) -> Iterator[str]:
    builders.route(builders.provider("p", upstream.url), "upstream-a", alias="claude-*")
    secret = builders.client_key()
    proxy.reload()
    yield secret


def headers(key: str) -> list[tuple[str, str]]:
    return [("x-api-key", key), ("content-type", "application/json")]


def assert_error(reply: Reply | None, status: int, error_type: str, words: str) -> None:
    assert reply is not None
    assert reply.status == status, reply.body[:200]
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["type"] == error_type and words in error["message"]


def test_headers_over_the_limit_get_431(proxy: LiveProxy, key: str) -> None:
    with override_settings(MAX_HEADER_BYTES=4096):
        fat = [*headers(key), ("x-padding", "p" * 5000)]
        assert_error(
            exchange(proxy.port, request_bytes("POST", "/v1/messages", BODY, fat)),
            431,
            "invalid_request_error",
            "larger than 4096 bytes",
        )
        slim = [*headers(key), ("x-padding", "p" * 3000)]
        served = exchange(proxy.port, request_bytes("POST", "/v1/messages", BODY, slim))
        assert served is not None and served.status == 200


def test_a_request_head_that_trickles_in_gets_408(proxy: LiveProxy, key: str) -> None:
    with (
        override_settings(CLIENT_HEADER_TIMEOUT=0.3),
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
    ):
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: ")
        started = time.monotonic()
        reply = read_reply(sock)
    assert_error(reply, 408, "timeout_error", "headers did not arrive within 0.3 s")
    assert time.monotonic() - started < 4


def test_a_connection_that_never_asks_is_closed(proxy: LiveProxy) -> None:
    with (
        override_settings(CLIENT_HEADER_TIMEOUT=0.3),
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
    ):
        assert read_reply(sock) is None  # closed without a word, well before the 5 s


def test_a_body_that_trickles_in_gets_408(proxy: LiveProxy, key: str) -> None:
    head = request_bytes("POST", "/v1/messages", BODY, headers(key))[: -len(BODY)]
    with (
        override_settings(CLIENT_BODY_TIMEOUT=0.3),
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
    ):
        sock.sendall(head + BODY[:10])
        reply = read_reply(sock)
    assert_error(reply, 408, "timeout_error", "body did not arrive within 0.3 s")


def test_a_body_over_the_limit_gets_413(proxy: LiveProxy, key: str) -> None:
    with override_settings(MAX_BODY_BYTES=1000):
        big = json.dumps({"model": "claude-x", "max_tokens": 5, "messages": HELLO, "x": "y" * 2000})
        reply = exchange(
            proxy.port, request_bytes("POST", "/v1/messages", big.encode(), headers(key))
        )
    assert_error(reply, 413, "request_too_large", "larger than 1000 bytes")


def nested_request(depth: int) -> bytes:
    deep = "[" * depth + "]" * depth
    return (
        f'{{"model": "claude-x", "max_tokens": 5, "messages": [{{"role": "user", '
        f'"content": "hi"}}], "metadata": {{"x": {deep}}}}}'
    ).encode()


def test_json_nested_256_levels_is_served_and_far_deeper_is_refused(
    proxy: LiveProxy, key: str
) -> None:
    served = exchange(
        proxy.port, request_bytes("POST", "/v1/messages", nested_request(256), headers(key))
    )
    assert served is not None and served.status == 200
    deep_but_allowed = request_bytes("POST", "/v1/messages", nested_request(500), headers(key))
    assert exchange(proxy.port, deep_but_allowed).status == 200
    for depth in (513, 2023, 100_000):  # past the limit; past orjson's; past json's
        raw = request_bytes("POST", "/v1/messages", nested_request(depth), headers(key))
        assert_error(exchange(proxy.port, raw), 400, "invalid_request_error", "nested too deeply")


def test_a_malformed_request_line_gets_an_anthropic_400(proxy: LiveProxy) -> None:
    reply = exchange(proxy.port, b"POST /v1/messages HTTP/1.1\r\nx-bad\rname: 1\r\n\r\n")
    assert_error(reply, 400, "invalid_request_error", "invalid HTTP request")
