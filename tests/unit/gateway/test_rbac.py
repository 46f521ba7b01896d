"""The RBAC matrix: roles x tools x namespaces, and tools/list showing exactly what may be called."""

from __future__ import annotations

from typing import Any

import pytest

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_gateway.rbac import Authorizer, RBACSettings, RoleSpec, ToolGrant

GET_PODS = ToolGrant("k8s:list_pods", Risk.SAFE, ("k8s:get",))
SCALE = ToolGrant("k8s:scale_deployment", Risk.MEDIUM, ("k8s:scale",))
DELETE = ToolGrant("k8s:delete_resource", Risk.HIGH, ("k8s:delete",))
QUERY = ToolGrant("monitoring:query_metrics", Risk.SAFE, ("metrics:query",))
TOOLS = [GET_PODS, SCALE, DELETE, QUERY]

SEED = RBACSettings(namespace_roles={"production": ("admin",), "staging": ("operator", "admin"), "prod-*": ("admin",)})


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer(SEED)


@pytest.mark.parametrize(
    ("roles", "tool", "arguments", "allowed", "reason"),
    [
        (["viewer"], GET_PODS, {"namespace": "development"}, True, ""),
        (["viewer"], SCALE, {"namespace": "development"}, False, "MEDIUM risk; the caller's roles allow up to SAFE"),
        (["operator"], SCALE, {"namespace": "staging"}, True, ""),
        (["operator"], SCALE, {"namespace": "production"}, False, "namespace production needs role admin"),
        (["operator"], SCALE, {"namespace": "prod-eu"}, False, "namespace prod-eu needs role admin"),
        (["operator"], DELETE, {"namespace": "development"}, False, "HIGH risk; the caller's roles allow up to MEDIUM"),
        (["admin"], DELETE, {"namespace": "production"}, True, ""),
        (["viewer"], GET_PODS, {"namespace": "staging"}, False, "namespace staging needs role operator or admin"),
        (["operator"], GET_PODS, {"all_namespaces": True}, False, "across all namespaces reaches production"),
        (["admin"], GET_PODS, {"all_namespaces": True}, True, ""),
        (["viewer", "operator"], SCALE, {"namespace": "staging"}, True, ""),
        (["intern"], GET_PODS, {}, False, "none of the caller's roles (intern) is defined"),
        ([], GET_PODS, {}, False, "none of the caller's roles (none) is defined"),
    ],
)
def test_the_matrix(
    authz: Authorizer, roles: list[str], tool: ToolGrant, arguments: dict[str, Any], allowed: bool, reason: str
) -> None:
    decision = authz.authorize(roles, tool, arguments)
    assert decision.allowed is allowed
    assert reason in decision.reason


def test_a_permission_the_catalog_requires_must_be_held() -> None:
    authz = Authorizer(RBACSettings(roles={"ops": RoleSpec(permissions=("tools:*", "k8s:get"), max_risk=Risk.HIGH)}))
    assert authz.authorize(["ops"], GET_PODS, {}).allowed
    denied = authz.authorize(["ops"], DELETE, {})
    assert denied.reason == "k8s:delete_resource needs permission k8s:delete, which no caller role grants"


def test_tools_list_shows_exactly_what_may_be_called(authz: Authorizer) -> None:
    assert [t.name for t in authz.visible(["viewer"], TOOLS)] == ["k8s:list_pods", "monitoring:query_metrics"]
    assert [t.name for t in authz.visible(["operator"], TOOLS)] == [
        "k8s:list_pods",
        "k8s:scale_deployment",
        "monitoring:query_metrics",
    ]
    assert [t.name for t in authz.visible(["admin"], TOOLS)] == [t.name for t in TOOLS]
    executor_only = Authorizer(RBACSettings(roles={"bot": RoleSpec(permissions=("tools:execute", "k8s:get"))}))
    assert executor_only.visible(["bot"], TOOLS) == [], "no tools:list, nothing listed"
    assert executor_only.authorize(["bot"], GET_PODS, {}).allowed, "but it may still call what it knows"
