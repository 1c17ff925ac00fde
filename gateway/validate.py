"""Checks on the client's request body, each failure a precise Anthropic 400."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway import fastjson


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class MessagesBody:
    payload: dict[str, Any]
    model: str
    stream: bool


def _load(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise BadRequest("the request body is empty; expected a JSON object")
    try:
        payload = fastjson.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest("the request body is not valid UTF-8") from exc
    except ValueError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("the request body is nested too deeply") from exc
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    if fastjson.too_deep(payload):
        raise BadRequest(
            f"the request body is nested too deeply (over {fastjson.MAX_DEPTH} levels)"
        )
    return payload


def _require_model(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if model is None:
        raise BadRequest("model: Field required")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("model: must be a non-empty string")
    return model


def _require_messages(payload: dict[str, Any]) -> None:
    messages = payload.get("messages")
    if messages is None:
        raise BadRequest("messages: Field required")
    if not isinstance(messages, list):
        raise BadRequest("messages: must be a list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages.{i}: must be an object")
        if "role" not in message or "content" not in message:
            raise BadRequest(f"messages.{i}: needs `role` and `content`")


# Optional fields the proxy itself reads (routing, conversion): the type the Messages API
# gives each, and how to say it. Anything else is the provider's to judge.
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "system": ((str, list), "a string or a list of content blocks"),
    "tools": ((list,), "a list"),
    "stop_sequences": ((list,), "a list"),
    "tool_choice": ((dict,), "an object"),
    "thinking": ((dict,), "an object"),
    "metadata": ((dict,), "an object"),
    "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number"),
    "top_k": ((int, float), "a number"),
}
_ITEM_TYPES: dict[str, tuple[type, str]] = {
    "tools": (dict, "an object"),
    "stop_sequences": (str, "a string"),
}


def _check_types(payload: dict[str, Any]) -> None:
    for name, (types, what) in _FIELD_TYPES.items():
        value = payload.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise BadRequest(f"{name}: must be {what}")
    for name, (item_type, what) in _ITEM_TYPES.items():
        for i, item in enumerate(payload.get(name) or ()):
            if not isinstance(item, item_type):
                raise BadRequest(f"{name}.{i}: must be {what}")


def messages_body(body: bytes) -> MessagesBody:
    """POST /v1/messages: model, messages and max_tokens are required."""
    payload = _load(body)
    model = _require_model(payload)
    _require_messages(payload)
    _check_types(payload)
    max_tokens = payload.get("max_tokens")
    if max_tokens is None:
        raise BadRequest("max_tokens: Field required")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("max_tokens: must be a positive integer")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream: must be a boolean")
    return MessagesBody(payload, model, stream)


def count_tokens_body(body: bytes) -> MessagesBody:
    """POST /v1/messages/count_tokens: model and messages are required."""
    payload = _load(body)
    model = _require_model(payload)
    _require_messages(payload)
    _check_types(payload)
    return MessagesBody(payload, model, False)
