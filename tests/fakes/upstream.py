"""A fake LLM provider over real loopback TCP, for tests, benchmarks and demos.

Written on raw asyncio protocols, not an ASGI framework, so that it can misbehave at the
socket level (reset, stall mid-stream) and notice the instant a client goes away.

Routes (matched by path suffix, so any prefix such as ``/api/anthropic`` works):

- ``POST …/v1/messages`` and ``POST …/v1/chat/completions``: scripted per request ``model``.
- ``POST …/v1/messages/count_tokens``: ``{"input_tokens": len(body) // 4}``.
- ``GET …/v1/models``: the known models, in Anthropic or OpenAI list format (``dialect``);
  Anthropic pages honour ``limit`` and ``after_id`` and say ``has_more``. ``model_fields``
  adds fields per model (``context_length`` …), ``models_script`` scripts a fault.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
ANTHROPIC_STREAM_FIXTURE = "anthropic/anthropic-stream-text.sse"
ANTHROPIC_MESSAGE_FIXTURE = "anthropic/anthropic-message-text-tool-use.json"
OPENAI_STREAM_FIXTURE = "openai/openai-stream-text-include-usage.sse"
OPENAI_MESSAGE_FIXTURE = "openai/openai-chat-tool-call-cached-tokens.json"
ANTHROPIC_MAX_PAGE = 1000  # the largest `limit` Anthropic's GET /v1/models accepts
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "anthropic": ("claude-haiku-4-5-20251001", "claude-sonnet-4-5-20250929"),
    "openai": ("gpt-4o-mini", "gpt-4.1"),
}
Dialect = Literal["anthropic", "openai"]

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_SSE_HEADERS = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("transfer-encoding", "chunked"),
]
_LAST_CHUNK = b"0\r\n\r\n"
_STAMP_MARK = "@@stamp@@"  # where a stamped delta's send time goes (JSON keeps it as is)
# A framed SSE event, or (stamped synthetic deltas) a function rendering it at send time.
Chunk = bytes | Callable[[], bytes]


@dataclass(frozen=True)
class Synthetic:
    """A generated stream of one-token text deltas, so benchmarks control size and pace.

    With ``stamp`` every streamed text delta's text is ``" t=<seconds>"`` instead of
    ``text``: the fake's ``time.monotonic()`` taken just before the event is written, so
    a reader on the same machine can tell how long the event took to reach it. It is
    CLOCK_MONOTONIC, one clock for every process of a Linux machine, and never stepped
    (unlike ``time.time()``). Plain text survives both the byte-for-byte Anthropic relay
    and the OpenAI-to-Anthropic conversion. Non-stream replies are not stamped.
    """

    tokens: int = 64
    ttft: float = 0.0  # seconds before the first text delta (earlier events go at once)
    per_token: float = 0.0  # seconds before each later text delta
    text: str = " tok"  # the text of every token
    stamp: bool = False  # stream deltas carry their send time as text (see above)


@dataclass(frozen=True)
class Script:
    """How the fake answers a generation request (``/v1/messages``, ``/v1/chat/completions``).

    Checked in this order: reset_before_reply, hang, status; otherwise a 200 reply, SSE
    when the JSON body has ``"stream": true`` (headers at once, then each event as its own
    chunk), else JSON. Fixture paths are relative to
    the fixtures dir; None picks the endpoint's default (Anthropic fixtures on
    ``/v1/messages``, OpenAI ones on ``/v1/chat/completions``). An event count N in
    ``*_after_events`` at or past the stream's length acts after the last event, before
    the terminating zero-length chunk.
    """

    stream_fixture: str | None = None  # SSE file replayed event by event, bytes unchanged
    message_fixture: str | None = None  # JSON file sent verbatim for non-stream requests
    status: int | None = None  # reply with this status and error_body (JSON, even if stream)
    error_body: dict[str, Any] | None = None  # None: the endpoint dialect's error shape
    headers: Mapping[str, str] = field(default_factory=dict)  # added to every reply
    reset_before_reply: bool = False  # read the request, then RST the connection
    hang: bool = False  # read the request, then never answer (until the client leaves)
    first_event_delay: float = 0.0  # before the first SSE event, or the whole JSON reply
    event_delay: float = 0.0  # before every later SSE event
    reset_after_events: int | None = None  # send N SSE events, then RST
    hang_after_events: int | None = None  # send N SSE events, then stall until client leaves
    synthetic: Synthetic | None = None  # generate the reply instead of reading fixtures
    times: int | None = None  # only for the next N requests of its key (see FakeUpstream)

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError("Script.times must be None or >= 1")


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it, for assertions."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]  # original order and case
    body: bytes
    json: Any | None
    connection_id: int
    at: float  # time.monotonic() when the request was fully read

    def header(self, name: str) -> str | None:
        """The first value of a header, case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def model(self) -> str | None:
        """The JSON body's "model", when there is one."""
        return self.json.get("model") if isinstance(self.json, dict) else None


