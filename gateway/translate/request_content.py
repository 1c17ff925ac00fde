"""Anthropic `system` and `messages` → Chat Completions `messages`.

Pure: no I/O. Texts the model wrote (assistant text, thinking) are joined with "" because
they are one output split into blocks; texts the client supplied (system, user, tool
results, documents) are joined with "\\n".

Block by block:
- text → text (empty ones dropped); image base64/url → `image_url` part (data URL for base64);
  an image or document given as an Anthropic Files API `file_id` → ConversionError, since no
  other provider can read it.
- document: plain-text or content source → text headed "[document: title]"; base64 PDF →
  a `file` part (`file_data` data URL, which the SDK's user-message type allows); PDF by
  URL → a text note with the URL, as Chat Completions takes PDFs only inline.
- assistant tool_use → `tool_calls`; thinking → `reasoning_content` only when asked
  (DeepSeek-style tool loops), else dropped; redacted_thinking dropped.
- user tool_result → `tool` messages right after the assistant turn, before the rest of that
  user turn; is_error → content prefixed "Error: "; images and PDFs inside a result move to
  the following user message (tool messages carry text only), introduced by a line naming
  the tool call, and the tool message says so.
- Blocks that record Anthropic-side work (server tool calls and results, container uploads,
  fallback markers) are dropped; any other unknown block type → ConversionError.
"""

from __future__ import annotations

import json
from typing import Any

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"

# Anthropic-side records that a Chat Completions model can neither use nor continue.
_ANTHROPIC_ONLY = frozenset(
    {
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "advisor_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "mcp_tool_listing",
        "container_upload",
        "browser_state",
        "fallback",
    }
)

Part = dict[str, Any]
Message = dict[str, Any]


class ConversionError(ValueError):
    """The request cannot be expressed for an OpenAI-dialect provider; the message says why."""


def convert_messages(payload: dict[str, Any], *, send_reasoning: bool) -> list[Message]:
    out: list[Message] = []
    system = system_text(payload.get("system"), where="system", drop_billing=True)
    if system:
        out.append({"role": "system", "content": system})
    tool_names: dict[str, str] = {}
    messages = payload.get("messages")
    if not isinstance(messages, list):
        raise ConversionError("messages: must be a list")
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise ConversionError(f"{where}: must be an object")
        role, content = message.get("role"), message.get("content")
        if role == "user":
            out += _user(_blocks(content, where), tool_names, where)
        elif role == "assistant":
            out += _assistant(_blocks(content, where), tool_names, send_reasoning, where)
        elif role == "system":
            text = system_text(content, where=where)
            if text:
                out.append({"role": "system", "content": text})
        else:
            raise ConversionError(f"{where}.role: {role!r} is not user, assistant or system")
    return out


def system_text(content: Any, *, where: str, drop_billing: bool = False) -> str:
    """The text of a system prompt or system message (a string or text blocks)."""
    texts = []
    for j, block in enumerate(_blocks(content, where)):
        if block.get("type") != "text":
            raise ConversionError(f"{where}.{j}: system content must be text blocks")
        text = block.get("text") or ""
        # Claude Code's per-request billing line: meaningless elsewhere, and it would
        # change the very start of the prompt, defeating the provider's prefix cache.
        if drop_billing and text.startswith(BILLING_HEADER_PREFIX):
            continue
        if text:
            texts.append(text)
    return "\n".join(texts)


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        return []
    if not isinstance(content, list) or not all(
        isinstance(b, dict) and isinstance(b.get("type"), str) for b in content
    ):
        raise ConversionError(f"{where}.content: expected a string or a list of content blocks")
    return content


def _user(blocks: list[dict[str, Any]], tool_names: dict[str, str], where: str) -> list[Message]:
    tool_messages: list[Message] = []
    moved: list[Part] = []  # media out of tool results, shown to the model as user content
    parts: list[Part] = []
    for j, block in enumerate(blocks):
        if block["type"] == "tool_result":
            message, media = _tool_result(block, tool_names, f"{where}.content.{j}")
            tool_messages.append(message)
            moved += media
        else:
            parts += _parts(block, f"{where}.content.{j}")
    parts = moved + parts
    if parts:
        return [*tool_messages, {"role": "user", "content": _content(parts)}]
    return tool_messages


