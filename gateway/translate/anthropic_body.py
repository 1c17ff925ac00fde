"""Adaptations of an Anthropic request body for an Anthropic-dialect provider.

Pure. `adapt` answers None when the body can go as the client sent it, so the caller
forwards the original bytes untouched; otherwise it builds a new dict and leaves the
payload as it was (unchanged parts are shared, not copied).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from gateway.translate.thinking import is_synthetic_signature


@dataclass(frozen=True)
class AnthropicOptions:
    hoist_system_messages: bool = False  # move role:"system" messages into top-level system
    drop_fields: tuple[str, ...] = ()  # top-level fields the provider rejects


def adapt(payload: dict[str, Any], options: AnthropicOptions) -> dict[str, Any] | None:
    """The body this provider needs, or None when that is the payload itself.

    - Thinking blocks with a synthetic signature (made from an OpenAI provider's reasoning)
      leave the assistant messages: Anthropic would reject the signature. A message left
      empty goes too. (With thinking on, a tool loop whose assistant turn lost its thinking
      is one Anthropic itself treats as thinking toggled mid-turn.)
    - With `hoist_system_messages`, role "system" messages move, in order, to the end of the
      top-level `system`, which stays a string unless blocks are needed; existing blocks,
      cache_control included, are kept as they are.
    - Tool ids another provider made up (e.g. Kimi's `functions.read:0`) are rewritten
      to Anthropic's `[a-zA-Z0-9_-]+`, the same way in tool_use and tool_result.
    - `drop_fields` are removed.
    """
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return None
    kept = _with_valid_tool_ids(_without_synthetic_thinking(messages))
    hoisted: list[Any] = []
    if options.hoist_system_messages and _has_system_messages(kept):
        hoisted = [m.get("content") for m in kept if _is_system(m)]
        kept = [m for m in kept if not _is_system(m)]
    dropped = [f for f in options.drop_fields if f in payload]
    if kept is messages and not hoisted and not dropped:
        return None
    body = {k: v for k, v in payload.items() if k not in dropped}
    body["messages"] = kept
    if hoisted:
        body["system"] = _append_system(payload.get("system"), hoisted)
    return body


def filter_betas(value: str, drop: tuple[str, ...], allowed: tuple[str, ...] | None) -> str | None:
    """The `anthropic-beta` header value to send on, or None to send none.

    Entries in `drop` (shell-style patterns, e.g. "context-management-*") are removed; when
    `allowed` is given, only entries matching it stay. Order is kept, duplicates go.
    """
    kept: list[str] = []
    for beta in (b.strip() for b in value.split(",")):
        if not beta or beta in kept or _matches(beta, drop):
            continue
        if allowed is None or _matches(beta, allowed):
            kept.append(beta)
    return ",".join(kept) or None


def _matches(beta: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(beta, p) for p in patterns)


def _without_synthetic_thinking(messages: list[Any]) -> list[Any]:
    """`messages` itself when no assistant message has a synthetic thinking block."""
    if not any(_synthetic_blocks(m) for m in messages):
        return messages
    out = []
    for message in messages:
        if not _synthetic_blocks(message):
            out.append(message)
            continue
        content = [b for b in message["content"] if not _is_synthetic_thinking(b)]
        if content:
            out.append({**message, "content": content})
    return out


def _synthetic_blocks(message: Any) -> bool:
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return False
    content = message.get("content")
    return isinstance(content, list) and any(_is_synthetic_thinking(b) for b in content)


def _is_synthetic_thinking(block: Any) -> bool:
    return (
        isinstance(block, dict)
        and block.get("type") == "thinking"
        and is_synthetic_signature(block.get("signature"))
    )


def _is_system(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "system"


def _has_system_messages(messages: list[Any]) -> bool:
    return any(_is_system(m) for m in messages)


def _append_system(system: Any, contents: list[Any]) -> str | list[Any]:
    """`system` followed by each hoisted content: a string if all are strings, else blocks."""
    parts = [system, *contents] if system else contents
    if all(isinstance(p, str) for p in parts):
        return "\n\n".join(p for p in parts if p)
    blocks: list[Any] = []
    for part in parts:
        if isinstance(part, str):
            if part:
                blocks.append({"type": "text", "text": part})
        elif isinstance(part, list):
            blocks += part
    return blocks


_TOOL_ID_OK = re.compile(r"[a-zA-Z0-9_-]+")
_TOOL_ID_BAD_CHAR = re.compile(r"[^a-zA-Z0-9_-]")
_ID_KEYS = {"tool_use": "id", "tool_result": "tool_use_id"}


def _bad_id(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") not in _ID_KEYS:
        return False
    value = block.get(_ID_KEYS[block["type"]])
    return isinstance(value, str) and not _TOOL_ID_OK.fullmatch(value)


def _fixed_block(block: Any) -> Any:
    if not _bad_id(block):
        return block
    key = _ID_KEYS[block["type"]]
    return {**block, key: _TOOL_ID_BAD_CHAR.sub("_", block[key]) or "toolu_"}


def _with_valid_tool_ids(messages: list[Any]) -> list[Any]:
    """`messages` itself unless a tool id has characters Anthropic rejects."""

    def blocks(message: Any) -> list[Any]:
        content = message.get("content") if isinstance(message, dict) else None
        return content if isinstance(content, list) else []

    if not any(_bad_id(b) for m in messages for b in blocks(m)):
        return messages
    return [
        {**m, "content": [_fixed_block(b) for b in blocks(m)]}
        if any(map(_bad_id, blocks(m)))
        else m
        for m in messages
    ]
