"""Specs the operator refuses, with the message a user reads in the MCPServer's status and events."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mcpfleet_contracts.errors import describe_validation_error
from mcpfleet_contracts.mcpserver import MCPServerSpec, check_name, parse_spec
from tests.unit.helpers import SAMPLE_FILES, load_sample

ENDPOINT = "https://mcp.example.com/mcp"
RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}

# (id, spec, the exact substring the message must contain, the field path the message starts with)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing-type", {}, "spec.type: Field required", "spec.type"),
    (
        "unknown-type",
        {"type": "postgres"},
        "spec.type: Input should be 'k8s-ops', 'monitoring', 'cmdb' or 'custom'",
        "spec.type",
    ),
    (
        "tool-prefix-uppercase",
        {"type": "k8s-ops", "toolPrefix": "K8s"},
        "spec.toolPrefix: String should match pattern '^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$'",
        "spec.toolPrefix",
    ),
    (
        "tool-prefix-colon",
        {"type": "k8s-ops", "toolPrefix": "k8s:"},
        "spec.toolPrefix: String should match pattern",
        "spec.toolPrefix",
    ),
    (
        "port-below-1024",
        {"type": "k8s-ops", "port": 80},
        "spec.port: Input should be greater than or equal to 1024",
        "spec.port",
    ),
    (
        "replicas-above-50",
        {"type": "k8s-ops", "replicas": 51},
        "spec.replicas: Input should be less than or equal to 50",
        "spec.replicas",
    ),
    (
        "negative-replicas",
        {"type": "k8s-ops", "replicas": -1},
        "spec.replicas: Input should be greater than or equal to 0",
        "spec.replicas",
    ),
    (
        "custom-without-image-or-endpoint",
        {"type": "custom"},
        "spec: type custom needs spec.image (a container mcpfleet runs) or spec.endpoint",
        "spec",
    ),
    (
        "image-and-endpoint",
        {"type": "custom", "image": "example.com/mcp:1", "endpoint": ENDPOINT},
        "spec: spec.image and spec.endpoint exclude each other",
        "spec",
    ),
    (
        "endpoint-with-replicas",
        {"type": "custom", "endpoint": ENDPOINT, "replicas": 2},
        "spec: spec.replicas and spec.resources apply only to servers mcpfleet runs",
        "spec",
    ),
    (
        "endpoint-with-resources",
        {"type": "custom", "endpoint": ENDPOINT, "resources": {"limits": {"cpu": "1"}}},
        "spec.replicas and spec.resources apply only to servers mcpfleet runs",
        "spec",
    ),
    (
        "endpoint-with-env",
        {"type": "custom", "endpoint": ENDPOINT, "env": [{"name": "A", "value": "b"}]},
        "spec: spec.env, envFrom, secretRefs, rbac, networkPolicy and imagePullPolicy configure pods mcpfleet runs",
        "spec",
    ),
    (
        "endpoint-with-rbac",
        {"type": "custom", "endpoint": ENDPOINT, "rbac": {"preset": "read-only"}},
        "remove them when spec.endpoint is set",
        "spec",
    ),
    (
        "stdio-with-two-replicas",
        {"type": "custom", "image": "example.com/mcp:1", "transport": "stdio", "replicas": 2},
        "spec: transport stdio serves one client through one pod: set spec.replicas to 1",
        "spec",
    ),
    (
        "stdio-with-endpoint",
        {"type": "custom", "endpoint": ENDPOINT, "transport": "stdio"},
        "spec: an external spec.endpoint is reached over HTTP: set spec.transport to streamable-http or sse",
        "spec",
    ),
    (
        "monitoring-without-config",
        {"type": "monitoring"},
        "spec: type monitoring needs spec.config.monitoring.prometheusUrl",
        "spec",
    ),
    (
        "monitoring-without-prometheus-url",
        {"type": "monitoring", "config": {"monitoring": {}}},
        "spec.config.monitoring.prometheusUrl: Field required",
        "spec.config.monitoring.prometheusUrl",
    ),
    (
        "cmdb-block-on-k8s-ops",
        {"type": "k8s-ops", "config": {"cmdb": {}}},
        "spec: spec.config.cmdb is only for type cmdb: use the spec.config block that matches spec.type",
        "spec",
    ),
    (
        "k8s-ops-block-on-custom",
        {"type": "custom", "image": "example.com/mcp:1", "config": {"k8sOps": {"readOnly": True}}},
        "spec.config.k8sOps is only for type k8s-ops",
        "spec",
    ),
    (
        "k8s-ops-block-misspelt-as-generated",
        {"type": "k8s-ops", "config": {"k8SOps": {"readOnly": True}}},
        "spec.config.k8SOps: unknown field; remove it or check its spelling",
        "spec.config.k8SOps",
    ),
    (
        "rbac-preset-and-rules",
        {"type": "k8s-ops", "rbac": {"preset": "read-only", "rules": [RULE]}},
        "spec.rbac: spec.rbac.preset and spec.rbac.rules exclude each other",
        "spec.rbac",
    ),
    (
        "rbac-rule-without-verbs",
        {"type": "k8s-ops", "rbac": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]}},
        "spec.rbac.rules.0.verbs: List should have at least 1 item",
        "spec.rbac.rules.0.verbs",
    ),
    (
        "cmdb-rest-without-url",
        {"type": "cmdb", "config": {"cmdb": {"backend": "rest"}}},
        "spec.config.cmdb: spec.config.cmdb.backend rest and netbox need spec.config.cmdb.url",
        "spec.config.cmdb",
    ),
    (
        "cmdb-audit-with-rest-backend",
        {
            "type": "cmdb",
            "config": {"cmdb": {"backend": "rest", "url": "http://cmdb", "auditRedisUrl": "redis://redis:6379"}},
        },
        "spec.config.cmdb: spec.config.cmdb.auditRedisUrl and auditStreams are read by the kubernetes backend only",
        "spec.config.cmdb",
    ),
    (
        "cmdb-audit-url-with-password",
        {"type": "cmdb", "config": {"cmdb": {"auditRedisUrl": "redis://:hunter2@redis:6379"}}},
        "spec.config.cmdb: spec.config.cmdb.auditRedisUrl must not carry credentials",
        "spec.config.cmdb",
    ),
    (
        "typo-in-spec",
        {"type": "k8s-ops", "replica": 2},
        "spec.replica: unknown field; remove it or check its spelling",
        "spec.replica",
    ),
    (
        "typo-in-nested-block",
        {"type": "k8s-ops", "config": {"k8sOps": {"readonly": True}}},
        "spec.config.k8sOps.readonly: unknown field",
        "spec.config.k8sOps.readonly",
    ),
    (
        "bad-quantity",
        {"type": "k8s-ops", "resources": {"limits": {"memory": "256MB"}}},
        "spec.resources.limits.memory: '256MB' is not a Kubernetes quantity",
        "spec.resources.limits.memory",
    ),
    (
        "bad-check-interval",
        {"type": "k8s-ops", "consul": {"checkInterval": "10 seconds"}},
        "spec.consul.checkInterval: String should match pattern '^([0-9]+(ms|s|m|h))+$'",
        "spec.consul.checkInterval",
    ),
    (
        "endpoint-not-http",
        {"type": "custom", "endpoint": "ftp://files.example.com"},
        "spec.endpoint: String should match pattern",
        "spec.endpoint",
    ),
    (
        "bad-env-name",
        {"type": "custom", "image": "example.com/mcp:1", "env": [{"name": "1=A", "value": "b"}]},
        "spec.env.0.name: String should match pattern",
        "spec.env.0.name",
    ),
    (
        "bad-risk",
        {"type": "k8s-ops", "tools": {"riskOverrides": {"k8s:delete_pod": "CRITICAL"}}},
        "spec.tools.riskOverrides.k8s:delete_pod: Input should be 'SAFE', 'MEDIUM' or 'HIGH'",
        "spec.tools.riskOverrides.k8s:delete_pod",
    ),
    (
        "image-with-spaces",
        {"type": "custom", "image": "example.com/mcp 1"},
        "spec.image: String should match pattern",
        "spec.image",
    ),
    (
        "env-sets-a-reserved-name",
        {"type": "k8s-ops", "env": [{"name": "MCP_PORT", "value": "9000"}]},
        "spec.env must not set POD_NAME, POD_NAMESPACE, MCPFLEET_SERVER_NAME, MCP_TRANSPORT",
        "spec",
    ),
    (
        "env-name-twice",
        {"type": "k8s-ops", "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        "spec.env: name 'A' appears twice: each name may appear once",
        "spec.env",
    ),
    (
        "secret-mounted-over-the-config",
        {"type": "cmdb", "secretRefs": [{"name": "db", "mountPath": "/etc/mcpfleet/db"}]},
        "spec.secretRefs[].mountPath must not be /tmp or /etc/mcpfleet or below",
        "spec",
    ),
]


@pytest.mark.parametrize(
    ("name", "valid"),
    [("k8s-ops", True), ("a", True), ("9lives", False), ("a.b", False), ("x" * 63, True), ("x" * 64, False)],
)
def test_object_name_must_fit_a_service_name(name: str, valid: bool) -> None:
    message = check_name(name)
    assert (message is None) is valid
    if not valid:
        assert message is not None
        assert "it names the server's Service" in message


def _message(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_spec(raw)
    return describe_validation_error(caught.value, root="spec")


@pytest.mark.parametrize(
    ("raw", "expected", "field"),
    [pytest.param(raw, expected, field, id=case_id) for case_id, raw, expected, field in INVALID],
)
def test_invalid_spec_message(raw: dict[str, Any], expected: str, field: str) -> None:
    message = _message(raw)
    assert expected in message
    assert message.startswith(f"{field}: "), f"the message should name {field} first: {message}"


def test_the_table_is_large_and_ids_are_unique() -> None:
    ids = [case_id for case_id, *_ in INVALID]
    assert len(ids) >= 14
    assert len(set(ids)) == len(ids)


def test_each_problem_is_listed_separately_in_field_order() -> None:
    message = _message({"type": "k8s-ops", "port": 80, "replicas": 99})
    assert message.split("; ") == [
        "spec.replicas: Input should be less than or equal to 50",
        "spec.port: Input should be greater than or equal to 1024",
    ]


def test_broken_cross_field_rules_are_all_reported() -> None:
    message = _message({"type": "custom", "image": "example.com/mcp:1", "endpoint": ENDPOINT, "replicas": 2})
    assert "spec.image and spec.endpoint exclude each other" in message
    assert "spec.replicas and spec.resources apply only to servers mcpfleet runs" in message


def test_describe_without_root_has_no_leading_dot() -> None:
    with pytest.raises(ValidationError) as caught:
        MCPServerSpec.model_validate({"type": "k8s-ops", "port": 80})
    assert describe_validation_error(caught.value) == "port: Input should be greater than or equal to 1024"


@pytest.mark.parametrize("stem", SAMPLE_FILES)
def test_sample_is_valid(stem: str) -> None:
    document = load_sample(stem)
    assert document["apiVersion"] == "mcpfleet.io/v1alpha1"
    assert document["kind"] == "MCPServer"
    assert "namespace" not in document["metadata"], "samples are applied with kubectl apply -n <namespace>"
    spec = parse_spec(document["spec"])
    # What the API server stores (defaults filled in) parses to the same spec.
    assert parse_spec(spec.to_wire()) == spec


def test_the_newcomer_sample() -> None:
    document = load_sample("mcpserver")
    spec = parse_spec(document["spec"])
    assert document["metadata"]["name"] == "k8s-ops"
    assert spec.type == "k8s-ops"
    assert spec.tool_prefix == "k8s"
    assert spec.rbac is not None
    assert spec.rbac.preset == "read-only"
    assert spec.config is not None
    assert spec.config.k8s_ops is not None
    assert spec.config.k8s_ops.require_confirmation is True
