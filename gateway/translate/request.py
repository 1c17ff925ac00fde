"""Anthropic Messages request → OpenAI Chat Completions request.

Pure: no I/O, and the payload is never modified (the result may share strings and tool
schemas with it, so treat both as read-only). The output holds only fields the OpenAI SDK's
`CompletionCreateParams` knows; everything else Anthropic-only is dropped on purpose:
cache_control, context_management, output_config (its `effort` feeds reasoning_effort),
container, service_tier, safeguards, betas, top_k, unknown keys. Messages and content
blocks are converted in `request_content`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from gateway.translate.request_content import ConversionError, convert_messages
from gateway.translate.tool_schema import gemini_schema

__all__ = [
    "ConversionError",
    "OpenAIOptions",
    "reasoning_effort",
    "server_tool_reason",
    "to_openai_request",
]

# Tool types Anthropic executes itself (by prefix of their versioned `type`).
SERVER_TOOL_PREFIXES = (
    "web_search_",
    "web_fetch_",
    "code_execution_",
    "tool_search_tool_",
    "advisor_",
    "mcp_toolset",
)
MAX_STOP_SEQUENCES = 4  # OpenAI rejects more
MAX_USER_LENGTH = 64  # OpenAI rejects a longer `user`
_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


@dataclass(frozen=True)
class OpenAIOptions:
    max_tokens_field: str = "max_tokens"  # or "max_completion_tokens"
    max_output_tokens: int | None = None  # clamp max_tokens to this (route's maxOutputTokens)
    reasoning: bool = False  # route is a reasoning model: thinking -> reasoning_effort
    send_reasoning_content: bool = False  # echo earlier thinking as reasoning_content
    drop_fields: tuple[str, ...] = ()  # top-level OpenAI fields to remove at the end
    strict_tool_schema: bool = False  # rewrite tool schemas to Gemini's accepted subset
    # No Anthropic provider can take this request: send it without the Anthropic-defined
    # tools (server tools such as web_search) instead of refusing it.
    drop_anthropic_tools: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise ValueError(f"max_tokens_field: {self.max_tokens_field!r} is not supported")


def to_openai_request(
    payload: dict[str, Any],
    model: str,
    *,
    stream: bool,
    options: OpenAIOptions = OpenAIOptions(),
) -> dict[str, Any]:
    if options.drop_anthropic_tools:
        payload = _without_anthropic_tools(payload)
    reason = server_tool_reason(payload)
    if reason:
        raise ConversionError(reason)
    send_reasoning = options.send_reasoning_content
    body: dict[str, Any] = {
        "model": model,
        "messages": convert_messages(payload, send_reasoning=send_reasoning),
    }
    body.update(_sampling(payload, options))
    tools = [_function(t, options.strict_tool_schema) for t in payload.get("tools") or ()]
    if tools:
        body["tools"] = tools
        body.update(_tool_choice(payload.get("tool_choice")))
    if options.reasoning:
        effort = reasoning_effort(payload)
        if effort:
            body["reasoning_effort"] = effort
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    for field in options.drop_fields:
        body.pop(field, None)
    return body


def _is_anthropic_tool(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("type") not in (None, "custom")


def _without_anthropic_tools(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload minus Anthropic-defined tools, MCP servers, and a tool_choice that
    named a tool no longer there."""
    tools = payload.get("tools") or []
    if not any(_is_anthropic_tool(t) for t in tools) and not payload.get("mcp_servers"):
        return payload
    kept = [t for t in tools if not _is_anthropic_tool(t)]
    out = {k: v for k, v in payload.items() if k not in ("tools", "mcp_servers")}
    if kept:
        out["tools"] = kept
    choice = payload.get("tool_choice")
    names = {t.get("name") for t in kept if isinstance(t, dict)}
    if (
        isinstance(choice, dict)
        and choice.get("type") == "tool"
        and choice.get("name") not in names
    ):
        out.pop("tool_choice", None)
    return out


def server_tool_reason(payload: dict[str, Any]) -> str | None:
    """Why only an Anthropic provider can serve this request, or None.

    Any tool with a `type` other than "custom" is Anthropic-defined and has no schema in the
    request: server tools (web_search, web_fetch, code_execution, tool_search, advisor,
    mcp_toolset) run at Anthropic, and the client tools and toolsets (bash, text_editor,
    memory, computer, browser) rely on a schema built into Claude. `mcp_servers` (the MCP
    connector) also runs at Anthropic.
    """
    for tool in payload.get("tools") or ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind in (None, "custom"):
            continue
        name = tool.get("name") or kind
        if str(kind).startswith(SERVER_TOOL_PREFIXES):
            return f"needs server tool {name} (Anthropic providers only)"
        return f"needs Anthropic-defined tool {name} (Anthropic providers only)"
    if payload.get("mcp_servers"):
        return "needs MCP connector servers (Anthropic providers only)"
    return None


def reasoning_effort(payload: dict[str, Any]) -> str | None:
    """`reasoning_effort` for a reasoning model, from `thinking` and `output_config.effort`.

    An explicit budget decides (<4096 low, <16384 medium, else high); thinking disabled →
    low; else the effort (xhigh and max → high, the most every provider accepts); adaptive
    thinking without an effort → medium; nothing said → None (the provider's default).
    """
    thinking = payload.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled" and isinstance(thinking, dict):
        budget = thinking.get("budget_tokens") or 0
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    if kind == "disabled":
        return "low"
    config = payload.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    if effort in _EFFORT:
        return _EFFORT[effort]
    return "medium" if kind in ("adaptive", "between_tools") else None


def _sampling(payload: dict[str, Any], options: OpenAIOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    max_tokens = payload.get("max_tokens")
    if isinstance(max_tokens, int):
        if options.max_output_tokens:
            max_tokens = min(max_tokens, options.max_output_tokens)
        out[options.max_tokens_field] = max_tokens
    stop = [s for s in payload.get("stop_sequences") or () if isinstance(s, str) and s]
    if stop:
        out["stop"] = stop[:MAX_STOP_SEQUENCES]
    for field in ("temperature", "top_p"):
        if isinstance(payload.get(field), int | float):
            out[field] = payload[field]
    metadata = payload.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user_id, str) and user_id:
        # Claude Code's user_id is a JSON blob of device and session ids: too long for
        # OpenAI, and not ours to hand out, so long ids go as a stable hash.
        too_long = len(user_id) > MAX_USER_LENGTH
        out["user"] = hashlib.sha256(user_id.encode()).hexdigest() if too_long else user_id
    return out


def _function(tool: dict[str, Any], strict_schema: bool) -> dict[str, Any]:
    """A custom tool as a function. Anthropic-only keys (cache_control, defer_loading,
    input_examples, allowed_callers, eager_input_streaming) are dropped, and so is `strict`:
    OpenAI's strict mode also demands every property be required, which would turn a valid
    Anthropic schema into a 400.
    """
    schema = tool.get("input_schema") or {"type": "object", "properties": {}}
    function: dict[str, Any] = {"name": tool.get("name")}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = gemini_schema(schema) if strict_schema else schema
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if not isinstance(choice, dict):
        return {}
    kind = choice.get("type")
    out: dict[str, Any] = {}
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False
    return out
