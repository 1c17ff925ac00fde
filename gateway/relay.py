"""Streams from one upstream, read up to the commit point and then relayed to the client.

`AnthropicRelay` forwards an Anthropic stream byte for byte, watching only what health
and logging need; `ConvertedRelay` turns an OpenAI stream into Anthropic events. Both
end a broken stream with an Anthropic `event: error`, never a silent success.

After the commit a relay either pushes (`push_to`: each chunk is relayed and written to
the client from aiohttp's data callback, under uvicorn) or is pulled (`rest()`: an async
iterator for ASGI `send`, under servers without the client stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from gateway import vault
from gateway.streamwatch import StreamWatch
from gateway.translate.errors import error_event
from gateway.translate.sse import SSEDecoder, parse_block
from gateway.translate.stream import StreamConverter
from gateway.upstream import UpstreamError, converted_errors

if TYPE_CHECKING:
    from gateway.http_protocol import ClientStream


def close_response(response: aiohttp.ClientResponse) -> None:
    """Drop the connection unless the body was read to the end (then it is reusable)."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


def _midstream_error_type(exc: UpstreamError) -> str:
    if exc.kind == "stream_error" or (exc.kind == "http_status" and exc.status in (429, 529)):
        return "overloaded_error"
    return "api_error"


REDACTED = vault.REDACTED.encode()
DEFAULT_IDLE_SECONDS = 120.0


class IdleDeadline:
    """Fails the stream's pending read once the upstream has been silent for `seconds`.

    aiohttp's own read timeout re-arms a timer on every chunk received, which is a fair
    share of a relayed event's CPU when tokens arrive one by one; this one wakes once per
    period and looks at when the current read began. Time the relay spends handing bytes
    to a slow client is not upstream silence, so only waits for the upstream count.
    """

    def __init__(self, content: aiohttp.StreamReader, seconds: float) -> None:
        self._content = content
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self.waiting_since: float | None = None  # set while a read waits for the upstream
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(seconds, self._check)

    def now(self) -> float:
        return self._loop.time()

    def _check(self) -> None:
        since = self.waiting_since
        if since is not None and self._loop.time() - since >= self._seconds:
            self._timer = None
            silent = aiohttp.SocketTimeoutError(f"no data from the provider for {self._seconds:g}s")
            self._content.set_exception(silent)
            return
        due = (since if since is not None else self._loop.time()) + self._seconds
        self._timer = self._loop.call_at(due, self._check)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Relay:
    """Reads chunks, turns them into client bytes, and knows where the commit point is."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        secrets: tuple[str, ...] = (),
        idle: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        self.response = response
        self.idle_seconds = idle  # upstream silence after the commit that ends the stream
        self.first_content_at: float | None = None
        self.last_event_at: float | None = None
        self.failure: UpstreamError | None = None
        self._idle: IdleDeadline | None = None  # from the commit on
        self._decoder = SSEDecoder()
        self._chunks = response.content.iter_any()
        # What this provider was sent and must not be shown back (an echoed key). Relayed
        # bytes are whole events, so a secret is never split across two of them.
        self._secrets = tuple(s for s in secrets if len(s) >= 8)
        self._secret_bytes = tuple(s.encode() for s in self._secrets)

    # what a dialect defines
    def _take(self, chunk: bytes) -> tuple[bytes, bool]:
        """Client bytes for this chunk, and whether model output has begun."""
        raise NotImplementedError

    def _upstream_error(self) -> str | None:
        raise NotImplementedError

    def _finish(self) -> bytes:
        """Bytes to send at the upstream's end of stream; sets `failure` if it was cut."""
        raise NotImplementedError

    @property
    def usage(self) -> Any:
        raise NotImplementedError

    # shared
    def _feed(self, chunk: bytes) -> tuple[bytes, bool]:
        data, content = self._take(chunk)
        if data:
            self.last_event_at = time.monotonic()
            for secret in self._secret_bytes:
                if secret in data:
                    data = data.replace(secret, REDACTED)
        return data, content

    def _stream_error(self) -> str | None:
        error = self._upstream_error()
        return vault.scrub(error, self._secrets) if error else None

    async def until_commit(self) -> bytes:
        """Read until the first content; return everything produced so far."""
        buffered: list[bytes] = []
        with converted_errors():
            async for chunk in self._chunks:
                data, content = self._feed(chunk)
                buffered.append(data)
                if content:  # output came first: an error after it is the client's to see
                    self.first_content_at = self.last_event_at or time.monotonic()
                    return b"".join(buffered)
                error = self._stream_error()
                if error:
                    raise UpstreamError("stream_error", error)
        tail = self._finish()
        if self.failure is None and tail:
            self.first_content_at = time.monotonic()
            return b"".join(buffered) + tail
        raise UpstreamError("protocol", "the stream ended before any content")

    async def rest(self) -> AsyncIterator[bytes]:
        """The remaining bytes; an upstream fault ends them with an `event: error`.

        Up to the commit aiohttp's read timeout guards every read (`upstream.timeout_for`);
        from here on an `IdleDeadline` does, with the route's idle deadline.
        """
        content = self.response.content
        with self._relaying() as idle:
            while True:
                idle.waiting_since = idle.now()
                chunk = await content.readany()
                idle.waiting_since = None
                if not chunk:
                    break
                data, _ = self._feed(chunk)
                if data:
                    yield data
        tail = self._ending()
        if tail:
            yield tail

    async def push_to(self, client: ClientStream, on_data: Callable[[bytes], None]) -> None:
        """Relay the remaining bytes to `client` as they arrive, then the stream's ending.

        The same bytes as `rest()`, without a read coroutine: aiohttp's parser hands each
        body chunk to a `_Pusher`, which writes the relayed bytes to the client's transport
        in the same callback, so an event costs no task switch and no ASGI message. This
        coroutine only waits for the end. When the client cannot take more, the upstream
        connection is not read until it can (nothing piles up in between), and that pause
        does not count as upstream silence. A fault of the relay itself (not the
        provider's) is raised from here, as `rest()` would raise it.
        """
        content = self.response.content
        with self._relaying() as idle:
            pusher = _Pusher(self, client, on_data, idle)
            pusher.deliver(content.read_nowait())  # what arrived with the head
            if not content.is_eof():
                pusher.attach()
                try:
                    await content.wait_eof()
                finally:
                    pusher.detach()
        tail = self._ending()
        if tail:
            on_data(tail)
            client.write(tail)

    @contextlib.contextmanager
    def _relaying(self) -> Iterator[IdleDeadline]:
        """After the commit: the route's idle deadline instead of aiohttp's read timeout
        (whose last timer lapses at the next chunk), and an upstream fault recorded as
        the stream's `failure` rather than raised."""
        connection = self.response.connection
        if connection is not None and connection.protocol is not None:
            connection.protocol.read_timeout = None
        idle = self._idle = IdleDeadline(self.response.content, self.idle_seconds)
        try:
            with converted_errors():
                yield idle
        except UpstreamError as exc:
            self.failure = exc
        finally:
            idle.cancel()

    def _ending(self) -> bytes:
        """What the client gets after the last relayed byte: the dialect's tail, an
        `event: error` when the upstream failed without saying so, or nothing."""
        if self.failure is None:
            return self._finish()
        if self._stream_error():
            return b""  # the upstream's own error event was relayed
        return error_event(_midstream_error_type(self.failure), self.failure.describe())

    async def aclose(self) -> None:
        if self._idle is not None:  # a cancelled relay's generator may not be closed yet
            self._idle.cancel()
        close_response(self.response)


