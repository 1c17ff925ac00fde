"""Token estimates for when no provider can count for us.

A rough rule (about four characters of JSON text per token) is honest about being an
estimate and errs towards counting high, which is the safe side for context checks.
"""

from __future__ import annotations

import json
from typing import Any

CHARS_PER_TOKEN = 4


def _text_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def estimate_input_tokens(payload: dict[str, Any]) -> int:
    """Estimate the prompt's tokens: system, messages and tool definitions."""
    size = 0
    for key in ("system", "messages", "tools"):
        if payload.get(key):
            size += _text_size(payload[key])
    return max(1, -(-size // CHARS_PER_TOKEN))
