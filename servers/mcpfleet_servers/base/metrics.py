"""Prometheus metrics of one server, on its own registry (several servers can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Outcomes of a call, and kinds of errors; fixed sets keep the label cardinality bounded.
OUTCOMES = ("ok", "error", "refused", "invalid")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    def __init__(self, server_type: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "mcpfleet_tool_calls",
            "Tool calls by tool, risk (SAFE, MEDIUM, HIGH: the call's own, which risk_for may raise above the "
            "declared one) and outcome (ok, error, refused, invalid).",
            ["tool", "risk", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mcpfleet_tool_errors",
            "Failed tool calls by tool and kind (timeout, backend_unavailable, not_found, internal, ...).",
            ["tool", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mcpfleet_tool_call_duration_seconds",
            "Time from the start of a tool's body to its answer (confirmation waits excluded).",
            ["tool"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.refusals = Counter(
            "mcpfleet_tool_refusals",
            "Calls refused before or after running, by tool and reason (declined, unconfirmable, output_budget, "
            "policy).",
            ["tool", "reason"],
            registry=self.registry,
        )
        self.tools = Gauge("mcpfleet_tools", "Tools this server exposes after policy.", registry=self.registry)
        self.backend_up = Gauge(
            "mcpfleet_backend_up", "1 when the last readiness probe reached the backend.", registry=self.registry
        )
        self.info = Gauge("mcpfleet_server_info", "The server's type.", ["type"], registry=self.registry)
        self.info.labels(type=server_type).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
