"""Circuit breaker and retry schedule for upstream calls.

The breaker counts consecutive *transport* failures (unreachable, dropped, timed out) — never tool errors or
JSON-RPC errors, which prove the upstream is alive. After ``failure_threshold`` of them it opens and calls fail
fast without touching the network; ``reset_seconds`` later it is half-open and lets exactly one probe through; the
probe's success closes it, its failure opens it for another ``reset_seconds``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Literal

BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Not thread-safe; use it from one event loop. ``clock`` returns monotonic seconds (injectable for tests)."""

    def __init__(
        self,
        failure_threshold: int,
        reset_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_seconds <= 0:
            raise ValueError("reset_seconds must be positive")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at: float | None = None
        # When the half-open probe was let through; a probe that never reports back (its caller was
        # cancelled and did not release it) stops blocking others after reset_seconds.
        self._probe_since: float | None = None
        self._reported: BreakerState = "closed"

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_seconds:
            return "half-open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        if self._probe_since is not None:
            return max(0.0, self._probe_since + self.reset_seconds - self._clock())
        return max(0.0, self._opened_at + self.reset_seconds - self._clock())

    def allow(self) -> bool:
        """Whether a request may go out now. In half-open state the first caller becomes the probe."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            self._notify()
            return False
        now = self._clock()
        if self._probe_since is not None and now - self._probe_since < self.reset_seconds:
            return False
        self._probe_since = now
        self._notify()
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_since = None
        self._notify()

    def record_failure(self) -> None:
        now = self._clock()
        self._failures += 1
        if self._opened_at is not None:
            # A failed probe (or a late failure while open): stay open for another full period.
            self._opened_at = now
            self._probe_since = None
        elif self._failures >= self.failure_threshold:
            self._opened_at = now
        self._notify()

    def release(self) -> None:
        """Give back a probe slot whose request ended without an outcome (e.g. the caller was cancelled)."""
        self._probe_since = None

    def _notify(self) -> None:
        state = self.state
        if state != self._reported:
            self._reported = state
            if self._on_change is not None:
                self._on_change(state)


def backoff_delays(
    attempts: int, base: float, cap: float, *, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    """Waits before each of ``attempts`` retries: exponential from ``base``, capped, with full jitter in the
    upper half (so two gateways that failed together do not retry in lockstep, and no wait is ~0)."""
    for attempt in range(attempts):
        ceiling = min(cap, base * (2**attempt))
        yield ceiling / 2 + rng() * ceiling / 2
