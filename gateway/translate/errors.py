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