def _assistant(
    blocks: list[dict[str, Any]], tool_names: dict[str, str], send_reasoning: bool, where: str
) -> list[Message]:
    texts, thoughts, calls = _assistant_pieces(blocks, tool_names, where)
    message: Message = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    reasoning = "".join(thoughts) if send_reasoning else ""
    if reasoning:
        message["reasoning_content"] = reasoning
    if message["content"] is None and not calls:
        if not reasoning:
            return []  # nothing left to say, e.g. only redacted thinking
        message["content"] = ""
    return [message]


def _assistant_pieces(
    blocks: list[dict[str, Any]], tool_names: dict[str, str], where: str
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block["type"]
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append(_tool_call(block))
            tool_names[str(block.get("id"))] = str(block.get("name"))
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
        elif kind == "compaction":
            texts.append(block.get("content") or "")
        elif kind not in _ANTHROPIC_ONLY:
            raise ConversionError(f"{where}.content.{j}: {kind} blocks cannot be converted")
    return texts, thoughts, calls


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments},
    }


def _tool_result(
    block: dict[str, Any], tool_names: dict[str, str], where: str
) -> tuple[Message, list[Part]]:
    call_id = block.get("tool_use_id")
    content = block.get("content")
    parts: list[Part] = []
    for j, inner in enumerate(_blocks(content, where)):
        parts += _parts(inner, f"{where}.content.{j}")
    texts = [p["text"] for p in parts if p["type"] == "text"]
    media = [p for p in parts if p["type"] != "text"]
    if media:
        texts.append(f"[{len(media)} attachment(s) from this result follow in the next message]")
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    message = {"role": "tool", "tool_call_id": call_id, "content": text or "(no output)"}
    if not media:
        return message, []
    name = tool_names.get(str(call_id), "tool")
    intro: Part = {"type": "text", "text": f"Attachments returned by {name} (call {call_id}):"}
    return message, [intro, *media]


def _parts(block: dict[str, Any], where: str) -> list[Part]:
    """User-side content: text, images, documents and search results, as content parts."""
    kind = block["type"]
    if kind == "text":
        text = block.get("text") or ""
        return [_text(text)] if text else []
    if kind == "image":
        return [_image(block.get("source") or {}, where)]
    if kind == "document":
        return _document(block, where)
    if kind == "search_result":
        inner = "\n".join(b.get("text") or "" for b in block.get("content") or ())
        head = f"[search result: {block.get('title', '')} ({block.get('source', '')})]"
        return [_text(f"{head}\n{inner}")]
    if kind in ("tool_reference", "tool_addition", "tool_removal"):
        return [_text(_tool_notice(block))]
    if kind in _ANTHROPIC_ONLY or kind == "thinking":
        return []
    raise ConversionError(f"{where}: {kind} blocks cannot be converted")


def _image(source: dict[str, Any], where: str) -> Part:
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url":
        url = str(source.get("url"))
    elif kind == "file":
        raise ConversionError(f"{where}: an image given as an Anthropic file_id cannot be sent")
    else:
        raise ConversionError(f"{where}: unknown image source {kind!r}")
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: dict[str, Any], where: str) -> list[Part]:
    source = block.get("source") or {}
    kind = source.get("type")
    title = block.get("title") or ""
    head = f"[document: {title}]" if title else "[document]"
    if block.get("context"):
        head += f"\n{block['context']}"
    if kind == "text":
        return [_text(f"{head}\n{source.get('data') or ''}")]
    if kind == "content":
        inner = [
            p
            for j, b in enumerate(_blocks(source.get("content"), where))
            for p in _parts(b, f"{where}.{j}")
        ]
        return [_text(head), *inner]
    if kind == "base64":
        data_url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        file = {"filename": f"{title or 'document'}.pdf", "file_data": data_url}
        return [{"type": "file", "file": file}]
    if kind == "url":
        return [_text(f"{head}\n(PDF at {source.get('url')}; not attached)")]
    if kind == "file":
        raise ConversionError(f"{where}: a document given as an Anthropic file_id cannot be sent")
    raise ConversionError(f"{where}: unknown document source {kind!r}")


def _tool_notice(block: dict[str, Any]) -> str:
    if block["type"] == "tool_reference":
        return f"[tool {block.get('tool_name')} is available]"
    tool = block.get("tool") or {}
    name = tool.get("name") or tool.get("server_name") or "?"
    if block["type"] == "tool_addition":
        return f"[tool {name} is available from here on]"
    return f"[tool {name} is no longer available]"


def _text(text: str) -> Part:
    return {"type": "text", "text": text}


def _content(parts: list[Part]) -> str | list[Part]:
    """A plain string when there is only text (what every provider accepts), else parts."""
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts
