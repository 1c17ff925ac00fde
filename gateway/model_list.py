"""GET /v1/models in Anthropic's list format, from the snapshot's routes.

The ids are what a client can ask for: exact aliases and upstream model names.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from gateway.snapshot import Snapshot
from gateway.translate.errors import error_body

CREATED_AT = "1970-01-01T00:00:00Z"
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000


def model_ids(snapshot: Snapshot) -> list[str]:
    ids: dict[str, None] = {}
    for route in snapshot.routes:
        if not (route.enabled and route.provider.enabled):
            continue
        if "*" not in route.alias:
            ids[route.alias] = None
        ids[route.name] = None
    return list(ids)


def _window(ids: list[str], after: str | None, before: str | None) -> list[str]:
    if after in ids:
        return ids[ids.index(after) + 1 :]
    if before in ids:
        return ids[: ids.index(before)]
    return ids


def model_page(snapshot: Snapshot, query: str) -> tuple[int, dict[str, Any]]:
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    try:
        limit = int(params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        return 400, error_body(400, "limit: must be an integer")
    if not 1 <= limit <= MAX_LIMIT:
        return 400, error_body(400, f"limit: must be between 1 and {MAX_LIMIT}")
    window = _window(model_ids(snapshot), params.get("after_id"), params.get("before_id"))
    if "before_id" in params and "after_id" not in params:
        page, has_more = window[-limit:], len(window) > limit
    else:
        page, has_more = window[:limit], len(window) > limit
    data = [
        {"type": "model", "id": mid, "display_name": mid, "created_at": CREATED_AT} for mid in page
    ]
    return 200, {
        "data": data,
        "has_more": has_more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