class _Pusher:
    """Takes the place of a StreamReader's buffer while a relay pushes.

    aiohttp's parser feeds each body chunk to `StreamReader.feed_data`, which appends it
    to `_buffer` and wakes a reader. With this object as the buffer, the append is the
    relay itself: the chunk is relayed and written to the client on the spot, and the
    reader's buffer stays empty (so its size never reaches the high-water mark and its
    per-chunk bookkeeping never grows). Everything else (chunked decoding, gzip, EOF and
    connection errors, which end `wait_eof()`) stays aiohttp's.
    """

    __slots__ = ("_resume", "_saved", "client", "content", "error", "idle", "on_data", "relay")

    def __init__(
        self,
        relay: Relay,
        client: ClientStream,
        on_data: Callable[[bytes], None],
        idle: IdleDeadline,
    ) -> None:
        self.relay = relay
        self.client = client
        self.on_data = on_data
        self.idle = idle
        self.content = relay.response.content
        self.error: BaseException | None = None
        self._saved: Any = None
        self._resume: asyncio.Task[None] | None = None

    def attach(self) -> None:
        self._saved = self.content._buffer
        self.content._buffer = self  # type: ignore[assignment]
        self.idle.waiting_since = self.idle.now()

    def detach(self) -> None:
        self.content._buffer = self._saved
        self.idle.waiting_since = None
        if self._resume is not None:
            self._resume.cancel()

    # the deque's part, as far as StreamReader uses it while nobody reads
    def __len__(self) -> int:
        return 0

    def append(self, chunk: bytes) -> None:
        content = self.content
        content._size = 0
        splits = content._http_chunk_splits
        if splits:
            splits.clear()
        if self.error is None:
            self.idle.waiting_since = self.idle.now()
            try:
                self.deliver(chunk)
            except Exception as exc:  # raised by wait_eof(), so out of push_to()
                self.error = exc  # and nothing more is relayed
                content.set_exception(exc)

    def deliver(self, chunk: bytes) -> None:
        if not chunk:
            return
        data, _ = self.relay._feed(chunk)
        if data:
            self.on_data(data)
            if not self.client.write(data):
                self._hold()

    def _hold(self) -> None:
        """The client is full (or gone): stop reading the upstream until it drains."""
        if self._resume is None or self._resume.done():
            connection = self.relay.response.connection
            if connection is None or connection.protocol is None:
                return
            connection.protocol.pause_reading()
            self.idle.waiting_since = None  # our pause, not upstream silence
            self._resume = asyncio.ensure_future(self._resume_when_drained())

    async def _resume_when_drained(self) -> None:
        await self.client.drain()
        connection = self.relay.response.connection
        if self.client.gone or connection is None or connection.protocol is None:
            return  # the handler is being cancelled; it closes the upstream
        self.idle.waiting_since = self.idle.now()
        connection.protocol.resume_reading()


