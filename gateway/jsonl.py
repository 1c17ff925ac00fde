"""`serve --log-file PATH`: every request as one JSON line, written off the request path.

The request path only puts the finished entry on a queue (logging's QueueHandler); a
listener thread turns it into JSON and appends it to a size-rotated file. Secrets are
redacted before anything is written: credential headers, and key-like strings anywhere
in the headers and bodies. Bodies are capped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import re
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "proxy-authorization", "cookie", "set-cookie", "api-key"}
)
# Key-shaped strings: sk-..., sk-ant-..., Bearer tokens, and our own sk-ap- keys.
_KEY_LIKE = re.compile(r"(?i)\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{12,}|\bBearer\s+[A-Za-z0-9._\-]{12,}")


def redact_text(text: str) -> str:
    return _KEY_LIKE.sub(REDACTED, text)


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {
        name: REDACTED if name.lower() in SECRET_HEADERS else redact_text(value)
        for name, value in headers.items()
    }


def capped(body: bytes | str | None, limit: int) -> str | None:
    """A body as text, cut to `limit` characters, secrets redacted."""
    if body is None:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if len(text) > limit:
        text = text[:limit] + f"... [{len(text) - limit} more characters]"
    return redact_text(text)


def entry_record(entry: Any) -> dict[str, Any]:
    """The JSON object of one request: a flat, jq-friendly view of a logbook Entry."""
    record = {k: v for k, v in vars(entry).items() if k not in ("attempts", "capture")}
    record["time"] = entry.created_at.isoformat()
    del record["created_at"]
    record["attempts"] = [dataclasses.asdict(a) for a in entry.attempts]
    capture = getattr(entry, "capture", None)
    if capture is not None:
        record.update(capture.as_record())
    record["error_message"] = redact_text(record.get("error_message") or "")
    return record


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(entry_record(record.msg), ensure_ascii=False, default=str)


class JsonlLog:
    """A size-rotated JSONL file fed through a queue; `write` never blocks."""

    def __init__(self, path: str | Path, max_bytes: int = 100 * 1024 * 1024, backups: int = 5):
        handler = RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        handler.setFormatter(_JsonFormatter())
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=50_000)
        self._listener = QueueListener(self._queue, handler)
        self._handler = handler
        self.dropped = 0

    def start(self) -> None:
        self._listener.start()

    def write(self, entry: Any) -> None:
        record = logging.LogRecord("jsonl", logging.INFO, "", 0, entry, None, None)
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def stop(self) -> None:
        """Write what is queued, then close the file."""
        self._listener.stop()
        self._handler.close()
