"""After the commit a stream's idle deadline is one timer per period, not aiohttp's timer
per chunk: it fails the pending read after that much upstream silence, and time spent
handing bytes to the client (not waiting for the upstream) does not count as silence."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.client_proto import ResponseHandler

from gateway.relay import IdleDeadline


@pytest.fixture
async def reader() -> AsyncIterator[aiohttp.StreamReader]:
    """A response body reader on a connected socket, as the relay reads one."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, protocol = await loop.create_connection(lambda: ResponseHandler(loop), sock=ours)
    yield aiohttp.StreamReader(protocol, 2**16, loop=loop)
    transport.close()
    theirs.close()


async def test_a_read_waiting_longer_than_the_deadline_fails(
    reader: aiohttp.StreamReader,
) -> None:
    deadline = IdleDeadline(reader, 0.05)
    deadline.waiting_since = deadline.now()
    with pytest.raises(aiohttp.SocketTimeoutError, match=r"no data from the provider for 0\.05s"):
        await asyncio.wait_for(reader.readany(), 5)


async def test_time_away_from_the_upstream_is_not_silence(reader: aiohttp.StreamReader) -> None:
    deadline = IdleDeadline(reader, 0.05)
    await asyncio.sleep(0.3)  # the relay is busy writing to a slow client meanwhile
    reader.feed_data(b"event: ping\n\n")
    deadline.waiting_since = deadline.now()
    assert await reader.readany() == b"event: ping\n\n"
    deadline.cancel()
    await asyncio.sleep(0.1)
    reader.feed_data(b"more")
    assert await reader.readany() == b"more", "a cancelled deadline never fires"
