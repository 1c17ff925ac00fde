"""Token estimates for when no provider can count for us (count_tokens on OpenAI routes).

About four characters of text per token, counted over the text a model reads (not the
JSON around it), plus a few tokens per message for the role markers; images count as a
typical 1,600. On the one recorded request/answer pair in the fixtures (a 2-message
prompt, 16 input tokens recorded) it says 17; JSON tool schemas tokenise denser than
prose, so large tool lists are counted from their JSON text, which errs high.
"""

from __future__ import annotations

from typing import Any

from gateway import fastjson

CHARS_PER_TOKEN = 4
PER_MESSAGE = 2
IMAGE_TOKENS = 1600


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    return len(fastjson.dumps(value).decode())


def _block_chars(block: Any) -> tuple[int, int]:
    """(text characters, image count) of one content block."""
    if not isinstance(block, dict):
        return _chars(block), 0
    kind = block.get("type")
    if kind == "image":
        return 0, 1
    if kind in ("text", "thinking"):
        return len(str(block.get(kind, ""))), 0
    if kind == "tool_use":
        return len(str(block.get("name", ""))) + _chars(block.get("input", {})), 0
    if kind == "tool_result":
        return _content_chars(block.get("content", ""))
    return _chars({k: v for k, v in block.items() if k != "cache_control"}), 0


def _content_chars(content: Any) -> tuple[int, int]:
    if isinstance(content, str):
        return len(content), 0
    chars = images = 0
    for block in content if isinstance(content, list) else [content]:
        c, i = _block_chars(block)
        chars, images = chars + c, images + i
    return chars, images


def estimate_input_tokens(payload: dict[str, Any]) -> int:
    """Estimate the prompt's tokens: system, messages and tool definitions."""
    chars, images = _content_chars(payload.get("system") or "")
    messages = payload.get("messages")
    messages = messages if isinstance(messages, list) else []
    for message in messages:
        c, i = _content_chars(message.get("content", "") if isinstance(message, dict) else "")
        chars, images = chars + c, images + i
    if payload.get("tools"):
        chars += _chars(payload["tools"])
    text_tokens = -(-chars // CHARS_PER_TOKEN)
    return max(1, text_tokens + PER_MESSAGE * len(messages) + IMAGE_TOKENS * images)
