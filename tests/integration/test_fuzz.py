"""Property-based fuzzing of every public endpoint over real HTTP.

One live proxy (with a healthy fake provider behind it) takes malformed JSON, wrong types,
huge and deeply nested values, invalid UTF-8, odd content types, duplicate and CRLF-laden
headers and chunked bodies. For every request: no 5xx of the proxy's own making, every
error Anthropic-shaped, and the process still answers afterwards.

`make test` runs a bounded number of examples per property (FUZZ_EXAMPLES, default 60);
`make fuzz` runs many more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import builders
from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy
from tests.rawhttp import Reply, exchange, request_bytes

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
API_PATHS = ("/v1/messages", "/v1/messages/count_tokens", "/v1/models")
OTHER_PATHS = ("/health", "/metrics", "/live.json", "/")
HELLO = [{"role": "user", "content": "hi"}]


def assert_sound(reply: Reply | None, path: str) -> None:
    """No 5xx of our making; errors in the Anthropic shape; JSON where JSON is due."""
    assert reply is not None, "the proxy closed the connection without an answer"
    assert reply.status < 500, (reply.status, reply.body[:300])
    if reply.status >= 400 and (path.startswith("/v1/") or path in OTHER_PATHS):
        payload = reply.json()
        assert payload["type"] == "error", payload
        assert isinstance(payload["error"]["type"], str) and payload["error"]["type"]
        assert isinstance(payload["error"]["message"], str)


@pytest.fixture
def live(proxy: LiveProxy, upstream: FakeUpstream) -> Iterator[tuple[LiveProxy, str]]:
    prov = builders.provider("p", upstream.url)
    builders.route(prov, "upstream-a", alias="claude-*")
    builders.route(builders.provider("o", upstream.url, kind="openai"), "gpt-x", alias="gpt-*")
    key = builders.client_key()
    proxy.reload()
    yield proxy, key
    cache.clear()  # failed sign-ins from 127.0.0.1 must not lock out the tests after
    health = exchange(proxy.port, request_bytes("GET", "/health"))
    assert health is not None and health.status == 200  # still alive after all of it


# JSON of every kind, including what JSON allows and Python handles badly.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
FIELDS = (
    "model",
    "max_tokens",
    "messages",
    "stream",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "stop_sequences",
    "temperature",
    "top_p",
)
block_types = st.sampled_from(
    ["text", "image", "tool_use", "tool_result", "thinking", "document", "server_tool_use", "x"]
)
blocks = st.fixed_dictionaries({"type": block_types}, optional={"text": json_values}).map(dict)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system", "tool", ""]),
            "content": st.one_of(st.text(max_size=40), st.lists(blocks, max_size=3), json_values),
        }
    ),
    max_size=4,
)


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request with some of its fields replaced by anything at all."""
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(["claude-x", "gpt-x", "nothing-serves-this"])),
        "max_tokens": 5,
        "messages": HELLO,
        "stream": draw(st.booleans()),
    }
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        body[name] = draw(messages if name == "messages" else json_values)
    return body


def _json_headers(key: str) -> list[tuple[str, str]]:
    return [("x-api-key", key), ("content-type", "application/json")]


@FUZZ
@given(body=mutated_requests(), path=st.sampled_from(API_PATHS[:2]))
def test_requests_with_fields_of_any_type(
    live: tuple[LiveProxy, str], body: dict[str, Any], path: str
) -> None:
    proxy, key = live
    raw = json.dumps(body).encode()
    reply = exchange(proxy.port, request_bytes("POST", path, raw, _json_headers(key)))
    assert_sound(reply, path)


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.builds(
            lambda valid, cut: valid[:cut],
            st.just(json.dumps({"model": "claude-x", "max_tokens": 5, "messages": HELLO}).encode()),
            st.integers(0, 60),
        ),
        st.builds(
            lambda prefix, junk: prefix + junk,
            st.just(b'{"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", '),
            st.binary(min_size=1, max_size=20),
        ),
    ),
    path=st.sampled_from(API_PATHS[:2]),
)
def test_bodies_that_are_not_json(live: tuple[LiveProxy, str], body: bytes, path: str) -> None:
    proxy, key = live
    reply = exchange(proxy.port, request_bytes("POST", path, body, _json_headers(key)))
    assert_sound(reply, path)
    assert reply is not None and reply.status == 400


def _nested(depth: int, opener: str) -> str:
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@FUZZ
@given(depth=st.integers(1, 5000), opener=st.sampled_from(["[", "{"]), where=st.integers(0, 2))
def test_deeply_nested_values(
    live: tuple[LiveProxy, str], depth: int, opener: str, where: int
) -> None:
    """Nesting up to 256 levels is served; deeper gets a 400, never a crash."""
    proxy, key = live
    nested = _nested(depth, opener)
    placed = [
        f'"metadata": {{"x": {nested}}}',
        f'"messages": [{{"role": "user", "content": [{{"type": "tool_result", '
        f'"tool_use_id": "t", "content": "x", "extra": {nested}}}]}}]',
        f'"tools": [{{"name": "t", "input_schema": {nested}}}]',
    ][where]
    fields = '"model": "claude-x", "max_tokens": 5'
    if where != 1:
        fields += ', "messages": [{"role": "user", "content": "hi"}]'
    raw = f"{{{fields}, {placed}}}".encode()
    reply = exchange(proxy.port, request_bytes("POST", "/v1/messages", raw, _json_headers(key)))
    assert_sound(reply, "/v1/messages")
    assert reply is not None
    if depth <= 256 and where == 0:
        assert reply.status == 200, reply.body[:300]


