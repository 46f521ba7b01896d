"""The vocabulary of the builders: the owner, the child kinds, names and labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcpfleet_contracts.mcpserver import API_VERSION, KIND

Manifest = dict[str, Any]

MANAGED_BY = "mcpfleet-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_SERVER = "mcpfleet.io/server"
LABEL_OWNER_NAMESPACE = "mcpfleet.io/owner-namespace"
LABEL_OWNER_UID = "mcpfleet.io/owner-uid"
LABEL_TYPE = "mcpfleet.io/type"
ANNOTATION_CONFIG_HASH = "mcpfleet.io/config-hash"


@dataclass(frozen=True)
class Owner:
    """The MCPServer a set of children belongs to."""

    name: str
    namespace: str
    uid: str
    generation: int = 1

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class ResourceKind:
    """A kind of object the operator reads or writes: MCPServer and its children."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def name_for(self, owner: Owner) -> str:
        if not self.namespaced:
            # Cluster-scoped objects cannot carry a namespaced owner; the name keeps them unique.
            return f"mcpfleet:{owner.namespace}:{owner.name}"
        if self.kind == "ConfigMap":
            return f"{owner.name}-config"
        return owner.name


DEPLOYMENT = ResourceKind("apps", "v1", "Deployment", "deployments")
SERVICE = ResourceKind("", "v1", "Service", "services")
SERVICE_ACCOUNT = ResourceKind("", "v1", "ServiceAccount", "serviceaccounts")
CONFIG_MAP = ResourceKind("", "v1", "ConfigMap", "configmaps")
ROLE = ResourceKind("rbac.authorization.k8s.io", "v1", "Role", "roles")
ROLE_BINDING = ResourceKind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings")
CLUSTER_ROLE = ResourceKind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDING = ResourceKind(
    "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False
)
NETWORK_POLICY = ResourceKind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies")

# The order children are applied in: identities and config before the pods that use them.
CHILD_KINDS: tuple[ResourceKind, ...] = (
    SERVICE_ACCOUNT,
    ROLE,
    ROLE_BINDING,
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    CONFIG_MAP,
    DEPLOYMENT,
    SERVICE,
    NETWORK_POLICY,
)


@dataclass(frozen=True)
class BuildDefaults:
    """Operator-wide defaults the builders fill in where a spec is silent."""

    server_image: str = "ghcr.io/mcpfleet/mcpfleet:0.1.0"
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "50m", "memory": "64Mi"})
    limits: dict[str, str] = field(default_factory=lambda: {"cpu": "500m", "memory": "256Mi"})
    run_as_user: int = 10001


def selector_labels(owner: Owner) -> dict[str, str]:
    """Labels that select the server's pods (immutable once a Deployment exists)."""
    return {LABEL_SERVER: owner.name, "app.kubernetes.io/component": "mcp-server"}


def child_labels(owner: Owner, server_type: str) -> dict[str, str]:
    """Labels on every child: who owns it and who manages it."""
    return {
        **selector_labels(owner),
        "app.kubernetes.io/name": "mcpfleet-server",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/part-of": "mcpfleet",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TYPE: server_type,
        LABEL_OWNER_NAMESPACE: owner.namespace,
    }


def child_metadata(kind: ResourceKind, owner: Owner, server_type: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": kind.name_for(owner), "labels": child_labels(owner, server_type)}
    if kind.namespaced:
        meta["namespace"] = owner.namespace
        meta["ownerReferences"] = [owner.owner_reference()]
    else:
        meta["labels"][LABEL_OWNER_UID] = owner.uid
    return meta


def owner_of(child: dict[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the MCPServer a child belongs to, from its labels."""
    labels = (child.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        return None
    name, namespace = labels.get(LABEL_SERVER), labels.get(LABEL_OWNER_NAMESPACE)
    if not name or not namespace:
        return None
    return namespace, name


def is_owned_by(child: dict[str, Any], owner: Owner) -> bool:
    """Whether a live object is ours to change (and not a stranger's object with the same name)."""
    meta = child.get("metadata") or {}
    if any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences") or ()):
        return True
    return bool((meta.get("labels") or {}).get(LABEL_OWNER_UID) == owner.uid)


MCPSERVER = ResourceKind("mcpfleet.io", "v1alpha1", "MCPServer", "mcpservers")
