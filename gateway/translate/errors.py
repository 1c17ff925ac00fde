"""Anthropic error bodies and the status ⇄ error-type mapping.

Every error the gateway answers with, on any path, is built here so that clients (Claude
Code, the SDKs) always get `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import json
from typing import Any

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for_status(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(
    status: int, message: str, error_type: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": error_type or error_type_for_status(status), "message": message},
    }
    if request_id:
        body["request_id"] = request_id
    return body


def error_json(
    status: int, message: str, error_type: str | None = None, request_id: str | None = None
) -> bytes:
    return json.dumps(error_body(status, message, error_type, request_id)).encode()


def error_event(error_type: str, message: str) -> bytes:
    """An SSE `event: error` frame, as Anthropic sends when a stream breaks mid-way."""
    data = json.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return f"event: error\ndata: {data}\n\n".encode()


def upstream_error_message(body: bytes, limit: int = 500) -> str:
    """The human message inside an upstream error body (Anthropic or OpenAI shape)."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:limit].decode("utf-8", "replace").strip()
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:limit]
        if isinstance(err, str):
            return err[:limit]
        if isinstance(parsed.get("message"), str):
            return parsed["message"][:limit]
    return json.dumps(parsed)[:limit]


# OpenAI-dialect errors. An HTTP error's status decides its type; an error reported inside
# a stream (an `{"error": ...}` chunk or `event: error`) has no status of its own, so one
# is read from the error object: a numeric `status_code`/`status`/`code`, else a known
# OpenAI `code`/`type` string, else 500.
_STATUS_BY_OPENAI_CODE = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "tool_use_failed": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "api_error": 500,
    "overloaded_error": 529,
    "service_unavailable": 503,
}


def _status_in_openai_error(err: dict[str, Any]) -> int:
    for key in ("status_code", "status", "code"):
        value = err.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and 400 <= value <= 599:
            return value
    for key in ("code", "type"):
        value = err.get(key)
        if isinstance(value, str) and value in _STATUS_BY_OPENAI_CODE:
            return _STATUS_BY_OPENAI_CODE[value]
    return 500


def anthropic_error_from_openai(status: int, body: bytes) -> tuple[int, str, str]:
    """(status to send, Anthropic error type, message) for an OpenAI-dialect HTTP error.

    The upstream status is kept (a non-error status becomes 502); the type follows it.
    """
    send = status if 400 <= status <= 599 else 502
    message = upstream_error_message(body) or f"upstream answered HTTP {status}"
    return send, error_type_for_status(send), message


def openai_stream_error(payload: Any) -> tuple[str, str]:
    """(Anthropic error type, message) for an error reported inside an OpenAI-dialect stream."""
    err = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(err, dict):
        message = err.get("message")
        if not isinstance(message, str) or not message:
            message = json.dumps(err)[:500]
        return error_type_for_status(_status_in_openai_error(err)), message[:500]
    text = err if isinstance(err, str) else json.dumps(err)
    return "api_error", text[:500] or "upstream reported an error"
