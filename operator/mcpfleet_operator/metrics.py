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
        self.errors = Counter(
            "mcpfleet_operator_errors",
            "Reconciliation errors by class (temporary, permanent).",
            ["error"],
            registry=self.registry,
        )