_DELTA = b"event: content_block_delta\n"


def _only_deltas(chunk: bytes) -> bool:
    """True when `chunk` is whole `content_block_delta` events and nothing else: the
    watch learns nothing from them but "output has begun". Any doubt (another event, a CR,
    an event cut at the chunk's end, "event: " inside some text) answers False and the
    chunk is parsed event by event."""
    return (
        chunk.startswith(_DELTA)
        and chunk.endswith(b"\n\n")
        and chunk.count(b"event: ") == chunk.count(_DELTA)
        and b"\r" not in chunk
    )


class AnthropicRelay(Relay):
    """An Anthropic SSE stream relayed event by event without re-encoding."""

    def __init__(self, response: aiohttp.ClientResponse, **options: Any) -> None:
        super().__init__(response, **options)
        self.watch = StreamWatch()

    def _take(self, chunk: bytes) -> tuple[bytes, bool]:
        if self._decoder.between_events and _only_deltas(chunk):
            return chunk, True  # the bulk of every stream: passed on without parsing
        out = []
        content = False
        for block in self._decoder.blocks(chunk):
            if not block.strip(b"\n"):
                continue
            out.append(block + b"\n\n")  # comments (keep-alives) too, as they came
            if block.startswith(_DELTA):
                content = True  # output; nothing else in it matters to the watch
                continue
            event = parse_block(block)
            if event is not None:
                content = self.watch.observe(event) or content
        return b"".join(out), content

    def _upstream_error(self) -> str | None:
        if self.watch.error_type:
            return f"{self.watch.error_type}: {self.watch.error_message}"
        return None

    def _finish(self) -> bytes:
        if self.watch.error_type:
            self.failure = UpstreamError("stream_error", self._stream_error() or "")
        elif not self.watch.finished:
            self.failure = UpstreamError("reset", "the stream ended before message_stop")
            return error_event("api_error", self.failure.describe())
        return b""

    @property
    def usage(self) -> Any:
        return self.watch.usage


class ConvertedRelay(Relay):
    """An OpenAI Chat Completions stream converted to Anthropic events as it arrives."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        model: str,
        provider: str,
        stop_sequences: Sequence[str] = (),
        input_tokens_hint: int = 0,
        secrets: tuple[str, ...] = (),
        idle: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        super().__init__(response, secrets=secrets, idle=idle)
        self.converter = StreamConverter(
            model=model,
            stop_sequences=stop_sequences,
            provider=provider,
            input_tokens_hint=input_tokens_hint,
        )

    def _take(self, chunk: bytes) -> tuple[bytes, bool]:
        frames: list[bytes] = []
        for event in self._decoder.feed(chunk):
            frames.extend(self.converter.feed(event))
        return b"".join(frames), self.converter.content_started

    def _upstream_error(self) -> str | None:
        error = self.converter.error
        return f"{error[0]}: {error[1]}" if error else None

    def _finish(self) -> bytes:
        frames = [self.converter.feed(event) for event in self._decoder.close()]
        tail = b"".join(b"".join(f) for f in frames) + b"".join(self.converter.close())
        if self.converter.error:
            self.failure = UpstreamError("stream_error", self._stream_error() or "")
        elif not self.converter.finished:
            self.failure = UpstreamError("reset", "the stream ended without a finish reason")
        return tail

    @property
    def usage(self) -> Any:
        return self.converter.usage
