"""The Kubernetes kinds that are assets, how their ids read, and how an object becomes an Asset.

Environment: the object's label ``app.kubernetes.io/environment``, ``environment`` or ``env``, else its
namespace's. Owner: the annotation ``mcpfleet.io/owner``, else the label ``owner`` or ``team``, else its
namespace's. Status: the annotation ``mcpfleet.io/asset-status`` (set by update_asset_status), else
derived from readiness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcpfleet_servers.base.toolkit import InvalidArgument
from mcpfleet_servers.cmdb.models import Asset

STATUS_ANNOTATION = "mcpfleet.io/asset-status"
STATUS_REASON_ANNOTATION = "mcpfleet.io/asset-status-reason"
OWNER_ANNOTATION = "mcpfleet.io/owner"
ENVIRONMENT_LABELS = ("app.kubernetes.io/environment", "environment", "env")
OWNER_LABELS = ("owner", "team")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Kind:
    """One asset type as the API server serves it."""

    type: str
    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            prefix += f"/namespaces/{namespace}"
        return f"{prefix}/{self.plural}" + (f"/{name}" if name is not None else "")


NODE = Kind("node", "Node", "", "v1", "nodes", False)
NAMESPACE = Kind("namespace", "Namespace", "", "v1", "namespaces", False)
DEPLOYMENT = Kind("deployment", "Deployment", "apps", "v1", "deployments", True)
STATEFULSET = Kind("statefulset", "StatefulSet", "apps", "v1", "statefulsets", True)
DAEMONSET = Kind("daemonset", "DaemonSet", "apps", "v1", "daemonsets", True)
SERVICE = Kind("service", "Service", "", "v1", "services", True)
INGRESS = Kind("ingress", "Ingress", "networking.k8s.io", "v1", "ingresses", True)
PVC = Kind("persistentvolumeclaim", "PersistentVolumeClaim", "", "v1", "persistentvolumeclaims", True)
ASSET_KINDS: tuple[Kind, ...] = (NODE, NAMESPACE, DEPLOYMENT, STATEFULSET, DAEMONSET, SERVICE, INGRESS, PVC)
BY_TYPE = {k.type: k for k in ASSET_KINDS}
WORKLOADS = (DEPLOYMENT, STATEFULSET, DAEMONSET)
# Kinds that only appear in topologies and change records, never as assets.
POD = Kind("pod", "Pod", "", "v1", "pods", True)
REPLICASET = Kind("replicaset", "ReplicaSet", "apps", "v1", "replicasets", True)
EVENT = Kind("event", "Event", "", "v1", "events", True)
BY_KIND = {k.kind: k for k in (*ASSET_KINDS, POD, REPLICASET)}

ASSET_ID_FIELD = "asset_id"


def asset_id(kind: Kind, name: str, namespace: str | None) -> str:
    return f"{kind.type}/{namespace}/{name}" if kind.namespaced else f"{kind.type}/{name}"


def parse_asset_id(value: str, field: str = ASSET_ID_FIELD) -> tuple[Kind, str | None, str]:
    """``<type>/<namespace>/<name>`` or ``<type>/<name>`` for cluster-scoped types; InvalidArgument otherwise."""
    parts = value.split("/")
    kind = BY_TYPE.get(parts[0])
    if kind is None:
        raise InvalidArgument(field, f"{value!r} names no asset type; types: {', '.join(BY_TYPE)}")
    expected = 3 if kind.namespaced else 2
    if len(parts) != expected or not all(parts[1:]):
        shape = f"{kind.type}/<namespace>/<name>" if kind.namespaced else f"{kind.type}/<name>"
        raise InvalidArgument(field, f"{value!r} is not an asset id of type {kind.type}; expected {shape}")
    return (kind, parts[1], parts[2]) if kind.namespaced else (kind, None, parts[1])


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_meta(obj).get("labels") or {}).items()}


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_meta(obj).get("annotations") or {}).items()}


def environment_of(obj: dict[str, Any]) -> str | None:
    labels = labels_of(obj)
    return next((labels[key] for key in ENVIRONMENT_LABELS if labels.get(key)), None)


def owner_of(obj: dict[str, Any]) -> str | None:
    owner = annotations_of(obj).get(OWNER_ANNOTATION)
    if owner:
        return owner
    labels = labels_of(obj)
    return next((labels[key] for key in OWNER_LABELS if labels.get(key)), None)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _replicas_status(ready: int, desired: int) -> str:
    if desired == 0:
        return "inactive"
    return "active" if ready >= desired else "degraded"


def derived_status(kind: Kind, obj: dict[str, Any]) -> str:
    """What readiness says, before any stored override."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind is NODE:
        if spec.get("unschedulable"):
            return "maintenance"
        ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
        return "active" if ready and ready[0].get("status") == "True" else "degraded"
    if kind is NAMESPACE:
        return "terminating" if status.get("phase") == "Terminating" else "active"
    if kind in (DEPLOYMENT, STATEFULSET, REPLICASET):
        return _replicas_status(_int(status.get("readyReplicas")), _int(spec.get("replicas", 1)))
    if kind is DAEMONSET:
        return _replicas_status(_int(status.get("numberReady")), _int(status.get("desiredNumberScheduled")))
    if kind is PVC:
        phase = status.get("phase") or "Pending"
        return {"Bound": "active", "Pending": "pending"}.get(str(phase), "degraded")
    return "active"


