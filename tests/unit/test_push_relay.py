"""The push relay takes aiohttp's body chunks after its decoding: a gzip-compressed,
chunked stream (which the fakes never send) arrives at the client as the provider's
plain events, byte for byte, and a stream cut mid-way ends with an `event: error`."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from gateway.relay import AnthropicRelay

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "anthropic"
STREAM = (FIXTURE / "anthropic-stream-text.sse").read_bytes()


class Collector:
    """A client stream that takes everything (the part of ClientStream a relay uses)."""

    ready = True
    gone = False

    def __init__(self) -> None:
        self.received = bytearray()

    def write(self, data: bytes) -> bool:
        self.received += data
        return True

    async def drain(self) -> None:
        pass


def gzip_pieces(events: list[bytes]) -> list[bytes]:
    """Each event compressed and flushed on its own, as a server streaming gzip sends it."""
    packer = zlib.compressobj(wbits=31)
    pieces = [packer.compress(event) + packer.flush(zlib.Z_SYNC_FLUSH) for event in events]
    pieces[-1] += packer.flush()
    return pieces


Serve = Callable[[asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def provider() -> AsyncIterator[Callable[[Serve], Awaitable[str]]]:
    """Starts a one-answer HTTP server on loopback; returns its URL."""
    servers: list[asyncio.Server] = []

    async def start(serve: Serve) -> str:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await serve(writer)

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/messages"

    yield start
    for server in servers:
        server.close()


async def chunked(writer: asyncio.StreamWriter, pieces: list[bytes], *, end: bool) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"content-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    for piece in pieces:
        writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
        await writer.drain()
        await asyncio.sleep(0.01)  # one piece per read, as a model's tokens come
    if end:
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    writer.close()


def events_of(stream: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in stream.strip().split(b"\n\n")]


async def relay_all(url: str) -> tuple[bytes, AnthropicRelay]:
    async with aiohttp.ClientSession() as session, session.post(url, json={}) as response:
        relay = AnthropicRelay(response)
        head = await relay.until_commit()
        client = Collector()
        await relay.push_to(client, lambda data: None)
        return head + bytes(client.received), relay


async def test_a_gzip_chunked_stream_arrives_decoded_and_whole(
    provider: Callable[[Serve], Awaitable[str]],
) -> None:
    pieces = gzip_pieces(events_of(STREAM))
    url = await provider(lambda writer: chunked(writer, pieces, end=True))
    relayed, relay = await relay_all(url)
    assert relayed == b"".join(events_of(STREAM))
    assert relay.failure is None
    assert relay.usage.output_tokens > 0


async def test_a_stream_cut_before_its_end_ends_with_an_error_event(
    provider: Callable[[Serve], Awaitable[str]],
) -> None:
    events = events_of(STREAM)
    pieces = gzip_pieces(events)[: len(events) - 2]  # no message_delta, no message_stop
    url = await provider(lambda writer: chunked(writer, pieces, end=False))
    relayed, relay = await relay_all(url)
    sent = b"".join(events[: len(events) - 2])
    assert relayed.startswith(sent)
    assert relayed[len(sent) :].startswith(b"event: error\n")
    assert relay.failure is not None and relay.failure.kind == "reset"
