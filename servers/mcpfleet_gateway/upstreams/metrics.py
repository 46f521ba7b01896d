"""Prometheus metrics of upstream calls, registered on the gateway's registry."""

from __future__ import annotations

import contextlib
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

CallOutcome = Literal[
    "ok", "tool-error", "input-required", "rpc-error", "timeout", "unavailable", "breaker-open", "protocol-error"
]
CALL_OUTCOMES: tuple[CallOutcome, ...] = (
    "ok",
    "tool-error",
    "input-required",
    "rpc-error",
    "timeout",
    "unavailable",
    "breaker-open",
    "protocol-error",
)


class UpstreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "mcpfleet_gateway_upstream_calls",
            "Requests sent to upstreams by upstream and outcome (ok, tool-error, input-required, rpc-error, timeout, "
            "unavailable, breaker-open, protocol-error).",
            ["upstream", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "mcpfleet_gateway_upstream_call_duration_seconds",
            "Time an upstream took to answer a tool call (retries included), by upstream.",
            ["upstream"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.up = Gauge(
            "mcpfleet_gateway_upstream_up",
            "1 when the last health check or request reached the upstream.",
            ["upstream"],
            registry=registry,
        )
        self.breaker_open = Gauge(
            "mcpfleet_gateway_upstream_breaker_open",
            "1 while the upstream's circuit breaker is open or half-open.",
            ["upstream"],
            registry=registry,
        )
        self.retries = Counter(
            "mcpfleet_gateway_upstream_retries",
            "Retried calls (safe tools only) by upstream.",
            ["upstream"],
            registry=registry,
        )

    def bind(self, upstream: str) -> BoundUpstreamMetrics:
        return BoundUpstreamMetrics(self, upstream)

    def forget(self, upstream: str) -> None:
        """Drop an upstream's series after it was removed from the config."""
        for outcome in CALL_OUTCOMES:
            with contextlib.suppress(KeyError):
                self.calls.remove(upstream, outcome)
        for metric in (self.duration, self.up, self.breaker_open, self.retries):
            with contextlib.suppress(KeyError):
                metric.remove(upstream)


class BoundUpstreamMetrics:
    """The children of one upstream, resolved once (label lookups are not free on the hot path)."""

    def __init__(self, metrics: UpstreamMetrics, upstream: str) -> None:
        self._calls = {outcome: metrics.calls.labels(upstream, outcome) for outcome in CALL_OUTCOMES}
        self._duration = metrics.duration.labels(upstream)
        self._up = metrics.up.labels(upstream)
        self._breaker_open = metrics.breaker_open.labels(upstream)
        self._retries = metrics.retries.labels(upstream)

    def call(self, outcome: CallOutcome, seconds: float | None) -> None:
        self._calls[outcome].inc()
        if seconds is not None:
            self._duration.observe(seconds)

    def retry(self) -> None:
        self._retries.inc()

    def set_up(self, up: bool) -> None:
        self._up.set(1 if up else 0)

    def set_breaker_open(self, is_open: bool) -> None:
        self._breaker_open.set(1 if is_open else 0)
