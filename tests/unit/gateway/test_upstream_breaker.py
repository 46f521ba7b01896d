"""The circuit breaker's state machine on a fake clock, and the retry schedule."""

from __future__ import annotations

import pytest

from mcpfleet_gateway.upstreams.resilience import BreakerState, CircuitBreaker, backoff_delays


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def state(breaker: CircuitBreaker) -> BreakerState:
    # A function call, so the type checker does not carry one assertion's narrowing into the next.
    return breaker.state


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[BreakerState]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, changes: list[BreakerState]) -> CircuitBreaker:
    return CircuitBreaker(3, 10.0, clock=clock, on_change=changes.append)


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker, changes: list[BreakerState]) -> None:
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert state(breaker) == "closed"
    breaker.record_failure()
    assert state(breaker) == "open"
    assert not breaker.allow()
    assert breaker.retry_in() == 10.0
    assert changes == ["open"]


def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert state(breaker) == "closed"
    assert breaker.consecutive_failures == 2


def test_half_open_lets_exactly_one_probe_through(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(9.9)
    assert state(breaker) == "open"
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(0.1)
    clock.advance(0.1)
    assert state(breaker) == "half-open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for its outcome
    assert not breaker.allow()


def test_probe_success_closes(breaker: CircuitBreaker, clock: FakeClock, changes: list[BreakerState]) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) == "closed"
    assert breaker.allow()
    assert breaker.allow()
    assert changes == ["open", "half-open", "closed"]


def test_probe_failure_reopens_for_a_full_period(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(12)
    assert breaker.allow()
    breaker.record_failure()
    assert state(breaker) == "open"
    assert breaker.retry_in() == 10.0
    clock.advance(10)
    assert state(breaker) == "half-open"
    assert breaker.allow()


def test_released_probe_slot_is_given_to_the_next_caller(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    breaker.release()  # the probe's caller was cancelled
    assert breaker.allow()


def test_a_lost_probe_stops_blocking_after_a_period(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(0, 1)
    with pytest.raises(ValueError, match="reset_seconds"):
        CircuitBreaker(1, 0)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    assert list(backoff_delays(5, 0.1, 0.5, rng=lambda: 1.0)) == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert list(backoff_delays(3, 0.1, 2, rng=lambda: 0.0)) == pytest.approx([0.05, 0.1, 0.2])
    assert list(backoff_delays(0, 0.1, 2)) == []
