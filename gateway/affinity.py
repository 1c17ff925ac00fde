"""Session affinity: a conversation keeps the route that served it last, while healthy,
so that the provider's prompt cache keeps working.

Sessions are keyed by Claude Code's `x-claude-code-session-id` header or, failing that,
the request's `metadata.user_id`. In-process, bounded, and forgetful after an hour.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

Key = tuple[str, str]
SESSION_HEADER = b"x-claude-code-session-id"


def session_of(headers: Mapping[bytes, bytes], payload: Mapping[str, Any]) -> str | None:
    raw = headers.get(SESSION_HEADER)
    if raw:
        return "s:" + raw.decode("latin-1")[:200]
    metadata = payload.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return "u:" + user[:500] if isinstance(user, str) and user else None


class AffinityTable:
    def __init__(
        self,
        capacity: int = 10_000,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._routes: OrderedDict[str, tuple[Key, float]] = OrderedDict()
        self._capacity = capacity
        self._ttl = ttl
        self._clock = clock

    def get(self, session: str | None) -> Key | None:
        if session is None:
            return None
        found = self._routes.get(session)
        if found is None:
            return None
        if self._clock() - found[1] > self._ttl:
            del self._routes[session]
            return None
        return found[0]

    def remember(self, session: str | None, key: Key) -> None:
        if session is None:
            return
        self._routes[session] = (key, self._clock())
        self._routes.move_to_end(session)
        while len(self._routes) > self._capacity:
            self._routes.popitem(last=False)

    def forget(self, session: str | None) -> None:
        if session is not None:
            self._routes.pop(session, None)
