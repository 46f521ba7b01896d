"""Invalid MCPServers are refused by the real API server, with a message that says what to change.

Two tables: one written against the API server's own phrasing (schema types, enums, patterns,
bounds, list keys, CEL rules, the name rule), and the operator's whole invalid-spec table from the
unit tier, which the API server must refuse too, with the same words for every cross-field rule.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from mcpfleet_contracts.mcpserver import API_VERSION, KIND, CMDBConfig, MCPServerSpec, RBACSpec
from tests.e2e.conftest import Cluster
from tests.unit.test_invalid_specs import INVALID as OPERATOR_SIDE_INVALID

ENDPOINT = "https://mcp.example.com/mcp"


def mcpserver(spec: dict[str, Any], name: str = "invalid") -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


# (id, object, substrings the API server's refusal must contain)
REFUSED: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("missing-type", mcpserver({}), ("spec.type: Required value",)),
    (
        "unknown-type",
        mcpserver({"type": "postgres"}),
        ('spec.type: Unsupported value: "postgres"', '"k8s-ops", "monitoring", "cmdb", "custom"'),
    ),
    (
        "replicas-not-a-number",
        mcpserver({"type": "k8s-ops", "replicas": "two"}),
        ("spec.replicas", "must be of type integer"),
    ),
    (
        "tool-prefix-pattern",
        mcpserver({"type": "k8s-ops", "toolPrefix": "K8s"}),
        ('spec.toolPrefix: Invalid value: "K8s"', "should match '^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$'"),
    ),
    (
        "port-below-1024",
        mcpserver({"type": "k8s-ops", "port": 80}),
        ("spec.port: Invalid value: 80", "should be greater than or equal to 1024"),
    ),
    (
        "replicas-above-50",
        mcpserver({"type": "k8s-ops", "replicas": 51}),
        ("spec.replicas: Invalid value: 51", "should be less than or equal to 50"),
    ),
    (
        "unknown-field",
        mcpserver({"type": "k8s-ops", "replica": 2}),
        ('unknown field "spec.replica"',),
    ),
    (
        "risk-enum-in-map",
        mcpserver({"type": "k8s-ops", "tools": {"riskOverrides": {"k8s:delete_pod": "CRITICAL"}}}),
        ('spec.tools.riskOverrides.k8s:delete_pod: Unsupported value: "CRITICAL"', '"SAFE", "MEDIUM", "HIGH"'),
    ),
    (
        "env-name-twice",
        mcpserver({"type": "k8s-ops", "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
        ("spec.env[1]: Duplicate value",),
    ),
    (
        "cel-custom-needs-image-or-endpoint",
        mcpserver({"type": "custom"}),
        ("spec: Required value", "type custom needs spec.image (a container mcpfleet runs) or spec.endpoint"),
    ),
    (
        "cel-image-and-endpoint",
        mcpserver({"type": "custom", "image": "example.com/mcp:1", "endpoint": ENDPOINT}),
        ("spec.image and spec.endpoint exclude each other",),
    ),
    (
        "cel-stdio-with-two-replicas",
        mcpserver({"type": "custom", "image": "example.com/mcp:1", "transport": "stdio", "replicas": 2}),
        ("transport stdio serves one client through one pod: set spec.replicas to 1",),
    ),
    (
        "cel-rbac-preset-and-rules",
        mcpserver(
            {
                "type": "k8s-ops",
                "rbac": {
                    "preset": "read-only",
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
                },
            }
        ),
        ("spec.rbac: Forbidden", "spec.rbac.preset and spec.rbac.rules exclude each other"),
    ),
    (
        "cel-cmdb-rest-needs-url",
        mcpserver({"type": "cmdb", "config": {"cmdb": {"backend": "netbox"}}}),
        ("spec.config.cmdb.url: Required value", "spec.config.cmdb.backend rest and netbox need spec.config.cmdb.url"),
    ),
    (
        "cel-cmdb-audit-url-without-credentials",
        mcpserver({"type": "cmdb", "config": {"cmdb": {"auditRedisUrl": "redis://:hunter2@redis:6379"}}}),
        ("spec.config.cmdb.auditRedisUrl: Invalid value", "auditRedisUrl must not carry credentials"),
    ),
    (
        "cel-reserved-env-name",
        mcpserver({"type": "k8s-ops", "env": [{"name": "MCP_PORT", "value": "9000"}]}),
        ("spec.env must not set POD_NAME",),
    ),
    (
        "name-too-long-for-a-service",
        mcpserver({"type": "k8s-ops"}, name="x" * 64),
        ("metadata.name",),
    ),
    (
        "name-with-a-dot",
        mcpserver({"type": "k8s-ops"}, name="a.b"),
        ("metadata.name",),
    ),
]


@pytest.mark.parametrize(("obj", "expected"), [pytest.param(o, e, id=i) for i, o, e in REFUSED])
def test_the_api_server_refuses_with_a_specific_message(
    cluster: Cluster, namespace: str, obj: dict[str, Any], expected: tuple[str, ...]
) -> None:
    result = cluster.apply(obj, "-n", namespace)
    assert result.returncode != 0, f"accepted: {obj}"
    for fragment in expected:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"
    assert cluster.ok("get", "mcps", "-n", namespace, "-o", "name") == "", "a refused object was stored"


def test_the_table_covers_at_least_twelve_objects() -> None:
    assert len(REFUSED) >= 12
    assert len({case_id for case_id, _, _ in REFUSED}) == len(REFUSED)


def _cross_field_messages(models: tuple[type[BaseModel], ...]) -> tuple[str, ...]:
    return tuple(rule.message for model in models for rule in getattr(model, "cel_rules", ()))


@pytest.mark.parametrize(
    ("spec", "operator_message"),
    [pytest.param(spec, expected, id=case_id) for case_id, spec, expected, _ in OPERATOR_SIDE_INVALID],
)
def test_what_the_operator_refuses_the_api_server_refuses(
    cluster: Cluster, namespace: str, spec: dict[str, Any], operator_message: str
) -> None:
    result = cluster.apply(mcpserver(spec), "-n", namespace, "--dry-run=server")
    assert result.returncode != 0, f"the operator refuses {spec} ({operator_message}) but the API server accepts it"
    for message in _cross_field_messages((MCPServerSpec, RBACSpec, CMDBConfig)):
        if message in operator_message:
            assert message in result.stderr, f"the API server words rule {message!r} differently:\n{result.stderr}"
