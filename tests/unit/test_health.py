"""The circuit breaker and the speed averages, driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from gateway.health import (
    MAX_OUTCOMES,
    CircuitPolicy,
    CircuitState,
    HealthRegistry,
    StateChange,
)

KEY = ("zai", "glm-4.6")
OTHER = ("anthropic", "claude-sonnet-4")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[StateChange]:
    return []


@pytest.fixture
def registry(clock: Clock, changes: list[StateChange]) -> HealthRegistry:
    return HealthRegistry(clock=clock, on_change=changes.append)


def fail(registry: HealthRegistry, times: int, key: tuple[str, str] = KEY) -> None:
    for _ in range(times):
        registry.failure(key, kind="http_status", message="503 overloaded")


def open_then_cool(registry: HealthRegistry, clock: Clock) -> None:
    fail(registry, registry.policy.failure_threshold)
    clock.advance(registry.policy.cooldown)


def test_policy_from_config_reads_camel_case_keys_and_defaults_the_rest() -> None:
    policy = CircuitPolicy.from_config({"failureThreshold": 3, "cooldown": 12, "errorRate": 0.25})
    assert policy == CircuitPolicy(failure_threshold=3, error_rate=0.25, cooldown=12.0)
    assert CircuitPolicy.from_config({}) == CircuitPolicy()


def test_unmeasured_route_is_closed_with_no_speed(registry: HealthRegistry) -> None:
    view = registry.view(KEY)
    assert view.tps is None and view.ttft_ms is None
    assert view.state is CircuitState.CLOSED and view.outcomes == 0 and view.error_rate == 0
    assert registry.admit(KEY) == (True, None)
    assert registry.snapshot() == {}  # reading creates nothing


def test_consecutive_failures_open_the_circuit_once(
    registry: HealthRegistry, clock: Clock, changes: list[StateChange]
) -> None:
    fail(registry, 4)
    assert registry.view(KEY).state is CircuitState.CLOSED
    fail(registry, 1)
    view = registry.view(KEY)
    assert view.state is CircuitState.OPEN and view.open_until == clock.now + 30
    assert view.consecutive_failures == 5 and view.last_error == "http_status: 503 overloaded"
    assert changes == [
        StateChange(
            KEY, CircuitState.CLOSED, CircuitState.OPEN, clock.now, "5 consecutive failures", 1030.0
        )
    ]
    assert registry.admit(KEY) == (False, "circuit open for 30s")
    assert registry.admit(OTHER) == (True, None)


def test_a_success_resets_the_consecutive_count(registry: HealthRegistry) -> None:
    fail(registry, 4)
    registry.success(KEY)
    fail(registry, 4)
    assert registry.view(KEY).state is CircuitState.CLOSED
    assert registry.view(KEY).consecutive_failures == 4


def test_error_rate_rule_waits_for_min_requests(
    registry: HealthRegistry, changes: list[StateChange]
) -> None:
    for _ in range(4):  # 4 failures, 4 successes: 50 % but only 8 outcomes
        registry.failure(KEY, kind="connect")
        registry.success(KEY)
    assert registry.view(KEY).error_rate == 0.5
    assert registry.view(KEY).state is CircuitState.CLOSED
    registry.success(KEY)
    registry.failure(KEY, kind="connect")  # 5 of 10
    assert registry.view(KEY).state is CircuitState.OPEN
    assert [c.reason for c in changes] == ["error rate 50% over 10 requests in 60s"]


def test_cooldown_then_half_open_admits_exactly_one_probe(
    registry: HealthRegistry, clock: Clock, changes: list[StateChange]
) -> None:
    fail(registry, 5)
    clock.advance(29.5)
    assert registry.admit(KEY) == (False, "circuit open for 1s")
    clock.advance(0.5)
    assert registry.view(KEY).state is CircuitState.HALF_OPEN
    assert registry.admit(KEY) == (True, None)
    assert registry.admit(KEY) == (False, "half-open probe in flight")
    assert [(c.new, c.reason) for c in changes] == [
        (CircuitState.OPEN, "5 consecutive failures"),
        (CircuitState.HALF_OPEN, "cooldown over"),
    ]


def test_probe_success_closes_the_circuit_with_a_fresh_window(
    registry: HealthRegistry, clock: Clock, changes: list[StateChange]
) -> None:
    open_then_cool(registry, clock)
    assert registry.admit(KEY) == (True, None)
    registry.success(KEY)
    view = registry.view(KEY)
    assert view.state is CircuitState.CLOSED and view.consecutive_failures == 0
    assert view.outcomes == 0 and view.open_until is None
    assert changes[-1].old is CircuitState.HALF_OPEN and changes[-1].reason == "probe succeeded"
    assert registry.admit(KEY) == (True, None) and registry.admit(KEY) == (True, None)


def test_probe_failure_reopens_for_another_cooldown(
    registry: HealthRegistry, clock: Clock, changes: list[StateChange]
) -> None:
    open_then_cool(registry, clock)
    registry.admit(KEY)
    registry.failure(KEY, kind="first_token_timeout")
    view = registry.view(KEY)
    assert view.state is CircuitState.OPEN and view.open_until == clock.now + 30
    assert (changes[-1].old, changes[-1].reason) == (CircuitState.HALF_OPEN, "probe failed")
    assert len(changes) == 3


def test_neutral_releases_the_probe_without_judging(
    registry: HealthRegistry, clock: Clock, changes: list[StateChange]
) -> None:
    open_then_cool(registry, clock)
    registry.admit(KEY)
    registry.neutral(KEY)
    assert registry.view(KEY).state is CircuitState.HALF_OPEN
    assert registry.admit(KEY) == (True, None)
    assert len(changes) == 2


def test_a_probe_that_never_reports_is_presumed_lost_after_a_cooldown(
    registry: HealthRegistry, clock: Clock
) -> None:
    open_then_cool(registry, clock)
    registry.admit(KEY)
    clock.advance(29)
    assert registry.admit(KEY) == (False, "half-open probe in flight")
    clock.advance(1)
    assert registry.admit(KEY) == (True, None)


def test_retry_after_longer_than_cooldown_keeps_it_open_longer(
    registry: HealthRegistry, clock: Clock
) -> None:
    fail(registry, 4)
    registry.failure(KEY, kind="http_status", message="429", retry_after=90)
    assert registry.view(KEY).open_until == clock.now + 90
    clock.advance(60)
    assert registry.admit(KEY) == (False, "circuit open for 30s")
    clock.advance(30)
    assert registry.view(KEY).state is CircuitState.HALF_OPEN


def test_retry_after_shorter_than_cooldown_does_not_shorten_it(
    registry: HealthRegistry, clock: Clock
) -> None:
    fail(registry, 4)
    registry.failure(KEY, kind="http_status", retry_after=2)
    assert registry.view(KEY).open_until == clock.now + 30


def test_open_for_forces_open_and_only_extends_an_open_circuit(
    registry: HealthRegistry, clock: Clock, changes: list[StateChange]
) -> None:
    registry.open_for(KEY, 120, "Retry-After 120s")
    assert registry.view(KEY).open_until == clock.now + 120
    registry.open_for(KEY, 10, "shorter")
    registry.open_for(KEY, 200, "longer")
    assert registry.view(KEY).open_until == clock.now + 200
    assert [c.reason for c in changes] == ["Retry-After 120s"]
    assert changes[0].open_until == clock.now + 120


def test_close_ends_an_open_circuit_at_once(
    registry: HealthRegistry, changes: list[StateChange]
) -> None:
    fail(registry, 5)
    registry.close(KEY, "shared: probe succeeded")
    registry.close(KEY, "again")
    assert registry.admit(KEY) == (True, None)
    assert [(c.new, c.reason) for c in changes][-1] == (
        CircuitState.CLOSED,
        "shared: probe succeeded",
    )
    assert len(changes) == 2


def test_old_failures_age_out_of_the_window(registry: HealthRegistry, clock: Clock) -> None:
    for _ in range(4):
        fail(registry, 1)
        registry.success(KEY)
    assert registry.view(KEY).error_rate == 0.5
    clock.advance(45)
    for _ in range(4):
        registry.success(KEY)
    assert registry.view(KEY).error_rate == 4 / 12
    clock.advance(20)  # the first eight are now older than 60 s
    view = registry.view(KEY)
    assert view.outcomes == 4 and view.error_rate == 0


def test_decayed_failures_do_not_count_toward_the_rate_rule(
    registry: HealthRegistry, clock: Clock
) -> None:
    registry.policy = CircuitPolicy(failure_threshold=100)
    for _ in range(9):
        fail(registry, 1)
        registry.success(KEY)
    clock.advance(61)
    for _ in range(9):
        registry.success(KEY)
    fail(registry, 1)  # 1 of 10 recent, not 10 of 28
    assert registry.view(KEY).state is CircuitState.CLOSED


def test_window_memory_is_bounded(registry: HealthRegistry) -> None:
    registry.policy = CircuitPolicy(failure_threshold=10**6, min_requests=10**6)
    fail(registry, MAX_OUTCOMES)
    for _ in range(MAX_OUTCOMES // 2):
        registry.success(KEY)
    view = registry.view(KEY)
    assert view.outcomes == MAX_OUTCOMES and view.error_rate == 0.5


def test_first_samples_set_the_averages_then_ewma_blends(registry: HealthRegistry) -> None:
    registry.success(KEY, ttft=0.5, output_tokens=100, generation_seconds=2.0)
    view = registry.view(KEY)
    assert view.ttft_ms == 500 and view.tps == 50
    registry.success(KEY, ttft=1.5, output_tokens=300, generation_seconds=2.0)
    view = registry.view(KEY)
    assert view.ttft_ms == pytest.approx(0.3 * 1500 + 0.7 * 500)
    assert view.tps == pytest.approx(0.3 * 150 + 0.7 * 50)


def test_tps_needs_both_tokens_and_generation_time(registry: HealthRegistry) -> None:
    registry.success(KEY, output_tokens=0, generation_seconds=1.0)
    registry.success(KEY, output_tokens=10, generation_seconds=0.0)
    registry.success(KEY, output_tokens=10)
    assert registry.view(KEY).tps is None


def test_in_flight_never_goes_negative(registry: HealthRegistry) -> None:
    registry.started(KEY)
    registry.started(KEY)
    assert registry.view(KEY).in_flight == 2
    for _ in range(3):
        registry.finished(KEY)
    assert registry.view(KEY).in_flight == 0


def test_snapshot_covers_every_route_seen_and_retain_forgets_the_rest(
    registry: HealthRegistry,
) -> None:
    registry.started(KEY)
    registry.failure(OTHER, kind="connect")
    assert set(registry.snapshot()) == {KEY, OTHER}
    registry.retain([KEY])
    assert set(registry.snapshot()) == {KEY}