def status_of(kind: Kind, obj: dict[str, Any]) -> str:
    return annotations_of(obj).get(STATUS_ANNOTATION) or derived_status(kind, obj)


def _attributes(kind: Kind, obj: dict[str, Any]) -> dict[str, str]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    attrs: dict[str, str] = {}
    if kind in (DEPLOYMENT, STATEFULSET):
        attrs["replicas"] = str(_int(spec.get("replicas", 1)))
        attrs["readyReplicas"] = str(_int(status.get("readyReplicas")))
    elif kind is SERVICE:
        attrs["serviceType"] = str(spec.get("type") or "ClusterIP")
        ports = [str(p.get("port")) for p in spec.get("ports") or [] if isinstance(p, dict)]
        if ports:
            attrs["ports"] = ",".join(ports[:10])
    elif kind is NODE:
        kubelet = (status.get("nodeInfo") or {}).get("kubeletVersion")
        if kubelet:
            attrs["kubeletVersion"] = str(kubelet)
    elif kind is PVC:
        capacity = (status.get("capacity") or {}).get("storage") or (
            (spec.get("resources") or {}).get("requests") or {}
        ).get("storage")
        if capacity:
            attrs["storage"] = str(capacity)
    reason = annotations_of(obj).get(STATUS_REASON_ANNOTATION)
    if reason:
        attrs["statusReason"] = reason
    created = _meta(obj).get("creationTimestamp")
    if created:
        attrs["created"] = str(created)
    return attrs


def to_asset(kind: Kind, obj: dict[str, Any], namespace_obj: dict[str, Any] | None = None) -> Asset:
    """The Asset of one object; its namespace (when given) fills environment and owner the object lacks."""
    meta = _meta(obj)
    name = str(meta.get("name") or "")
    namespace = str(meta["namespace"]) if kind.namespaced and meta.get("namespace") else None
    inherited = namespace_obj or {}
    return Asset(
        id=asset_id(kind, name, namespace),
        type=kind.type,
        name=name,
        namespace=namespace,
        environment=environment_of(obj) or environment_of(inherited) or UNKNOWN,
        owner=owner_of(obj) or owner_of(inherited) or UNKNOWN,
        status=status_of(kind, obj),
        labels=dict(list(labels_of(obj).items())[:20]),
        attributes=_attributes(kind, obj),
    )
