"""What each server type gets when its spec is silent: tool prefix, MCP path and RBAC."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mcpfleet_contracts.mcpserver import TOOL_PREFIX, MCPServerSpec, RBACPreset, RBACScope, ServerType, parse_spec
from mcpfleet_operator.builders.defaults import (
    PRESET_RULES,
    TYPE_DEFAULTS,
    effective_path,
    effective_rbac,
    effective_tool_prefix,
)

CLUSTER_SCOPED = {"nodes", "namespaces", "persistentvolumes"}
IMAGE = "example.com/mcp:1"


def _spec(**fields: Any) -> MCPServerSpec:
    return parse_spec(fields)


def _resources(rules: list[dict[str, Any]]) -> set[str]:
    return {resource for rule in rules for resource in rule["resources"]}


# -------------------------------------------------------------------- prefix


def test_explicit_prefix_wins() -> None:
    assert effective_tool_prefix(_spec(type="k8s-ops", toolPrefix="ops"), "anything") == "ops"
    assert effective_tool_prefix(_spec(type="custom", image=IMAGE, toolPrefix="mine"), "anything") == "mine"


@pytest.mark.parametrize(
    ("server_type", "expected"),
    [("k8s-ops", "k8s"), ("monitoring", "monitoring"), ("cmdb", "cmdb")],
)
def test_builtin_prefix_per_type(server_type: str, expected: str) -> None:
    extra: dict[str, Any] = (
        {"config": {"monitoring": {"prometheusUrl": "http://prometheus:9090"}}} if server_type == "monitoring" else {}
    )
    assert effective_tool_prefix(_spec(type=server_type, **extra), "some-name") == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tickets", "tickets"),
        ("my-server", "my-server"),
        ("my.server.v2", "my-server-v2"),
        ("9lives", "s-9lives"),
        ("42", "s-42"),
        ("a" * 40, "a" * 32),
        ("x" * 31 + "-y", "x" * 31),
        ("9" + "a" * 60, "s-9" + "a" * 29),
    ],
)
def test_custom_prefix_derived_from_the_name(name: str, expected: str) -> None:
    prefix = effective_tool_prefix(_spec(type="custom", image=IMAGE), name)
    assert prefix == expected
    assert re.fullmatch(TOOL_PREFIX, prefix), f"{prefix!r} would be refused as spec.toolPrefix"


@pytest.mark.parametrize(
    "name",
    ["a", "z9", "a-b", "0", "0-0", "a.b.c", "a" * 253, "1" * 253, "a-" * 100 + "b", "ab" + "-" * 30 + "c", "a.-b"],
)
def test_derived_prefix_is_always_a_valid_tool_prefix(name: str) -> None:
    prefix = effective_tool_prefix(_spec(type="custom", image=IMAGE), name)
    assert re.fullmatch(TOOL_PREFIX, prefix), f"{name!r} -> {prefix!r}"


# ---------------------------------------------------------------------- path


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "/mcp"),
        ({"transport": "streamable-http"}, "/mcp"),
        ({"transport": "sse"}, "/sse"),
        ({"transport": "sse", "path": "/events"}, "/events"),
        ({"path": "/v2/mcp"}, "/v2/mcp"),
        ({"transport": "stdio"}, None),
        ({"transport": "stdio", "path": "/ignored"}, None),
    ],
)
def test_effective_path(fields: dict[str, Any], expected: str | None) -> None:
    assert effective_path(_spec(type="custom", image=IMAGE, **fields)) == expected


# ---------------------------------------------------------------------- RBAC


@pytest.mark.parametrize(
    ("fields", "scope", "preset"),
    [
        ({"type": "k8s-ops"}, RBACScope.CLUSTER, RBACPreset.READ_ONLY),
        (
            {"type": "monitoring", "config": {"monitoring": {"prometheusUrl": "http://p:9090"}}},
            RBACScope.CLUSTER,
            RBACPreset.READ_ONLY,
        ),
        ({"type": "cmdb"}, RBACScope.CLUSTER, RBACPreset.READ_ONLY),
        (
            {"type": "cmdb", "config": {"cmdb": {"backend": "rest", "url": "https://cmdb.example.com"}}},
            RBACScope.NAMESPACE,
            RBACPreset.NONE,
        ),
        ({"type": "custom", "image": IMAGE}, RBACScope.NAMESPACE, RBACPreset.NONE),
    ],
)
def test_type_defaults(fields: dict[str, Any], scope: RBACScope, preset: RBACPreset) -> None:
    spec = _spec(**fields)
    actual_scope, rules = effective_rbac(spec)
    assert actual_scope == scope
    assert rules == [dict(rule) for rule in PRESET_RULES.get((spec.type, preset), ())]
    assert bool(rules) == (preset != RBACPreset.NONE)


def test_k8s_ops_read_only_is_read_only() -> None:
    _, rules = effective_rbac(_spec(type="k8s-ops"))
    verbs = {verb for rule in rules for verb in rule["verbs"]}
    assert verbs == {"get", "list", "watch"}
    assert {"pods", "pods/log", "deployments", "nodes", "events"} <= _resources(rules)


def test_operator_preset_adds_scale_restart_and_rollback() -> None:
    _, read_only = effective_rbac(_spec(type="k8s-ops"))
    _, operator = effective_rbac(_spec(type="k8s-ops", rbac={"preset": "operator"}))
    assert operator[: len(read_only)] == read_only
    extra = operator[len(read_only) :]
    assert {"deployments/scale", "controllerrevisions"} <= _resources(extra)
    assert any("patch" in rule["verbs"] and "deployments" in rule["resources"] for rule in extra)


def test_preset_none_means_no_rules() -> None:
    assert effective_rbac(_spec(type="k8s-ops", rbac={"preset": "none"})) == (RBACScope.CLUSTER, [])


def test_namespace_scope_drops_cluster_scoped_resources() -> None:
    scope, rules = effective_rbac(_spec(type="k8s-ops", rbac={"scope": "Namespace"}))
    assert scope == RBACScope.NAMESPACE
    assert not CLUSTER_SCOPED & _resources(rules)
    assert {"pods", "deployments"} <= _resources(rules)
    # metrics.k8s.io keeps pods; a rule left with no resource disappears instead of granting nothing.
    assert all(rule["resources"] for rule in rules)
    assert {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]} in rules


def test_cluster_scope_keeps_cluster_scoped_resources() -> None:
    _, rules = effective_rbac(_spec(type="k8s-ops", rbac={"scope": "Cluster"}))
    assert _resources(rules) >= CLUSTER_SCOPED


def test_explicit_rules_replace_the_preset() -> None:
    rule = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"], "resourceNames": ["web"]}
    scope, rules = effective_rbac(_spec(type="k8s-ops", rbac={"rules": [rule]}))
    assert scope == RBACScope.CLUSTER
    assert rules == [rule]


def test_explicit_rules_on_a_namespaced_type_and_empty_api_groups() -> None:
    rule = {"apiGroups": [], "resources": ["configmaps", "nodes"], "verbs": ["get"]}
    scope, rules = effective_rbac(_spec(type="custom", image=IMAGE, rbac={"rules": [rule]}))
    assert scope == RBACScope.NAMESPACE
    assert rules == [{"apiGroups": [], "resources": ["configmaps"], "verbs": ["get"]}]


def test_explicit_empty_rules_mean_no_access() -> None:
    assert effective_rbac(_spec(type="k8s-ops", rbac={"rules": []}))[1] == []


@pytest.mark.parametrize(
    ("key", "rules"),
    [pytest.param(key, rules, id=f"{key[0].value}-{key[1].value}") for key, rules in PRESET_RULES.items()],
)
def test_no_preset_grants_secrets_exec_or_wildcards(key: tuple[ServerType, RBACPreset], rules: Any) -> None:
    for rule in rules:
        assert "secrets" not in rule["resources"], key
        assert not {r for r in rule["resources"] if r.startswith("pods/") and r != "pods/log"}, key
        assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"], key
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), key


@pytest.mark.parametrize("server_type", list(ServerType))
@pytest.mark.parametrize("preset", list(RBACPreset))
@pytest.mark.parametrize("scope", list(RBACScope))
def test_no_combination_grants_secrets(server_type: ServerType, preset: RBACPreset, scope: RBACScope) -> None:
    fields: dict[str, Any] = {"type": server_type.value, "rbac": {"preset": preset.value, "scope": scope.value}}
    if server_type == ServerType.CUSTOM:
        fields["image"] = IMAGE
    if server_type == ServerType.MONITORING:
        fields["config"] = {"monitoring": {"prometheusUrl": "http://p:9090"}}
    _, rules = effective_rbac(_spec(**fields))
    assert "secrets" not in _resources(rules)


def test_every_type_has_defaults() -> None:
    assert set(TYPE_DEFAULTS) == set(ServerType)
    for server_type, defaults in TYPE_DEFAULTS.items():
        if defaults.tool_prefix is not None:
            assert re.fullmatch(TOOL_PREFIX, defaults.tool_prefix), server_type


def test_effective_rbac_returns_fresh_rules() -> None:
    _, first = effective_rbac(_spec(type="k8s-ops"))
    for rule in first:
        rule["verbs"].append("delete")
        rule["resources"].append("secrets")
    _, second = effective_rbac(_spec(type="k8s-ops"))
    assert "secrets" not in _resources(second)
    assert all("delete" not in rule["verbs"] for rule in second)
