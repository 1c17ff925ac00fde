"""The content-block half of the stream converter: one Anthropic block open at a time.

Text and thinking stream live; a change of kind closes the open block (a thinking block
closes with a `signature_delta` carrying the synthetic signature). Tool calls are keyed by
the provider's tool_call `index`; id and name come from the first fragment that has them.
A call opens its `tool_use` block at once (closing an open text/thinking block) and
streams its argument fragments live, unless another tool block is open: then it is
buffered (id, name, fragments) until the open call's arguments parse as a complete JSON
object, or until the end of the message. Interleaved parallel calls thus become
separate, contiguous blocks and the grammar stays valid. A call without a name yet
waits for one. Fragments for a call whose block has already closed cannot be placed and
are dropped; a well-formed provider never sends them (a call is closed only once its
arguments are complete JSON, or when text or reasoning follows it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.translate.sse import encode

_START_BLOCK = {
    "text": {"type": "text", "text": ""},
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
}
_DELTA_FIELDS = {
    "text": ("text_delta", "text"),
    "thinking": ("thinking_delta", "thinking"),
    "tool_use": ("input_json_delta", "partial_json"),
}
_json_string = json.JSONEncoder(separators=(",", ":")).encode


def _delta_frame(index: int, kind: str, fragment: str) -> bytes:
    """The per-token frame, formatted directly: the same bytes as `sse.encode`, ~10x faster."""
    delta_type, key = _DELTA_FIELDS[kind]
    return (
        f'event: content_block_delta\ndata: {{"type":"content_block_delta","index":{index},'
        f'"delta":{{"type":"{delta_type}","{key}":{_json_string(fragment)}}}}}\n\n'
    ).encode()


@dataclass(slots=True)
class _ToolCall:
    id: str
    name: str
    pending: list[str] = field(default_factory=list)
    arguments: str = ""
    state: str = "waiting"  # waiting → open → closed


def _complete(arguments: str) -> bool:
    try:
        return isinstance(json.loads(arguments), dict)
    except ValueError:
        return False


class BlockWriter:
    """Turns text, thinking and tool-call fragments into content_block_* frames."""

    def __init__(self, *, signature: str, tool_id: Callable[[int], str]) -> None:
        self._signature = signature
        self._tool_id = tool_id
        self._index = -1
        self._open: str | None = None  # "text" | "thinking" | "tool_use"
        self._open_key = -1
        self._calls: dict[int, _ToolCall] = {}
        self._waiting: list[int] = []
        self.content_started = False
        self.tool_use = False

    def delta(self, kind: str, text: str) -> list[bytes]:
        """A text or thinking fragment."""
        if not text:
            return []
        frames = [] if self._open == kind else self._close() + self._start(kind, _START_BLOCK[kind])
        frames.append(_delta_frame(self._index, kind, text))
        self.content_started = True
        return frames

    def tool_fragment(self, key: int, call_id: str, name: str, arguments: str) -> list[bytes]:
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _ToolCall(call_id, name)
            self._waiting.append(key)
        elif call.state == "waiting":
            call.id = call.id or call_id
            call.name = call.name or name
        if call.state == "open" and arguments:
            call.arguments += arguments
            frames = [self._json_delta(arguments)]
            return frames + self._advance() if self._waiting else frames
        if call.state == "waiting" and arguments:
            call.pending.append(arguments)
        return self._advance()

    def new_key(self) -> int:
        """A key for a tool call the provider sent without an `index`."""
        return max(self._calls, default=-1) + 1

    def last_key(self) -> int:
        return max(self._calls, default=0)

    def finish(self) -> list[bytes]:
        """Close the open block and emit every buffered tool call, in arrival order."""
        frames: list[bytes] = []
        while self._waiting:
            frames += self._close() + self._open_tool(self._waiting.pop(0))
        return frames + self._close()

    def _advance(self) -> list[bytes]:
        frames: list[bytes] = []
        while self._waiting and self._calls[self._waiting[0]].name:
            if self._open == "tool_use" and not _complete(self._calls[self._open_key].arguments):
                break
            frames += self._close() + self._open_tool(self._waiting.pop(0))
        return frames

    def _open_tool(self, key: int) -> list[bytes]:
        call = self._calls[key]
        call.state, self._open_key = "open", key
        block = {"type": "tool_use", "id": call.id or self._tool_id(key), "name": call.name}
        frames = self._start("tool_use", {**block, "input": {}})
        call.arguments, call.pending = "".join(call.pending), []
        if call.arguments:
            frames.append(self._json_delta(call.arguments))
        self.content_started = self.tool_use = True
        return frames

    def _json_delta(self, fragment: str) -> bytes:
        return _delta_frame(self._index, "tool_use", fragment)

    def _start(self, kind: str, block: Mapping[str, object]) -> list[bytes]:
        self._index += 1
        self._open = kind
        return [self._frame("content_block_start", content_block=block)]

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        frames = []
        if self._open == "thinking":
            delta = {"type": "signature_delta", "signature": self._signature}
            frames.append(self._frame("content_block_delta", delta=delta))
        elif self._open == "tool_use":
            self._calls[self._open_key].state = "closed"
        self._open = None
        return [*frames, self._frame("content_block_stop")]

    def _frame(self, name: str, **fields: object) -> bytes:
        return encode(name, {"type": name, "index": self._index, **fields})
