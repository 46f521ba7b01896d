"""The operator's own permissions: exactly the API calls it makes, derived from the kinds it manages.

The Helm chart and the e2e tier both install what this builds, so a new child kind or a new verb
in the operator shows up here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from mcpfleet_operator.builders.model import CHILD_KINDS, CLUSTER_ROLE, CONFIG_MAP, MCPSERVER, ROLE, ResourceKind

OPERATOR_NAME = "mcpfleet-operator"

# Reads, server-side apply (create + patch) and deletion of orphans; kopf lists and watches each kind.
CHILD_VERBS = ("get", "list", "watch", "create", "patch", "delete")
# kopf lists and watches MCPServers and patches them for its finalizer and progress annotations.
MCPSERVER_VERBS = ("get", "list", "watch", "patch")
STATUS_VERBS = ("get", "patch")
# The API server refuses to let anyone create a Role granting what they do not hold, unless they may
# `escalate` (Roles) and `bind` (bindings). MCPServers carry arbitrary rules (spec.rbac.rules), so
# the operator needs both; who may create MCPServers is therefore a privileged decision.
RBAC_ESCALATION_VERBS = ("bind", "escalate")


def _group(kinds: list[ResourceKind]) -> dict[str, list[str]]:
    by_group: dict[str, list[str]] = {}
    for kind in kinds:
        by_group.setdefault(kind.group, []).append(kind.plural)
    return {group: sorted(plurals) for group, plurals in sorted(by_group.items())}


def operator_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {"apiGroups": [MCPSERVER.group], "resources": [MCPSERVER.plural], "verbs": list(MCPSERVER_VERBS)},
        {"apiGroups": [MCPSERVER.group], "resources": [f"{MCPSERVER.plural}/status"], "verbs": list(STATUS_VERBS)},
    ]
    rules += [
        {"apiGroups": [group], "resources": plurals, "verbs": list(CHILD_VERBS)}
        for group, plurals in _group(list(CHILD_KINDS)).items()
    ]
    rules += [
        {
            "apiGroups": [ROLE.group],
            "resources": [ROLE.plural, CLUSTER_ROLE.plural],
            "verbs": list(RBAC_ESCALATION_VERBS),
        },
        # kopf discovers and follows custom resource definitions and namespaces while running cluster-wide.
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        # Contract 2: server Pods carry the tool report; the operator follows them and reads their IPs.
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        # Contract 3: the catalog is replaced with its resourceVersion (a PUT), so no concurrent write is lost.
        {"apiGroups": [CONFIG_MAP.group], "resources": [CONFIG_MAP.plural], "verbs": ["update"]},
        # kopf posts an Event for each handler outcome.
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    return rules


def operator_rbac(namespace: str, service_account: str = OPERATOR_NAME) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole and ClusterRoleBinding for an operator running as `service_account`."""
    labels = {"app.kubernetes.io/name": OPERATOR_NAME, "app.kubernetes.io/part-of": "mcpfleet"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": service_account, "namespace": namespace, "labels": labels},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": OPERATOR_NAME, "labels": labels},
            "rules": operator_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": OPERATOR_NAME, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
        },
    ]
