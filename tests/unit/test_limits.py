"""The in-memory admission rules: total cap, per-key concurrency, rate and budgets."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.limits import UNLIMITED, KeyLimits, Limiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.wall = datetime(2026, 11, 26, 23, 59, 0, tzinfo=UTC)

    def __call__(self) -> float:
        return self.t


def limiter(total: int = 100) -> tuple[Limiter, Clock]:
    clock = Clock()
    return Limiter(total, clock=clock, now=lambda: clock.wall), clock


def test_the_total_cap_answers_529_and_frees_up_on_release() -> None:
    gate, _ = limiter(total=2)
    assert gate.admit(1, UNLIMITED) is None and gate.admit(None, UNLIMITED) is None
    refusal = gate.admit(2, UNLIMITED)
    assert refusal is not None and refusal.status == 529 and refusal.retry_after == 1
    gate.release(1, UNLIMITED)
    assert gate.admit(2, UNLIMITED) is None


def test_a_keys_concurrency_is_its_own() -> None:
    gate, _ = limiter()
    two = KeyLimits(concurrent=2)
    assert gate.admit(7, two) is None and gate.admit(7, two) is None
    refusal = gate.admit(7, two)
    assert refusal is not None and refusal.status == 429
    assert "2 requests in progress" in refusal.message
    assert gate.admit(8, two) is None  # another key is not held back
    gate.release(7, two)
    assert gate.admit(7, two) is None
    assert gate.in_flight == 3


def test_requests_per_minute_allow_a_burst_then_one_per_interval() -> None:
    gate, clock = limiter()
    rate = KeyLimits(requests_per_minute=6)  # one every 10 s, bursts of 6
    for _ in range(6):
        assert gate.admit(1, rate) is None
        gate.release(1, rate)
    refusal = gate.admit(1, rate)
    assert refusal is not None and refusal.status == 429 and refusal.retry_after == 10
    clock.t += 9.5
    assert gate.admit(1, rate) is not None  # not quite yet
    clock.t += 0.5
    assert gate.admit(1, rate) is None


def test_a_refused_request_takes_no_place() -> None:
    gate, _ = limiter()
    rate = KeyLimits(requests_per_minute=1, concurrent=5)
    assert gate.admit(1, rate) is None
    assert gate.admit(1, rate) is not None
    assert gate.in_flight == 1


def test_the_day_budget_counts_local_spend_and_the_databases_figure() -> None:
    gate, clock = limiter()
    budget = KeyLimits(tokens_per_day=1000)
    marks = gate.local_spend()
    gate.spend(3, 300)  # finished here after the marks were taken: on top of the query
    gate.set_usage({3: (600, 600)}, marks, "2026-11-26", "2026-11-26"[:7])
    assert gate.admit(3, budget) is None  # 900 of 1000
    gate.release(3, budget)
    gate.spend(3, 100)
    refusal = gate.admit(3, budget)
    assert refusal is not None and refusal.status == 429
    assert "1000 of 1000 tokens" in refusal.message
    assert refusal.retry_after == 60  # 23:59 -> midnight UTC
    clock.wall = datetime(2026, 11, 27, 0, 0, 1, tzinfo=UTC)
    assert gate.admit(3, budget) is None  # a new day


def test_a_refresh_replaces_what_the_last_one_said() -> None:
    gate, _ = limiter()
    budget = KeyLimits(tokens_per_month=500)
    gate.spend(4, 400)
    marks = gate.local_spend()
    gate.set_usage({4: (400, 400)}, marks, "2026-11-26", "2026-11")  # the 400 are in the db
    assert gate.admit(4, budget) is None  # counted once, not twice
    gate.release(4, budget)
    marks = gate.local_spend()
    gate.set_usage({4: (520, 520)}, marks, "2026-11-26", "2026-11")  # another process spent
    refusal = gate.admit(4, budget)
    assert refusal is not None and "this month" in refusal.message
    assert refusal.retry_after == 4 * 24 * 3600 + 60  # to 1 December, 00:00 UTC


def test_keys_without_limits_are_only_counted_in_the_total() -> None:
    gate, _ = limiter(total=3)
    for _ in range(3):
        assert gate.admit(9, UNLIMITED) is None
    assert gate.admit(9, UNLIMITED) is not None


# several processes: what the others publish (`shared`) and this one takes in (`observe`)


def test_the_other_processes_requests_in_progress_count_against_a_keys_concurrency() -> None:
    here, _ = limiter()
    there, _ = limiter()
    two = KeyLimits(concurrent=2)
    assert there.admit(7, two) is None
    here.observe({"host:2": there.shared()})
    assert here.admit(7, two) is None  # one there, one here
    refusal = here.admit(7, two)
    assert refusal is not None and refusal.status == 429
    there.release(7, two)
    here.observe({"host:2": there.shared()})
    assert here.admit(7, two) is None  # its place is free again


def test_what_the_others_admitted_since_the_last_exchange_drains_this_bucket() -> None:
    here, _ = limiter()
    there, _ = limiter()
    rate = KeyLimits(requests_per_minute=6)
    assert there.admit(1, rate) is None  # before this process first hears of it: no debt
    here.observe({"host:2": there.shared()})
    for _ in range(4):
        assert there.admit(1, rate) is None
        there.release(1, rate)
    here.observe({"host:2": there.shared()})
    assert here.admit(1, rate) is None  # 6 in the bucket, 4 taken there, 1 here
    assert here.admit(1, rate) is None
    refusal = here.admit(1, rate)
    assert refusal is not None and refusal.status == 429
    here.observe({"host:2": there.shared()})  # nothing new there: no second charge
    here.release(1, rate)
    here.release(1, rate)
    assert here.admit(1, rate) is not None


def test_a_process_that_is_gone_no_longer_holds_places() -> None:
    here, _ = limiter()
    there, _ = limiter()
    one = KeyLimits(concurrent=1)
    assert there.admit(3, one) is None
    here.observe({"host:2": there.shared()})
    assert here.admit(3, one) is not None
    here.observe({})  # its report expired (or Redis is unreachable)
    assert here.admit(3, one) is None


def test_unlimited_keys_are_not_published() -> None:
    gate, _ = limiter()
    assert gate.admit(5, UNLIMITED) is None
    assert gate.admit(6, KeyLimits(concurrent=4)) is None
    assert gate.shared() == {"6": [1, 1]}


def test_a_malformed_report_is_passed_over() -> None:
    here, _ = limiter()
    one = KeyLimits(concurrent=1)
    garbage = {"x": [1, 1], "3": "busy", "4": [1]}
    here.observe({"host:2": garbage, "host:3": {"3": [1, 5]}, "host:4": [1]})  # type: ignore[dict-item]
    assert here.admit(3, one) is not None  # host:3's figure still counts