@FUZZ
@given(size=st.integers(100_000, 3_000_000), field=st.sampled_from(["text", "model", "key"]))
def test_huge_values(live: tuple[LiveProxy, str], size: int, field: str) -> None:
    proxy, key = live
    big = "x" * size
    body: dict[str, Any] = {"model": "claude-x", "max_tokens": 5, "messages": HELLO}
    if field == "text":
        body["messages"] = [{"role": "user", "content": big}]
    elif field == "model":
        body["model"] = big
    else:
        body["metadata"] = {big: 1}
    raw = json.dumps(body).encode()
    reply = exchange(proxy.port, request_bytes("POST", "/v1/messages", raw, _json_headers(key)))
    assert_sound(reply, "/v1/messages")


content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "application/json\t",
        "*/*",
    ]
)
header_names = st.sampled_from(
    ["x-api-key", "authorization", "content-type", "anthropic-version", "anthropic-beta", "x-y"]
)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)


@FUZZ
@given(
    content_type=st.one_of(st.none(), content_types),
    extra=st.lists(st.tuples(header_names, header_values), max_size=5),
    key_twice=st.booleans(),
    path=st.sampled_from(API_PATHS + OTHER_PATHS + ("/v1/nope", "/v1/messages/x")),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
)
def test_odd_headers_methods_and_paths(
    live: tuple[LiveProxy, str],
    content_type: str | None,
    extra: list[tuple[str, str]],
    key_twice: bool,
    path: str,
    method: str,
) -> None:
    proxy, key = live
    headers = [("x-api-key", key)]
    if key_twice:
        headers.append(("x-api-key", "sk-wrong"))
    if content_type is not None:
        headers.append(("content-type", content_type))
    headers += extra
    body = json.dumps({"model": "claude-x", "max_tokens": 5, "messages": HELLO}).encode()
    reply = exchange(proxy.port, request_bytes(method, path, body, headers))
    if method == "HEAD" and reply is not None:
        assert reply.status < 500
        return
    assert_sound(reply, path)


@FUZZ
@given(
    chunks=st.lists(st.integers(0, 200), max_size=12),
    stream=st.booleans(),
    path=st.sampled_from(API_PATHS[:2]),
)
def test_chunked_bodies(
    live: tuple[LiveProxy, str], chunks: list[int], stream: bool, path: str
) -> None:
    proxy, key = live
    payload = {"model": "claude-x", "max_tokens": 5, "messages": HELLO, "stream": stream}
    body = json.dumps(payload).encode()
    reply = exchange(
        proxy.port, request_bytes("POST", path, body, _json_headers(key), chunks=chunks)
    )
    assert_sound(reply, path)
    assert reply is not None and reply.status == 200


@FUZZ
@given(
    where=st.sampled_from(["name", "value", "line"]),
    junk=st.sampled_from(["\r", "\n", "\r\n", "\r\n ", "\x00", "\r\nx-api-key: sk-x", "\r\n\r\n"]),
)
def test_crlf_laden_headers(live: tuple[LiveProxy, str], where: str, junk: str) -> None:
    """Broken framing is refused at the door, in the Anthropic shape, and nothing after it
    is taken for a second request."""
    proxy, key = live
    head = f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\n"
    if where == "name":
        head += f"x-bad{junk}name: 1\r\n"
    elif where == "value":
        head += f"x-bad: va{junk}lue\r\n"
    else:
        head += f"{junk}\r\n"
    body = json.dumps({"model": "claude-x", "max_tokens": 5, "messages": HELLO}).encode()
    raw = f"{head}content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
    reply = exchange(proxy.port, raw)
    assert reply is not None
    assert reply.status < 500
    if reply.status >= 400:
        assert reply.json()["type"] == "error"


@FUZZ
@given(
    path=st.sampled_from(["/dashboard/login/", "/admin/login/", "/dashboard/", "/admin/"]),
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD"]),
    body=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda user, password: f"username={user}&password={password}".encode(
                "utf-8", "surrogatepass"
            ),
            st.text(max_size=40),
            st.text(max_size=40),
        ),
    ),
    content_type=content_types,
)
def test_the_public_pages_of_the_dashboard_and_admin(
    live: tuple[LiveProxy, str], path: str, method: str, body: bytes, content_type: str
) -> None:
    """The sign-in pages are public too: nothing anyone sends them makes a 500. (They
    answer in HTML, as pages do; only the API's errors are Anthropic-shaped.)"""
    proxy, _ = live
    headers = [("content-type", content_type)] if content_type else []
    reply = exchange(proxy.port, request_bytes(method, path, body, headers))
    assert reply is not None and reply.status < 500, reply and reply.body[:300]
