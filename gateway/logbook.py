"""The request log, written in batches by a background task the request path never awaits.

`record()` only appends to a bounded in-memory queue. The writer drains it every
`interval` seconds (or as soon as a batch is full) and inserts RequestLog and Attempt rows
in one transaction on the database thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.capture import Capture

log = logging.getLogger(__name__)


@dataclass
class AttemptEntry:
    seq: int
    provider: str
    model: str
    started_ms: float
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    status: int = 0
    error_kind: str = ""
    error_message: str = ""
    outcome: str = "failed"


@dataclass
class Entry:
    """Everything the log keeps about one request; filled in as the request goes."""

    created_at: datetime
    path: str
    api_key_id: int | None = None
    api_key_name: str = ""
    requested_model: str = ""
    stream: bool = False
    provider: str = ""
    upstream_model: str = ""
    status: int = 0
    outcome: str = "ok"
    error_type: str = ""
    error_message: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    tps: float | None = None
    user_agent: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)
    attempts: list[AttemptEntry] = field(default_factory=list)
    capture: Capture | None = None  # headers and bodies, only when body logging is on


# Column order of the raw INSERTs; every name is a field of the model (see _row_values).
_LOG_COLUMNS = (
    "created_at",
    "api_key_id",
    "api_key_name",
    "path",
    "requested_model",
    "stream",
    "provider",
    "upstream_model",
    "status",
    "outcome",
    "error_type",
    "error_message",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "ttft_ms",
    "duration_ms",
    "tps",
    "attempt_count",
    "user_agent",
    "skipped",
    "request_body",
    "response_body",
)
_ATTEMPT_COLUMNS = (
    "request_id",
    "seq",
    "provider",
    "model",
    "started_ms",
    "ttft_ms",
    "duration_ms",
    "status",
    "error_kind",
    "error_message",
    "outcome",
)
# Rows per multi-row INSERT: 24 parameters a row stays far below SQLite's and PostgreSQL's
# limits on parameters per statement.
_ROWS_PER_INSERT = 200


def write_batch(entries: list[Entry]) -> None:
    """Insert a batch of entries and their attempts, and move each key's `last_used_at`
    forward in one UPDATE (one transaction, on the database thread).

    Plain multi-row INSERTs rather than `bulk_create`: the ORM spent about 0.2 ms of CPU
    per row preparing values field by field, in the same process as the proxy."""
    from django.db import InterfaceError, OperationalError, connection, transaction

    last_used: dict[int, datetime] = {}
    for entry in entries:
        if entry.api_key_id is not None:
            seen = last_used.get(entry.api_key_id, entry.created_at)
            last_used[entry.api_key_id] = max(seen, entry.created_at)
    try:
        with transaction.atomic():
            _insert(connection, entries)
            if last_used:
                _move_last_used(last_used)
    except (OperationalError, InterfaceError):
        # The server may have gone away or restarted: the next try opens a new connection.
        with contextlib.suppress(Exception):
            connection.close()
        raise


def _insert(connection: Any, entries: list[Entry]) -> None:
    ops = connection.ops
    with connection.cursor() as cursor:
        for start in range(0, len(entries), _ROWS_PER_INSERT):
            chunk = entries[start : start + _ROWS_PER_INSERT]
            ids = _insert_returning_ids(cursor, [_row_values(e, ops) for e in chunk])
            attempts = [
                (request_id, *_attempt_values(attempt))
                for request_id, entry in zip(ids, chunk, strict=True)
                for attempt in entry.attempts
            ]
            if attempts:
                columns = ", ".join(_ATTEMPT_COLUMNS)
                marks = ", ".join(["%s"] * len(_ATTEMPT_COLUMNS))
                sql = f"INSERT INTO gateway_attempt ({columns}) VALUES ({marks})"
                cursor.executemany(sql, attempts)


def _insert_returning_ids(cursor: Any, rows: list[tuple[Any, ...]]) -> list[int]:
    """One multi-row INSERT; the new ids in row order (SQLite 3.35+ and PostgreSQL both
    return them in the order of VALUES, which Django's bulk_create relies on as well)."""
    marks = "(" + ", ".join(["%s"] * len(_LOG_COLUMNS)) + ")"
    sql = (
        f"INSERT INTO gateway_requestlog ({', '.join(_LOG_COLUMNS)}) "
        f"VALUES {', '.join([marks] * len(rows))} RETURNING id"
    )
    cursor.execute(sql, [value for row in rows for value in row])
    return [int(row[0]) for row in cursor.fetchall()]


def _move_last_used(last_used: dict[int, datetime]) -> None:
    """A slow request can land in a later batch than a newer one: never go back."""
    from django.db.models import Case, Value, When
    from django.db.models.functions import Coalesce, Greatest

    from gateway.models import ApiKey

    batch = Case(*(When(pk=pk, then=Value(at)) for pk, at in last_used.items()))
    ApiKey.objects.filter(pk__in=last_used).update(
        last_used_at=Greatest(Coalesce("last_used_at", batch), batch)
    )


def _row_values(entry: Entry, ops: Any) -> tuple[Any, ...]:
    request_body = response_body = ""
    if entry.capture is not None:  # redacted and capped on the way out
        bodies = entry.capture.as_record()
        request_body = bodies["request_body"] or ""
        response_body = bodies["response_body"] or ""
    return (
        ops.adapt_datetimefield_value(entry.created_at),
        entry.api_key_id,
        entry.api_key_name,
        entry.path,
        entry.requested_model,
        entry.stream,
        entry.provider,
        entry.upstream_model,
        entry.status,
        entry.outcome,
        entry.error_type,
        entry.error_message[:4000],
        entry.input_tokens,
        entry.output_tokens,
        entry.cache_read_tokens,
        entry.cache_creation_tokens,
        entry.ttft_ms,
        entry.duration_ms,
        entry.tps,
        len(entry.attempts),
        entry.user_agent[:300],
        ops.adapt_json_value(entry.skipped, None),
        request_body,
        response_body,
    )


def _attempt_values(attempt: AttemptEntry) -> tuple[Any, ...]:
    return (
        attempt.seq,
        attempt.provider,
        attempt.model,
        attempt.started_ms,
        attempt.ttft_ms,
        attempt.duration_ms,
        attempt.status,
        attempt.error_kind,
        attempt.error_message,
        attempt.outcome,
    )


RETRY_FIRST = 0.5  # seconds before the first retry of a batch; doubled up to RETRY_MAX
RETRY_MAX = 5.0
COMPLAIN_EVERY = 30.0  # seconds between repeated log lines about the same trouble


def _refused(exc: BaseException) -> bool:
    """The database answered and said no to these rows (retrying the same rows cannot
    help); anything else (connection lost, server restarting, locked) is worth retrying."""
    from django.db import DataError, IntegrityError

    return isinstance(exc, DataError | IntegrityError)


class Logbook:
    """Owns the queue and the writer task; `record` never blocks and never fails.

    Durability: a batch that cannot be written (database down, restarting, locked) is
    retried with backoff until it is, while new entries wait in the bounded queue; only
    entries that find the queue full are dropped, and rows the database refuses outright
    are isolated by halving the batch so that one bad row costs only itself. Both are
    counted (`dropped`, `rejected`), logged and shown on the dashboard and /metrics.
    """

    def __init__(
        self,
        executor: Executor,
        *,
        capacity: int = 50_000,
        batch_size: int = 500,
        interval: float = 0.25,
        writer: Any = write_batch,
        clock: Any = time.monotonic,
        retry: tuple[float, float] = (RETRY_FIRST, RETRY_MAX),
    ) -> None:
        self._executor = executor
        self._queue: asyncio.Queue[Entry] = asyncio.Queue(maxsize=capacity)
        self.capacity = capacity
        self._batch_size = batch_size
        self._interval = interval
        self._writer = writer
        self._clock = clock
        self._retry = retry
        self._task: asyncio.Task[None] | None = None
        self._in_hand = 0  # entries taken from the queue and not yet written
        self.dropped = 0  # found the queue full
        self.rejected = 0  # refused by the database
        self.written = 0
        self.failing_since: float | None = None  # monotonic time of the first failure
        self.last_error = ""
        self._complained_at = -COMPLAIN_EVERY

    def record(self, entry: Entry) -> None:
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped += 1
            if self._may_complain():
                log.error(
                    "request log queue full (%d entries): %d dropped so far",
                    self.capacity,
                    self.dropped,
                )

    @property
    def waiting(self) -> int:
        """Entries recorded and not yet written."""
        return self._queue.qsize() + self._in_hand

    def status(self) -> dict[str, Any]:
        """What the dashboard and /metrics show about the writer."""
        failing_for = None
        if self.failing_since is not None:
            failing_for = round(self._clock() - self.failing_since, 1)
        return {
            "waiting": self.waiting,
            "capacity": self.capacity,
            "written": self.written,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "failing_for_seconds": failing_for,
            "last_error": self.last_error,
        }

    def _may_complain(self) -> bool:
        now = self._clock()
        if now - self._complained_at < COMPLAIN_EVERY:
            return False
        self._complained_at = now
        return True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="logbook")

    async def _take_batch(self) -> list[Entry]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._interval
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
        return batch

    async def _write(self, batch: list[Entry]) -> None:
        """Write `batch`, however long the database takes to come back."""
        loop = asyncio.get_running_loop()
        delay, longest = self._retry
        while True:
            try:
                await loop.run_in_executor(self._executor, self._writer, batch)
            except Exception as exc:
                if _refused(exc):
                    await self._write_apart(batch, exc)
                    return
                self._failed(exc, len(batch))
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            self.written += len(batch)
            self._recovered()
            return

    async def _write_apart(self, batch: list[Entry], exc: BaseException) -> None:
        if len(batch) == 1:
            entry = batch[0]
            if entry.api_key_id is not None:  # the key was deleted since: keep the row
                entry.api_key_id = None
                await self._write(batch)
                return
            self.rejected += 1
            log.error(
                "the database refused a request log row (%s %s at %s): %s",
                entry.path,
                entry.requested_model,
                entry.created_at.isoformat(),
                exc,
            )
            return
        half = len(batch) // 2
        await self._write(batch[:half])
        await self._write(batch[half:])

    def _failed(self, exc: BaseException, rows: int) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        first = self.failing_since is None
        if first:
            self.failing_since = self._clock()
        if first or self._may_complain():
            log.error(
                "writing %d request log rows failed (%s); retrying, %d entries waiting",
                rows,
                self.last_error,
                self.waiting,
            )

    def _recovered(self) -> None:
        if self.failing_since is not None:
            log.warning(
                "request log writes recovered after %.1f s", self._clock() - self.failing_since
            )
        self.failing_since = None

    async def _run(self) -> None:
        while True:
            batch = await self._take_batch()
            self._in_hand = len(batch)
            try:
                await self._write(batch)
            finally:
                self._in_hand = 0
                for _ in batch:
                    self._queue.task_done()

    async def flush(self) -> None:
        """Wait until everything recorded so far is written (tests, shutdown)."""
        await self._queue.join()

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Write what is waiting, for up to `drain_seconds`; what is left is counted as
        dropped and said in the log."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), timeout=drain_seconds)
        except TimeoutError:
            left = self.waiting
            self.dropped += left
            log.error("request log: %d entries not written at shutdown (%s)", left, self.last_error)
        self._task.cancel()
        self._task = None