@dataclass
class Connection:
    """One TCP connection; filled in from the server thread, read from tests."""

    id: int
    opened_at: float
    closed_at: float | None = None
    peer_closed: bool = False  # True when the client closed or reset it, not the fake
    bytes_sent: int = 0  # handed to the transport so far (it takes more only when writable)

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


class _Gone(Exception):
    """The connection is finished (peer left, or the fake closed it on purpose)."""


class _ScriptBook:
    """Scripts per model: one-shot entries (times=N) queue in front of the standing one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._standing: dict[str | None, Script] = {}
        self._queued: dict[str | None, deque[list[Any]]] = {}
        # Picks the script itself when set (the soak's random faults); None: the book.
        self.policy: Callable[[str | None], Script] | None = None

    def add(self, model: str | None, script: Script) -> None:
        with self._lock:
            if script.times is None:
                self._standing[model] = script
            else:
                self._queued.setdefault(model, deque()).append([script, script.times])

    def take(self, model: str | None) -> Script:
        if self.policy is not None:
            return self.policy(model)
        with self._lock:
            return self._take(model) or self._take(None) or Script()

    def _take(self, key: str | None) -> Script | None:
        queue = self._queued.get(key)
        if not queue:
            return self._standing.get(key)
        entry = queue[0]
        entry[1] -= 1
        if entry[1] == 0:
            queue.popleft()
        return entry[0]

    def models(self) -> list[str]:
        with self._lock:
            return [m for m in itertools.chain(self._standing, self._queued) if m is not None]

    def clear(self) -> None:
        with self._lock:
            self._standing.clear()
            self._queued.clear()


def _frame(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Overloaded" if status == 529 else "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@functools.lru_cache(maxsize=256)
def _fixture_bytes(path: Path) -> bytes:
    return path.read_bytes()


@functools.lru_cache(maxsize=256)
def _fixture_events(path: Path) -> tuple[bytes, ...]:
    """The file split on blank lines, each event framed as its own chunk, bytes kept."""
    parts = _fixture_bytes(path).split(b"\n\n")
    return tuple(_frame(part + b"\n\n") for part in parts if part)


def _sse(event: str | None, payload: Any) -> bytes:
    return _frame(_sse_event(event, payload))


def _sse_event(event: str | None, payload: Any) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()


def _text_delta(syn: Synthetic, event: str | None, payload: Callable[[str], Any]) -> Chunk:
    """One text delta event, ``payload(text)`` its JSON. Stamped: rendered when sent,
    from bytes split once around the stamp, so the per-event cost is one format."""
    if not syn.stamp:
        return _sse(event, payload(syn.text))
    before, after = _sse_event(event, payload(f" t={_STAMP_MARK}")).split(_STAMP_MARK.encode())

    def render() -> bytes:
        return _frame(b"%s%.6f%s" % (before, time.monotonic(), after))

    return render


@functools.lru_cache(maxsize=64)
def _synthetic_anthropic_tail(syn: Synthetic) -> tuple[Chunk, ...]:
    """Everything after message_start; the same chunks for every request, built once."""

    def block(text: str) -> dict[str, Any]:
        delta = {"type": "text_delta", "text": text}
        return {"type": "content_block_delta", "index": 0, "delta": delta}

    end = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": syn.tokens},
    }
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    one = _text_delta(syn, "content_block_delta", block)
    return (
        _sse("content_block_start", start),
        *([one] * syn.tokens),
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse("message_delta", end),
        _sse("message_stop", {"type": "message_stop"}),
    )


def _synthetic_anthropic(
    syn: Synthetic, model: str, input_tokens: int, number: int
) -> tuple[list[Chunk], list[float]]:
    message = {
        "id": f"msg_fake_{number:08d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    chunks: list[Chunk] = [_sse("message_start", {"type": "message_start", "message": message})]
    chunks.extend(_synthetic_anthropic_tail(syn))
    delays = [0.0, 0.0, syn.ttft, *([syn.per_token] * (syn.tokens - 1)), 0.0, 0.0, 0.0]
    return chunks, delays[: len(chunks)]


def _synthetic_openai(
    syn: Synthetic, model: str, input_tokens: int, number: int
) -> tuple[list[Chunk], list[float]]:
    base = {"id": f"chatcmpl-fake{number}", "object": "chat.completion.chunk", "created": 0}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(None, {**base, "choices": [_choice(delta, finish)]})

    usage = {
        "prompt_tokens": input_tokens,
        "completion_tokens": syn.tokens,
        "total_tokens": input_tokens + syn.tokens,
    }
    one = _text_delta(syn, None, lambda text: {**base, "choices": [_choice({"content": text})]})
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        *([one] * syn.tokens),
        chunk({}, "stop"),
        _sse(None, {**base, "choices": [], "usage": usage}),
        _frame(b"data: [DONE]\n\n"),
    ]
    delays = [0.0, syn.ttft, *([syn.per_token] * (syn.tokens - 1)), 0.0, 0.0, 0.0]
    return chunks, delays[: len(chunks)]


def _choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish}


def _synthetic_message(syn: Synthetic, model: str, input_tokens: int, openai: bool) -> Any:
    text = syn.text * syn.tokens
    if openai:
        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": syn.tokens,
            "total_tokens": input_tokens + syn.tokens,
        }
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        head = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0}
        return {**head, "model": model, "choices": [choice], "usage": usage}
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": syn.tokens},
    }


def error_body(status: int, openai: bool = False) -> dict[str, Any]:
    """The error body a real provider of that dialect would send for this status."""
    message = f"fake upstream: scripted HTTP {status}"
    if openai:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        code = "rate_limit_exceeded" if status == 429 else None
        kind = "requests" if status == 429 else kind
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _split_header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name, value.strip()


def _parse_json(body: bytes) -> Any | None:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


class _Link(asyncio.Protocol):
    """One client connection: buffers input, runs the request loop, sees the peer leave."""

    def __init__(self, fake: FakeUpstream) -> None:
        self._fake = fake
        self._buf = bytearray()
        self._more = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._eof = False
        self._by_us = False
        self.transport: asyncio.Transport | None = None
        self.record = Connection(id=0, opened_at=time.monotonic())
        self.task: asyncio.Task[None] | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.record = self._fake._opened(self)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._more.set()

    def eof_received(self) -> bool:
        self._eof = True
        self._more.set()
        return False  # close our side too: a client that stops sending is gone

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self.record.peer_closed = not self._by_us
        self.record.closed_at = time.monotonic()
        self._more.set()
        self._writable.set()
        self._fake._links.discard(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # request loop
    async def _serve(self) -> None:
        try:
            while True:
                request = await self._read_request()
                if not await self._fake._answer(self, request):
                    self.close()
                    return
        except _Gone:
            return
        except Exception:
            log.exception("fake upstream: failed to answer; aborting the connection")
            self.abort()

    async def _read_request(self) -> Received:
        head = await self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").strip("\r\n").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = [_split_header(line) for line in lines[1:]]
        body = await self._read_body(headers)
        path, _, query = target.partition("?")
        return Received(
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=body,
            json=_parse_json(body),
            connection_id=self.record.id,
            at=time.monotonic(),
        )

    async def _read_body(self, headers: list[tuple[str, str]]) -> bytes:
        values = {name.lower(): value for name, value in headers}
        if values.get("expect", "").lower() == "100-continue":
            await self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in values.get("transfer-encoding", "").lower():
            return await self._read_chunked()
        return await self._read_exact(int(values.get("content-length", "0")))

    async def _read_chunked(self) -> bytes:
        parts = []
        while size := int((await self._read_until(b"\r\n")).split(b";")[0], 16):
            parts.append(await self._read_exact(size))
            await self._read_exact(2)
        while await self._read_until(b"\r\n") != b"\r\n":
            pass  # trailer fields: ignored
        return b"".join(parts)

    async def _read_until(self, separator: bytes) -> bytes:
        while (end := self._buf.find(separator)) < 0:
            await self._wait_for_input()
        return self._take(end + len(separator))

    async def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            await self._wait_for_input()
        return self._take(size)

    async def _wait_for_input(self) -> None:
        if self._eof:
            raise _Gone
        self._more.clear()
        await self._more.wait()

    def _take(self, size: int) -> bytes:
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    # replies
    async def send(self, data: bytes) -> None:
        """Write now (TCP_NODELAY is on), then respect the transport's flow control."""
        assert self.transport is not None
        if self.transport.is_closing():
            raise _Gone
        self.transport.write(data)
        self.record.bytes_sent += len(data)
        await self._writable.wait()

    async def send_json(
        self, status: int, body: bytes | Any, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        fields = [("content-type", "application/json"), ("content-length", str(len(data)))]
        await self.send(_head(status, [*fields, *headers]) + data)

    async def send_stream(
        self,
        chunks: Sequence[Chunk],
        delays: Sequence[float],
        script: Script,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Headers at once, then each event as its own chunk, with the script's faults."""
        await self.send(_head(200, [*_SSE_HEADERS, *headers]))
        for index, chunk in enumerate(chunks):
            await self._fault_after(index, len(chunks), script)
            if delays[index] > 0:
                await asyncio.sleep(delays[index])
            await self.send(chunk if isinstance(chunk, bytes) else chunk())
        await self._fault_after(len(chunks), len(chunks), script)
        await self.send(_LAST_CHUNK)

    async def _fault_after(self, sent: int, total: int, script: Script) -> None:
        """Counts past the end act after the last event, before the closing chunk."""
        if script.reset_after_events is not None and sent == min(script.reset_after_events, total):
            self.reset()
        if script.hang_after_events is not None and sent == min(script.hang_after_events, total):
            await self.stall()

    # endings
    def reset(self) -> None:
        """Abort with a TCP RST: SO_LINGER 0 turns close() into a reset; never returns."""
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.abort()
        raise _Gone

    async def stall(self) -> None:
        """Wait until the peer goes away; connection_lost cancels this task."""
        await asyncio.get_running_loop().create_future()

    def abort(self) -> None:
        self._by_us = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self._by_us = True
        if self.transport is not None:
            self.transport.close()


class FakeUpstream:
    """A scripted fake provider, run in its own thread (start/stop) or a caller's loop.

    ``script(model, s)``: with ``s.times`` None, ``s`` becomes the standing script for
    ``model`` (None = the default for models without scripts of their own). With
    ``times=N`` it is queued instead and answers the next N requests for that key, queued
    scripts in the order added, before the standing one comes back. A request looks at its
    model's scripts, then the default's, then ``Script()``. Only generation endpoints
    (``/v1/messages``, ``/v1/chat/completions``) consume scripts.

    ``GET /v1/models`` lists ``models`` then the scripted models. ``model_fields[id]`` is
    merged into that model's entry. In the Anthropic dialect a page holds the models after
    ``after_id``, at most ``limit`` (1 to 1000, default 1000) and ``models_page_size``.
    ``models_script`` (settable at any time, kept by ``reset``) answers the listing with
    its reset, hang, delay or status instead; its ``times`` is ignored.
    """

    def __init__(
        self,
        fixtures_dir: Path = FIXTURES_DIR,
        *,
        dialect: Dialect = "anthropic",
        models: Sequence[str] | None = None,
        record: bool = True,
        model_fields: Mapping[str, Mapping[str, Any]] | None = None,
        models_page_size: int = ANTHROPIC_MAX_PAGE,
        models_script: Script | None = None,
    ) -> None:
        self.fixtures_dir = Path(fixtures_dir)
        self.record = record  # False for long runs (CLI, benchmarks): keep no records
        self.dialect: Dialect = dialect
        self.models = list(DEFAULT_MODELS[dialect] if models is None else models)
        self.model_fields = dict(model_fields or {})
        self.models_page_size = models_page_size
        self.models_script = models_script
        self.url = ""
        self._book = _ScriptBook()
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._connections: list[Connection] = []
        self._links: set[_Link] = set()  # touched only on the server loop
        self._connection_ids = itertools.count(1)
        self._numbers = itertools.count(1)  # request-id and message ids
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    # scripting and records
    def script(self, model: str | None, script: Script) -> None:
        """Set (times=None) or queue (times=N) how requests for ``model`` are answered."""
        self._book.add(model, script)

    def choose_scripts(self, policy: Callable[[str | None], Script] | None) -> None:
        """Let `policy(model)` pick every request's script (random faults, for the soak);
        None goes back to the scripts set with `script`."""
        self._book.policy = policy

    def reset(self) -> None:
        """Forget scripts, requests and connections, between tests sharing one fake."""
        self._book.clear()
        with self._lock:
            self._requests.clear()
            self._connections.clear()

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Poll ``predicate`` from a sync test; False if it stayed false for ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    async def wait_for_async(
        self,
        predicate: Callable[[], bool],
        timeout: float = 2.0,  # noqa: ASYNC109 (twin of wait_for: returns False, never raises)
    ) -> bool:
        """As wait_for, without blocking an event loop the code under test may share."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def wait_closed(self, model: str | None = None, timeout: float = 1.0) -> bool:
        """True once every connection that carried a request for ``model`` (None: any
        request) is closed; False on timeout or if there was no such connection."""
        return self.wait_for(self._all_closed(model), timeout)

    async def wait_closed_async(
        self,
        model: str | None = None,
        timeout: float = 1.0,  # noqa: ASYNC109 (twin of wait_closed: returns False)
    ) -> bool:
        """As wait_closed, for async tests."""
        return await self.wait_for_async(self._all_closed(model), timeout)

    def _all_closed(self, model: str | None) -> Callable[[], bool]:
        def check() -> bool:
            ids = {r.connection_id for r in self.requests if model is None or r.model == model}
            carriers = [c for c in self.connections if c.id in ids]
            return bool(carriers) and all(c.closed for c in carriers)

        return check

    # lifecycle
    def start(self) -> str:
        """Listen on a free loopback port in a daemon thread; returns the base URL."""
        if self._thread is not None:
            return self.url
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-upstream", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        asyncio.run_coroutine_threadsafe(self._listen("127.0.0.1", 0), loop).result(timeout=5)
        return self.url

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def serve_forever(self, host: str = "127.0.0.1", port: int = 9999) -> None:
        """Serve in the running loop until cancelled (the management command's entry)."""
        server = await self._listen(host, port)
        try:
            await server.serve_forever()
        finally:
            await self._shutdown()

    async def _listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Link(self), host, port)
        bound = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{bound}"
        return self._server

    async def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links = list(self._links)
        for link in links:
            link.abort()
        tasks = [link.task for link in links if link.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # called on the server loop by _Link
    def _opened(self, link: _Link) -> Connection:
        record = Connection(id=next(self._connection_ids), opened_at=time.monotonic())
        if self.record:
            with self._lock:
                self._connections.append(record)
        self._links.add(link)
        return record

    async def _answer(self, link: _Link, request: Received) -> bool:
        """Route one request; returns whether to keep the connection open."""
        if self.record:
            with self._lock:
                self._requests.append(request)
        headers = [("request-id", f"req_fake_{next(self._numbers):08d}")]
        path, method = request.path.rstrip("/"), request.method
        if method == "POST" and path.endswith(("/v1/messages", "/v1/chat/completions")):
            await self._generate(link, request, path.endswith("/chat/completions"), headers)
        elif method == "POST" and path.endswith("/v1/messages/count_tokens"):
            await link.send_json(200, {"input_tokens": len(request.body) // 4}, headers)
        elif method == "GET" and path.endswith("/v1/models"):
            await self._list_models(link, request, headers)
        else:
            await link.send_json(404, error_body(404, self.dialect == "openai"), headers)
        return (request.header("connection") or "").lower() != "close"

    async def _generate(
        self, link: _Link, request: Received, openai: bool, headers: list[tuple[str, str]]
    ) -> None:
        script = self._book.take(request.model)
        headers = [*headers, *script.headers.items()]
        await self._connection_faults(link, script)
        streaming = isinstance(request.json, dict) and request.json.get("stream") is True
        if streaming and script.status is None:
            chunks, delays = self._stream_plan(request, script, openai)
            await link.send_stream(chunks, delays, script, headers)
            return
        if script.first_event_delay > 0:
            await asyncio.sleep(script.first_event_delay)
        if script.status is None:
            await link.send_json(200, self._message_body(request, script, openai), headers)
        else:
            await self._send_error(link, script, script.status, openai, headers)

    @staticmethod
    async def _connection_faults(link: _Link, script: Script) -> None:
        if script.reset_before_reply:
            link.reset()
        if script.hang:
            await link.stall()

    @staticmethod
    async def _send_error(
        link: _Link, script: Script, status: int, openai: bool, headers: list[tuple[str, str]]
    ) -> None:
        body = script.error_body if script.error_body is not None else error_body(status, openai)
        await link.send_json(status, body, headers)

    async def _list_models(
        self, link: _Link, request: Received, headers: list[tuple[str, str]]
    ) -> None:
        script = self.models_script or Script()
        headers = [*headers, *script.headers.items()]
        await self._connection_faults(link, script)
        if script.first_event_delay > 0:
            await asyncio.sleep(script.first_event_delay)
        openai = self.dialect == "openai"
        if script.status is not None:
            await self._send_error(link, script, script.status, openai, headers)
            return
        names = list(dict.fromkeys([*self.models, *self._book.models()]))
        if openai:
            await link.send_json(200, self._openai_models(names), headers)
            return
        status, body = self._anthropic_models_page(names, parse_qs(request.query))
        await link.send_json(status, body, headers)

    def _stream_plan(
        self, request: Received, script: Script, openai: bool
    ) -> tuple[list[Chunk], list[float]]:
        """The framed events to send and the pause before each."""
        chunks: list[Chunk]
        if script.synthetic is not None:
            build = _synthetic_openai if openai else _synthetic_anthropic
            model, tokens = request.model or "fake-model", len(request.body) // 4
            chunks, pauses = build(script.synthetic, model, tokens, next(self._numbers))
        else:
            default = OPENAI_STREAM_FIXTURE if openai else ANTHROPIC_STREAM_FIXTURE
            chunks = list(_fixture_events(self.fixtures_dir / (script.stream_fixture or default)))
            pauses = [0.0] * len(chunks)
        delays = [script.event_delay + pause for pause in pauses]
        if delays:
            delays[0] = script.first_event_delay + pauses[0]
        return chunks, delays

    def _message_body(self, request: Received, script: Script, openai: bool) -> bytes | Any:
        if script.synthetic is not None:
            model, tokens = request.model or "fake-model", len(request.body) // 4
            return _synthetic_message(script.synthetic, model, tokens, openai)
        default = OPENAI_MESSAGE_FIXTURE if openai else ANTHROPIC_MESSAGE_FIXTURE
        return _fixture_bytes(self.fixtures_dir / (script.message_fixture or default))

    def _openai_models(self, names: list[str]) -> dict[str, Any]:
        data = [
            {"id": n, "object": "model", "created": 0, "owned_by": "fake", **self._fields(n)}
            for n in names
        ]
        return {"object": "list", "data": data}

    def _anthropic_models_page(
        self, names: list[str], query: Mapping[str, list[str]]
    ) -> tuple[int, dict[str, Any]]:
        """One page after ``after_id``, at most ``limit`` and ``models_page_size`` long."""
        try:
            limit = int(query.get("limit", [ANTHROPIC_MAX_PAGE])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= ANTHROPIC_MAX_PAGE:
            return 400, self._bad_query(f"limit: must be from 1 to {ANTHROPIC_MAX_PAGE}")
        limit = min(limit, self.models_page_size)
        start = 0
        if "after_id" in query:
            after = query["after_id"][0]
            if after not in names:
                return 400, self._bad_query(f"after_id: unknown model {after!r}")
            start = names.index(after) + 1
        page = names[start : start + limit]
        created = "2025-01-01T00:00:00Z"
        models = [
            {"type": "model", "id": n, "display_name": n, "created_at": created, **self._fields(n)}
            for n in page
        ]
        first, last = (page[0], page[-1]) if page else (None, None)
        has_more = start + len(page) < len(names)
        return 200, {"data": models, "has_more": has_more, "first_id": first, "last_id": last}

    def _fields(self, name: str) -> dict[str, Any]:
        return dict(self.model_fields.get(name, {}))

    @staticmethod
    def _bad_query(message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
