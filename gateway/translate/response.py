"""An OpenAI chat completion as an Anthropic Message, and the field readers shared with the
stream converter (so a streamed and a non-streamed answer convert by the same rules).

Decisions (documented once, here):
- Reasoning (`reasoning_content`, else `reasoning`, else `reasoning_details[].text` /
  `.summary`, plus Mistral `{"type": "thinking"}` content parts) becomes thinking blocks
  placed before the text, signed with a synthetic signature so that the proxy can drop
  them before a request goes to an Anthropic provider. Provider signatures (OpenRouter
  `reasoning_details[].signature`, Gemini `thought_signature`) are not carried over.
- `refusal` becomes ordinary text; the stop reason still follows `finish_reason` (an
  OpenAI refusal is the model declining, not Anthropic's classifier `refusal`).
- Tool call ids are kept; a missing or empty one (Gemini) becomes `toolu_` + a hash of
  the message id and the call's position, deterministic for a given upstream answer.
- Arguments that are not a JSON object are kept as `{INVALID_ARGUMENTS_KEY: raw}` so the
  client's schema check fails visibly and the model can retry; empty arguments are `{}`.
- Stop sequences: OpenAI strips the matched sequence and reports plain `stop`. It is
  detected only when the provider names it (vLLM `stop_reason`, SGLang `matched_stop`)
  or leaves it at the end of the text (not stripped); otherwise the answer is `end_turn`.
- `stop` with tool calls present is `tool_use` (Gemini's compat endpoint does that).
- n > 1: choice index 0 only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.translate.thinking import synthetic_signature
from gateway.translate.usage import Usage, anthropic_usage, usage_from_openai

INVALID_ARGUMENTS_KEY = "_raw_arguments"

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def message_id(completion_id: Any, fallback: str) -> str:
    """`msg_` + the provider's id; a hash of `fallback` when the provider sent none."""
    if isinstance(completion_id, str) and completion_id:
        return f"msg_{completion_id}"
    return f"msg_{_digest(fallback)}"


def tool_use_id(provider_id: Any, message: str, position: int) -> str:
    if isinstance(provider_id, str) and provider_id:
        return provider_id
    return f"toolu_{_digest(f'{message}:{position}')}"


def first_choice(choices: Any) -> Mapping[str, Any] | None:
    """Choice 0 (a missing `index` counts as 0); other choices of an n > 1 request are ignored."""
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def reasoning_text(part: Mapping[str, Any]) -> str:
    """One source only: providers such as OpenRouter mirror the same text in several fields."""
    for key in ("reasoning_content", "reasoning"):
        value = part.get(key)
        if isinstance(value, str) and value:
            return value
    details = part.get("reasoning_details")
    if not isinstance(details, list):
        return ""
    texts = []
    for detail in details:
        if isinstance(detail, dict):
            value = detail.get("text") or detail.get("summary")
            if isinstance(value, str):
                texts.append(value)
    return "".join(texts)


def _thinking_part_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_thinking_part_text(v.get("text", "")) for v in value if isinstance(v, dict))
    return ""


def content_pieces(content: Any) -> list[tuple[str, str]]:
    """(`"text"` | `"thinking"`, text) pieces of a `content` string or parts array (Mistral)."""
    if isinstance(content, str):
        return [("text", content)] if content else []
    if not isinstance(content, list):
        return []
    pieces = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "thinking":
            pieces.append(("thinking", _thinking_part_text(part.get("thinking"))))
        elif part.get("type") == "text" and isinstance(part.get("text"), str):
            pieces.append(("text", part["text"]))
    return [piece for piece in pieces if piece[1]]


def parse_arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return dict(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        parsed = None
    return parsed if isinstance(parsed, dict) else {INVALID_ARGUMENTS_KEY: raw}


def matched_stop(choice: Mapping[str, Any], stop_sequences: Sequence[str]) -> str | None:
    for key in ("stop_reason", "matched_stop"):
        value = choice.get(key)
        if isinstance(value, str) and value in stop_sequences:
            return value
    return None


def anthropic_stop(
    finish_reason: Any,
    *,
    tool_use: bool,
    matched: str | None = None,
    text: str = "",
    stop_sequences: Sequence[str] = (),
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI `finish_reason`; unknown values end the turn."""
    mapped = _STOP_REASONS.get(finish_reason if isinstance(finish_reason, str) else "", "end_turn")
    if mapped != "end_turn":
        return mapped, None
    if tool_use:
        return "tool_use", None
    if matched is None:
        endings = [s for s in stop_sequences if s and text.endswith(s)]
        matched = max(endings, key=len) if endings else None
    return ("stop_sequence", matched) if matched is not None else ("end_turn", None)


def _merged(pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    merged: list[tuple[str, str]] = []
    for kind, text in pieces:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        elif text:
            merged.append((kind, text))
    return merged


def _text_blocks(message: Mapping[str, Any], provider: str) -> list[dict[str, Any]]:
    pieces = [("thinking", reasoning_text(message)), *content_pieces(message.get("content"))]
    refusal = message.get("refusal")
    if isinstance(refusal, str):
        pieces.append(("text", refusal))
    signature = synthetic_signature(provider)
    return [
        {"type": "thinking", "thinking": text, "signature": signature}
        if kind == "thinking"
        else {"type": "text", "text": text}
        for kind, text in _merged(pieces)
    ]


def _tool_blocks(message: Mapping[str, Any], msg_id: str) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    blocks = []
    for position, call in enumerate(calls if isinstance(calls, list) else []):
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_use_id(call.get("id"), msg_id, position),
                "name": name if isinstance(name, str) else "",
                "input": parse_arguments(function.get("arguments")),
            }
        )
    return blocks


def to_anthropic_message(
    completion: Mapping[str, Any], *, stop_sequences: Sequence[str] = (), provider: str = ""
) -> dict[str, Any]:
    """The Anthropic Message for a (successful) OpenAI chat completion body."""
    upstream_id = completion.get("id")
    msg_id = message_id(upstream_id, "" if upstream_id else json.dumps(completion, sort_keys=True))
    choice = first_choice(completion.get("choices")) or {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    text_blocks = _text_blocks(message, provider)
    tool_blocks = _tool_blocks(message, msg_id)
    text = "".join(b["text"] for b in text_blocks if b["type"] == "text")
    stop_reason, stop_sequence = anthropic_stop(
        choice.get("finish_reason"),
        tool_use=bool(tool_blocks),
        matched=matched_stop(choice, stop_sequences),
        text=text,
        stop_sequences=stop_sequences,
    )
    model = completion.get("model")
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model if isinstance(model, str) else "",
        "content": text_blocks + tool_blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(usage_from_openai(completion.get("usage")) or Usage()),
    }
