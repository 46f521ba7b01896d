"""Prometheus metrics of the operator, in a registry of their own (one per operator instance)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.reconciles = Counter(
            "mcpfleet_operator_reconciles",
            "MCPServer reconciliations by trigger and result.",
            ["trigger", "result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "mcpfleet_operator_reconcile_duration_seconds",
            "Time to reconcile one MCPServer.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.managed_objects = Gauge(
            "mcpfleet_operator_managed_objects",
            "MCPServer objects the operator currently manages.",
            registry=self.registry,
        )
        self.api_writes = Counter(
            "mcpfleet_operator_api_writes",
            "Writes to the Kubernetes API for child objects, by kind and action.",
            ["kind", "action"],
            registry=self.registry,
        )
        self.catalog_writes = Counter(
            "mcpfleet_operator_catalog_writes",
            "Catalog write attempts by result (written, unchanged, pinned, error).",
            ["result"],
            registry=self.registry,
        )
        self.catalog_revision = Gauge(
            "mcpfleet_operator_catalog_revision",
            "Revision of the catalog last written or read.",
            registry=self.registry,
        )
        self.catalog_sync_seconds = Histogram(
            "mcpfleet_operator_catalog_sync_seconds",
            "From a tool report (or an endpoint change) to the catalog revision that includes it.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30),
            registry=self.registry,
        )
        self.tool_reports = Counter(
            "mcpfleet_operator_tool_reports",
            "Tool lists confirmed with tools/list, by result (confirmed, mismatch, unreachable, ...).",
            ["result"],
            registry=self.registry,
        )
        self.tool_drift = Counter(
            "mcpfleet_operator_tool_drift",
            "Tools that kept their name but changed their description or input schema.",
            registry=self.registry,
        )
        self.tools_pending = Gauge(
            "mcpfleet_operator_tools_pending_approval",
            "Tools held out of the catalog until approved (spec.tools.requireApproval).",
            registry=self.registry,
        )
        self.errors = Counter(
            "mcpfleet_operator_errors",
            "Reconciliation errors by class (temporary, permanent).",
            ["error"],
            registry=self.registry,
        )
