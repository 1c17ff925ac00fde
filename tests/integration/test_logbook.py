"""The batched request-log writer, against the configured database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from django.db import connections

from gateway.logbook import AttemptEntry, Entry, Logbook, write_batch
from gateway.models import Attempt, RequestLog


def entry(n: int, attempts: int = 2) -> Entry:
    return Entry(
        created_at=datetime.now(UTC),
        path="/v1/messages",
        requested_model=f"model-{n}",
        status=200,
        output_tokens=n,
        attempts=[
            AttemptEntry(
                seq=i + 1,
                provider=f"p{i}",
                model="m",
                started_ms=float(i),
                outcome="won" if i == attempts - 1 else "failed",
            )
            for i in range(attempts)
        ],
    )


async def run_logbook(entries: list[Entry], writer=write_batch, **options) -> Logbook:
    executor = ThreadPoolExecutor(max_workers=1)
    book = Logbook(executor, writer=writer, **options)
    book.start()
    for item in entries:
        book.record(item)
    await book.stop()
    executor.submit(connections.close_all).result()
    executor.shutdown()
    return book


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_entries_and_their_attempts_are_written_in_batches() -> None:
    book = asyncio.run(run_logbook([entry(n) for n in range(1200)], batch_size=500))
    assert book.written == 1200 and book.dropped == 0
    assert RequestLog.objects.count() == 1200
    assert Attempt.objects.count() == 2400
    row = RequestLog.objects.get(requested_model="model-7")
    assert row.output_tokens == 7 and row.attempt_count == 2
    assert list(row.attempts.values_list("seq", "outcome")) == [(1, "failed"), (2, "won")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_every_field_reads_back_as_it_was_recorded() -> None:
    """The writer uses plain INSERTs: times, JSON, nulls and text must survive them."""
    recorded = entry(3, attempts=1)
    recorded.created_at = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    recorded.skipped = [{"provider": "p", "model": "m", "reason": "circuit open"}]
    recorded.error_message = "x" * 5000
    recorded.user_agent = "claude-cli/2.0 ✓"
    recorded.ttft_ms, recorded.tps, recorded.stream = None, 12.5, True
    recorded.attempts[0].error_message = "reset ✓"
    write_batch([recorded])
    row = RequestLog.objects.get()
    assert row.created_at == recorded.created_at
    assert row.skipped == recorded.skipped
    assert len(row.error_message) == 4000 and row.user_agent == "claude-cli/2.0 ✓"
    assert (row.ttft_ms, row.tps, row.stream, row.attempt_count) == (None, 12.5, True, 1)
    assert row.attempts.get().error_message == "reset ✓"


@pytest.mark.django_db(transaction=True)
def test_a_failing_database_write_is_retried_not_lost() -> None:
    calls = []

    def flaky(batch: list[Entry]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("database is down")
        write_batch(batch)

    book = asyncio.run(run_logbook([entry(1), entry(2)], writer=flaky))
    assert calls == [2, 2]
    assert book.written == 2 and RequestLog.objects.count() == 2


def test_record_never_blocks_when_the_queue_is_full() -> None:
    async def scenario() -> Logbook:
        book = Logbook(ThreadPoolExecutor(max_workers=1), capacity=3)
        for n in range(5):
            book.record(entry(n))  # the writer is not started: nothing drains
        return book

    assert asyncio.run(scenario()).dropped == 2
