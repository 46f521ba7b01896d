"""What each server type gets when its spec is silent: prefix, path, permissions."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from mcpfleet_contracts.mcpserver import (
    CMDBBackend,
    MCPServerSpec,
    RBACPreset,
    RBACScope,
    Risk,
    ServerType,
    Transport,
)


@dataclass(frozen=True)
class TypeDefaults:
    tool_prefix: str | None
    preset: RBACPreset
    scope: RBACScope


TYPE_DEFAULTS: dict[ServerType, TypeDefaults] = {
    ServerType.K8S_OPS: TypeDefaults("k8s", RBACPreset.READ_ONLY, RBACScope.CLUSTER),
    ServerType.MONITORING: TypeDefaults("monitoring", RBACPreset.READ_ONLY, RBACScope.CLUSTER),
    # The embedded kubernetes backend reads the cluster; rest and netbox backends need no API access at all.
    ServerType.CMDB: TypeDefaults("cmdb", RBACPreset.READ_ONLY, RBACScope.CLUSTER),
    ServerType.CUSTOM: TypeDefaults(None, RBACPreset.NONE, RBACScope.NAMESPACE),
}

# Where a built-in server's own judgement differs from the name's verb: creating a silence, a dashboard or an
# annotation changes what people see but destroys nothing. The servers are mcpfleet's code, so the catalog
# takes their word; spec.tools.riskOverrides still has the last word.
BUILT_IN_RISK_OVERRIDES: dict[ServerType, dict[str, Risk]] = {
    ServerType.MONITORING: {
        "create_silence": Risk.MEDIUM,
        "expire_silence": Risk.MEDIUM,
        "create_dashboard": Risk.MEDIUM,
        "create_annotation": Risk.MEDIUM,
    },
}

DEFAULT_PATHS: dict[Transport, str] = {Transport.STREAMABLE_HTTP: "/mcp", Transport.SSE: "/sse"}

# Cluster-scoped resources are dropped from presets bound with a namespaced Role.
_CLUSTER_SCOPED = frozenset({"nodes", "namespaces", "persistentvolumes"})
_READ = ["get", "list", "watch"]

_K8S_READ_ONLY: tuple[dict[str, Any], ...] = (
    {
        "apiGroups": [""],
        "resources": [
            "pods",
            "pods/log",
            "services",
            "endpoints",
            "configmaps",
            "events",
            "namespaces",
            "nodes",
            "persistentvolumeclaims",
            "persistentvolumes",
            "replicationcontrollers",
            "resourcequotas",
            "limitranges",
            "serviceaccounts",
        ],
        "verbs": _READ,
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
        "verbs": _READ,
    },
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _READ},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": _READ},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": _READ},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": ["get", "list"]},
)

# Scale, restart (a template annotation patch), rollback, delete a pod, run a Job from a CronJob.
# Exec and Secrets are never in a preset: they need explicit spec.rbac.rules.
_K8S_OPERATOR_EXTRA: tuple[dict[str, Any], ...] = (
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "daemonsets"],
        "verbs": ["patch", "update"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments/scale", "statefulsets/scale", "replicasets/scale"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete"]},
)

# health_check() combines a Service's ready endpoints with its Prometheus targets and alerts.
_MONITORING_READ_ONLY: tuple[dict[str, Any], ...] = (
    {"apiGroups": [""], "resources": ["services", "endpoints", "pods", "namespaces"], "verbs": _READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
)

# The cmdb server's kubernetes backend: assets are nodes, namespaces, workloads, services, ingresses and
# volumes; topology follows them to ReplicaSets and Pods; change records are Events. The operator preset adds
# what update_asset_status writes: an annotation on the asset and an Event.
_CMDB_ASSETS = ("nodes", "namespaces", "services", "persistentvolumeclaims")
_CMDB_READ_ONLY: tuple[dict[str, Any], ...] = (
    {"apiGroups": [""], "resources": [*_CMDB_ASSETS, "pods", "events"], "verbs": ["get", "list"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
        "verbs": ["get", "list"],
    },
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list"]},
)
_CMDB_STATUS_WRITES: tuple[dict[str, Any], ...] = (
    {"apiGroups": [""], "resources": list(_CMDB_ASSETS), "verbs": ["patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["patch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
)

PRESET_RULES: dict[tuple[ServerType, RBACPreset], tuple[dict[str, Any], ...]] = {
    (ServerType.K8S_OPS, RBACPreset.READ_ONLY): _K8S_READ_ONLY,
    (ServerType.K8S_OPS, RBACPreset.OPERATOR): _K8S_READ_ONLY + _K8S_OPERATOR_EXTRA,
    (ServerType.MONITORING, RBACPreset.READ_ONLY): _MONITORING_READ_ONLY,
    (ServerType.MONITORING, RBACPreset.OPERATOR): _MONITORING_READ_ONLY,
    (ServerType.CMDB, RBACPreset.READ_ONLY): _CMDB_READ_ONLY,
    (ServerType.CMDB, RBACPreset.OPERATOR): _CMDB_READ_ONLY + _CMDB_STATUS_WRITES,
    # Custom servers get the generic Kubernetes presets when asked for them.
    (ServerType.CUSTOM, RBACPreset.READ_ONLY): _K8S_READ_ONLY,
    (ServerType.CUSTOM, RBACPreset.OPERATOR): _K8S_READ_ONLY + _K8S_OPERATOR_EXTRA,
}


def effective_tool_prefix(spec: MCPServerSpec, name: str) -> str:
    """spec.toolPrefix, the type's prefix, or (custom) one derived from the object's name."""
    if spec.tool_prefix:
        return spec.tool_prefix
    default = TYPE_DEFAULTS[spec.type].tool_prefix
    if default:
        return default
    cleaned = re.sub(r"[^a-z0-9-]", "-", name.lower())
    if not cleaned[:1].isalpha():
        cleaned = f"s-{cleaned}"
    return cleaned[:32].rstrip("-") or "custom"


def effective_path(spec: MCPServerSpec) -> str | None:
    if spec.transport == Transport.STDIO:
        return None
    return spec.path or DEFAULT_PATHS[spec.transport]


def effective_rbac(spec: MCPServerSpec) -> tuple[RBACScope, list[dict[str, Any]]]:
    """The scope and the rules of the server's Role (or ClusterRole); no rules means no Role at all."""
    rbac = spec.rbac
    defaults = TYPE_DEFAULTS[spec.type]
    if _cmdb_without_kubernetes(spec):
        defaults = TypeDefaults(defaults.tool_prefix, RBACPreset.NONE, RBACScope.NAMESPACE)
    scope = (rbac.scope if rbac else None) or defaults.scope
    if rbac is not None and rbac.rules is not None:
        rules = [rule.to_wire() for rule in rbac.rules]
        for rule in rules:
            rule.setdefault("apiGroups", [])
    else:
        preset = (rbac.preset if rbac else None) or defaults.preset
        # Deep copies: the presets share their verb lists, and a caller editing one built Role must
        # not change the permissions of every server built after it.
        rules = [copy.deepcopy(rule) for rule in PRESET_RULES.get((spec.type, preset), ())]
    if scope == RBACScope.NAMESPACE:
        rules = _without_cluster_scoped(rules)
    return scope, rules


def _cmdb_without_kubernetes(spec: MCPServerSpec) -> bool:
    """A cmdb server on a rest or netbox backend never talks to the Kubernetes API."""
    cmdb = spec.config.cmdb if spec.config is not None else None
    return spec.type == ServerType.CMDB and cmdb is not None and cmdb.backend != CMDBBackend.KUBERNETES


def _without_cluster_scoped(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = []
    for rule in rules:
        resources = [r for r in rule["resources"] if r not in _CLUSTER_SCOPED]
        if resources:
            kept.append({**rule, "resources": resources})
    return kept
