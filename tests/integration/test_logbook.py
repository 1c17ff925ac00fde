"""The batched request-log writer, against the configured database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from django.db import OperationalError, connections

from gateway.logbook import AttemptEntry, Entry, Logbook, write_batch
from gateway.models import ApiKey, Attempt, RequestLog


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


FAST_RETRY = (0.01, 0.05)


@pytest.mark.django_db(transaction=True)
def test_a_database_that_stays_away_is_waited_for_not_given_up_on() -> None:
    """Eight failed tries (the old writer gave up after four): every row still lands,
    and while it failed the writer said so."""
    failures: list[float | None] = []
    book_ref: list[Logbook] = []

    def away_for_a_while(batch: list[Entry]) -> None:
        if len(failures) < 8:
            failures.append(book_ref[0].status()["failing_for_seconds"] if book_ref else None)
            raise OperationalError("connection refused")
        write_batch(batch)

    async def scenario() -> Logbook:
        executor = ThreadPoolExecutor(max_workers=1)
        book = Logbook(executor, writer=away_for_a_while, retry=FAST_RETRY)
        book_ref.append(book)
        book.start()
        for n in range(5):
            book.record(entry(n))
        await book.stop()
        executor.submit(connections.close_all).result()
        executor.shutdown()
        return book

    book = asyncio.run(scenario())
    assert (book.written, book.dropped, book.rejected) == (5, 0, 0)
    assert RequestLog.objects.count() == 5
    assert failures[-1] is not None and failures[-1] >= 0  # "failing for N s" while away
    assert book.status()["failing_for_seconds"] is None  # and recovered after
    assert "connection refused" in book.status()["last_error"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_the_database_refuses_costs_only_itself() -> None:
    entries = [entry(n) for n in range(10)]
    entries[6].status = -1  # breaks the column's CHECK (status >= 0)
    book = asyncio.run(run_logbook(entries, retry=FAST_RETRY))
    assert (book.written, book.rejected, book.dropped) == (9, 1, 0)
    assert RequestLog.objects.count() == 9
    assert not RequestLog.objects.filter(requested_model="model-6").exists()
    assert Attempt.objects.count() == 18  # the refused row's attempts went with it


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_whose_key_was_deleted_meanwhile_is_kept_without_the_link() -> None:
    key, _ = ApiKey.issue("gone soon", source="dashboard")
    recorded = entry(1)
    recorded.api_key_id, recorded.api_key_name = key.pk, key.name
    key.delete()
    book = asyncio.run(run_logbook([recorded], retry=FAST_RETRY))
    assert (book.written, book.rejected) == (1, 0)
    row = RequestLog.objects.get()
    assert (row.api_key_id, row.api_key_name) == (None, "gone soon")


@pytest.mark.django_db(transaction=True)
def test_entries_left_at_shutdown_are_counted_and_said(caplog: pytest.LogCaptureFixture) -> None:
    def down(batch: list[Entry]) -> None:
        raise OperationalError("the database is down")

    async def scenario() -> Logbook:
        book = Logbook(ThreadPoolExecutor(max_workers=1), writer=down, retry=FAST_RETRY)
        book.start()
        for n in range(3):
            book.record(entry(n))
        await asyncio.sleep(0.05)
        await book.stop(drain_seconds=0.2)
        return book

    book = asyncio.run(scenario())
    assert (book.written, book.dropped) == (0, 3)
    assert "3 entries not written at shutdown" in caplog.text


def test_the_raw_inserts_name_every_column_of_the_models() -> None:
    """The writer lists its columns by hand (plain INSERTs, for speed): a field added to
    RequestLog or Attempt without a value here would have every row refused."""
    from gateway import logbook

    def columns(model: type) -> set[str]:
        return {f.column for f in model._meta.concrete_fields if not f.primary_key}

    assert set(logbook._LOG_COLUMNS) == columns(RequestLog)
    assert set(logbook._ATTEMPT_COLUMNS) == columns(Attempt)
