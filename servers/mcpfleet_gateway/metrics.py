"""The gateway's Prometheus metrics, on its own registry; the parts (limits, audit, upstreams) add theirs to it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mcpfleet_gateway.audit_sink import AuditMetrics
from mcpfleet_gateway.ratelimit import RateLimitMetrics
from mcpfleet_gateway.upstreams.metrics import UpstreamMetrics

CONTENT_TYPE = CONTENT_TYPE_LATEST


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.calls = Counter(
            "mcpfleet_gateway_tool_calls",
            "Tool calls by server prefix, tool and outcome (ok, tool-error, upstream-error, timeout, denied, "
            "rate-limited, invalid, cached, unconfirmable).",
            ["server", "tool", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "mcpfleet_gateway_tool_call_duration_seconds",
            "Time from a call's arrival at the gateway to its answer, by server prefix and tool.",
            ["server", "tool"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.denials = Counter(
            "mcpfleet_gateway_denials",
            "Refused requests by reason (unauthenticated, denied, rate-limited, invalid, unknown-tool, "
            "ip-not-allowed, bad-host, bad-origin, body-too-large).",
            ["reason"],
            registry=registry,
        )
        self.input_requests = Counter(
            "mcpfleet_gateway_input_requests",
            "Upstream requests for the user's input (elicitation) by server prefix and what the gateway did: "
            "passed-through (a 2026-07-28 client asks), relayed (the gateway asked a handshake-era client), "
            "unanswerable (the client cannot ask), unsupported (sampling, roots, URL mode), too-many-rounds, "
            "client-error.",
            ["server", "outcome"],
            registry=registry,
        )
        self.in_flight = Gauge("mcpfleet_gateway_calls_in_flight", "Tool calls being answered.", registry=registry)
        self.tools = Gauge("mcpfleet_gateway_tools", "Tools in the routing table.", registry=registry)
        self.reloads = Counter(
            "mcpfleet_gateway_reloads",
            "Reloads by what changed (config, catalog, upstream) and outcome (ok, invalid).",
            ["source", "outcome"],
            registry=registry,
        )
        self.catalog_revision = Gauge(
            "mcpfleet_gateway_catalog_revision", "Revision of the catalog being served.", registry=registry
        )
        self.problems = Gauge(
            "mcpfleet_gateway_table_problems", "Collisions and load problems of the current table.", registry=registry
        )
        self.cache = Counter(
            "mcpfleet_gateway_cache_lookups",
            "Result cache lookups by result (hit, miss).",
            ["result"],
            registry=registry,
        )
        self.ratelimit = RateLimitMetrics(registry)
        self.audit = AuditMetrics(registry)
        self.upstreams = UpstreamMetrics(registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
