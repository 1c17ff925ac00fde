"""Rewrite the `model` of a raw JSON request body without re-serialising the rest.

Anthropic-dialect providers receive the client's bytes unchanged apart from the model
name: prompt caches and signatures depend on exact content, and it is cheaper.
"""

from __future__ import annotations

import json
import re

# A JSON string token, or one structural character.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:,]', re.DOTALL)
# The common case: "model" is the object's first key (Claude Code and the SDKs do this).
_LEADING_MODEL = re.compile(rb'\A\s*\{\s*"model"\s*:\s*("(?:[^"\\]|\\.)*")', re.DOTALL)


def _encode(value: str) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _top_level_model_span(raw: bytes) -> tuple[int, int] | None:
    """Byte span of the last top-level `"model"` string value, or None."""
    depth = 0
    span = None
    previous = b""
    want_value = False
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if want_value and token.startswith(b'"'):
            span = match.span()
        want_value = False
        if token in (b"{", b"["):
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
        elif token == b":":
            want_value = depth == 1 and previous == b'"model"'
        previous = token
    return span


def replace_model(raw: bytes, current: str, new: str) -> bytes:
    """`raw` with its top-level model value replaced by `new` (raw unchanged if equal)."""
    if current == new:
        return raw
    leading = _LEADING_MODEL.match(raw)
    if leading and json.loads(leading.group(1)) == current:
        start, end = leading.span(1)
        return raw[:start] + _encode(new) + raw[end:]
    span = _top_level_model_span(raw)
    if span is not None and json.loads(raw[span[0] : span[1]]) == current:
        return raw[: span[0]] + _encode(new) + raw[span[1] :]
    payload = json.loads(raw)
    payload["model"] = new
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
