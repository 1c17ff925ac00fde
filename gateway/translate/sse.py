"""Incremental Server-Sent Events decoding and encoding.

The decoder keeps each event's original bytes (`raw`) so that an Anthropic-dialect stream
can be relayed without re-encoding, while the event name and data are available to the
code that watches the stream. Line endings are normalised to LF (CRLF and CR are legal).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event: its `event:` name (or "message"), joined `data:` lines, raw bytes."""

    name: str
    data: str
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.data)


def parse_block(block: bytes) -> Event | None:
    """One event from its raw block (without the blank line); None for comments only."""
    name = "message"
    data_lines: list[str] = []
    for line in block.decode("utf-8", "replace").split("\n"):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            name = value
        elif field == "data":
            data_lines.append(value)
    if not data_lines and name == "message":
        return None  # a comment-only block (keep-alive), nothing to dispatch
    return Event(name, "\n".join(data_lines), block + b"\n\n")


class SSEDecoder:
    """Feed bytes as they arrive; get back the events completed so far."""

    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False

    def _normalise(self, chunk: bytes) -> bytes:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if b"\r" not in chunk:
            return chunk
        if chunk.endswith(b"\r"):
            self._pending_cr = True
            chunk = chunk[:-1]
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def blocks(self, chunk: bytes) -> list[bytes]:
        """The events completed by `chunk`, as raw blocks without their blank line (for
        callers that parse only some of them; see `parse_block`)."""
        buffer = self._buffer + self._normalise(chunk)
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop()
        return blocks

    def feed(self, chunk: bytes) -> list[Event]:
        events = (parse_block(block) for block in self.blocks(chunk))
        return [event for event in events if event is not None]

    def close(self) -> list[Event]:
        """Flush a final event that was not followed by a blank line."""
        self._pending_cr = False
        rest = self._buffer.strip(b"\n")
        self._buffer = b""
        if not rest:
            return []
        event = parse_block(rest)
        return [event] if event is not None else []

    @property
    def between_events(self) -> bool:
        """True when no event has begun: the next chunk starts a new one."""
        return not self._buffer and not self._pending_cr


def encode(name: str, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()
