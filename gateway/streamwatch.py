"""What the gateway needs to know about an Anthropic stream it relays untouched.

It looks at event names and parses only the few events that carry usage, stop reasons or
errors, so relaying stays cheap. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gateway.translate.sse import Event

# Content blocks whose start alone is meaningful output (their deltas may be empty).
_CONTENT_START_TYPES = {"tool_use", "server_tool_use", "redacted_thinking"}


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    def update(self, usage: dict[str, Any]) -> None:
        """Take the counts present in an Anthropic `usage` object (later values win)."""
        for attr, key in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_read_tokens", "cache_read_input_tokens"),
            ("cache_creation_tokens", "cache_creation_input_tokens"),
        ):
            value = usage.get(key)
            if isinstance(value, int) and value >= 0:
                setattr(self, attr, value)


@dataclass
class StreamWatch:
    """Follows an Anthropic event stream: first content, usage, stop reason, errors."""

    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    finished: bool = False
    error_type: str | None = None
    error_message: str | None = None

    def observe(self, event: Event) -> bool:
        """Record what this event says; True when it is model output (the commit signal)."""
        name = event.name
        if name == "content_block_delta":
            return True
        if name == "content_block_start":
            return _block_type(event) in _CONTENT_START_TYPES
        if name == "message_start":
            message = _json(event).get("message") or {}
            self.usage.update(message.get("usage") or {})
        elif name == "message_delta":
            payload = _json(event)
            self.usage.update(payload.get("usage") or {})
            self.stop_reason = (payload.get("delta") or {}).get("stop_reason") or self.stop_reason
        elif name == "message_stop":
            self.finished = True
            return True
        elif name == "error":
            error = _json(event).get("error") or {}
            self.error_type = str(error.get("type") or "api_error")
            self.error_message = str(error.get("message") or "upstream stream error")
        return False


def _json(event: Event) -> dict[str, Any]:
    try:
        parsed = json.loads(event.data)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _block_type(event: Event) -> str | None:
    block = _json(event).get("content_block") or {}
    return block.get("type") if isinstance(block, dict) else None


def message_usage(message: dict[str, Any]) -> Usage:
    """Usage of a complete (non-stream) Anthropic message."""
    usage = Usage()
    usage.update(message.get("usage") or {})
    return usage
