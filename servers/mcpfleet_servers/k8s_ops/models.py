"""Result models of the k8s-ops tools and the pure functions that turn API objects into compact summaries."""

from __future__ import annotations

import datetime
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, Field

from mcpfleet_servers.k8s_ops.redact import redact_object, redact_text

JsonObject = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str | None:
    """'3d4h', '5m', '12s' since an RFC 3339 timestamp, as kubectl shows it."""
    if not timestamp:
        return None
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{secs}s"


class NamespaceSummary(BaseModel):
    name: str = Field(description="Namespace name.")
    phase: str | None = Field(default=None, description="Active or Terminating.")
    protected: bool = Field(description="True when changes in this namespace are refused (K8S_PROTECTED_NAMESPACES).")
    age: str | None = Field(default=None, description="Time since creation.")


class ContainerState(BaseModel):
    name: str = Field(description="Container name.")
    image: str | None = Field(default=None, description="Image reference.")
    ready: bool = Field(default=False, description="Readiness probe passes.")
    restarts: int = Field(default=0, description="Restart count.")
    state: str = Field(default="unknown", description="running, waiting: <reason> or terminated: <reason>.")


class PodSummary(BaseModel):
    namespace: str = Field(description="Namespace of the pod.")
    name: str = Field(description="Pod name.")
    phase: str | None = Field(default=None, description="Pending, Running, Succeeded, Failed or Unknown.")
    status: str = Field(description="What kubectl shows in STATUS, e.g. CrashLoopBackOff.")
    ready: str = Field(description="Ready containers / all containers.")
    restarts: int = Field(description="Restarts over all containers.")
    node: str | None = Field(default=None, description="Node the pod runs on.")
    ip: str | None = Field(default=None, description="Pod IP.")
    age: str | None = Field(default=None, description="Time since creation.")


def pod_status_text(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    if _meta(pod).get("deletionTimestamp"):
        return "Terminating"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        for key in ("waiting", "terminated"):
            reason = (state.get(key) or {}).get("reason")
            if reason and reason != "Completed":
                return str(reason)
    return str(status.get("reason") or status.get("phase") or "Unknown")


def container_states(pod: Mapping[str, Any]) -> list[ContainerState]:
    images = {c.get("name"): c.get("image") for c in (pod.get("spec") or {}).get("containers") or []}
    result = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        text = "unknown"
        if "running" in state:
            text = "running"
        for key in ("waiting", "terminated"):
            if key in state:
                reason = (state[key] or {}).get("reason")
                text = f"{key}: {reason}" if reason else key
        result.append(
            ContainerState(
                name=str(cs.get("name")),
                image=cs.get("image") or images.get(cs.get("name")),
                ready=bool(cs.get("ready")),
                restarts=int(cs.get("restartCount") or 0),
                state=text,
            )
        )
    return result


def pod_summary(pod: Mapping[str, Any]) -> PodSummary:
    meta = _meta(pod)
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or []) or len(statuses)
    return PodSummary(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        phase=status.get("phase"),
        status=pod_status_text(pod),
        ready=f"{sum(1 for c in statuses if c.get('ready'))}/{total}",
        restarts=sum(int(c.get("restartCount") or 0) for c in statuses),
        node=spec.get("nodeName"),
        ip=status.get("podIP"),
        age=age(meta.get("creationTimestamp")),
    )


class DeploymentSummary(BaseModel):
    namespace: str = Field(description="Namespace of the deployment.")
    name: str = Field(description="Deployment name.")
    replicas: int = Field(description="Desired replicas (spec.replicas).")
    ready: int = Field(description="Ready replicas.")
    updated: int = Field(description="Replicas on the newest template.")
    available: int = Field(description="Available replicas.")
    images: list[str] = Field(description="Container images of the template.")
    revision: str | None = Field(default=None, description="Current rollout revision.")
    age: str | None = Field(default=None, description="Time since creation.")


def deployment_summary(dep: Mapping[str, Any]) -> DeploymentSummary:
    meta = _meta(dep)
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return DeploymentSummary(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        images=[str(c.get("image")) for c in containers if c.get("image")],
        revision=(meta.get("annotations") or {}).get(REVISION),
        age=age(meta.get("creationTimestamp")),
    )


class ServicePort(BaseModel):
    name: str | None = Field(default=None, description="Port name.")
    port: int = Field(description="Service port.")
    target_port: str | None = Field(default=None, description="Target port on the pods.")
    protocol: str = Field(default="TCP", description="TCP, UDP or SCTP.")
    node_port: int | None = Field(default=None, description="Node port for NodePort/LoadBalancer services.")


class ServiceSummary(BaseModel):
    namespace: str = Field(description="Namespace of the service.")
    name: str = Field(description="Service name.")
    type: str = Field(description="ClusterIP, NodePort, LoadBalancer or ExternalName.")
    cluster_ip: str | None = Field(default=None, description="Cluster IP.")
    external: list[str] = Field(default_factory=list, description="External IPs or hostnames.")
    ports: list[ServicePort] = Field(default_factory=list, description="Ports.")
    selector: dict[str, str] = Field(default_factory=dict, description="Pod selector.")
    age: str | None = Field(default=None, description="Time since creation.")


def service_summary(svc: Mapping[str, Any]) -> ServiceSummary:
    meta = _meta(svc)
    spec = svc.get("spec") or {}
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = [str(i.get("ip") or i.get("hostname")) for i in ingress] + list(spec.get("externalIPs") or [])
    if spec.get("externalName"):
        external.append(str(spec["externalName"]))
    return ServiceSummary(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        type=str(spec.get("type") or "ClusterIP"),
        cluster_ip=spec.get("clusterIP"),
        external=external,
        ports=[
            ServicePort(
                name=p.get("name"),
                port=int(p.get("port") or 0),
                target_port=None if p.get("targetPort") is None else str(p["targetPort"]),
                protocol=str(p.get("protocol") or "TCP"),
                node_port=p.get("nodePort"),
            )
            for p in spec.get("ports") or []
        ],
        selector=dict(spec.get("selector") or {}),
        age=age(meta.get("creationTimestamp")),
    )


class NodeSummary(BaseModel):
    name: str = Field(description="Node name.")
    ready: bool = Field(description="The Ready condition is True.")
    roles: list[str] = Field(default_factory=list, description="Roles from node-role.kubernetes.io/* labels.")
    kubelet_version: str | None = Field(default=None, description="Kubelet version.")
    unschedulable: bool = Field(default=False, description="Cordoned.")
    cpu: str | None = Field(default=None, description="Allocatable CPU.")
    memory: str | None = Field(default=None, description="Allocatable memory.")
    age: str | None = Field(default=None, description="Time since creation.")


def node_summary(node: Mapping[str, Any]) -> NodeSummary:
    meta = _meta(node)
    status = node.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    labels = meta.get("labels") or {}
    allocatable = status.get("allocatable") or {}
    return NodeSummary(
        name=str(meta.get("name") or ""),
        ready=conditions.get("Ready") == "True",
        roles=sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")),
        kubelet_version=(status.get("nodeInfo") or {}).get("kubeletVersion"),
        unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
        cpu=allocatable.get("cpu"),
        memory=allocatable.get("memory"),
        age=age(meta.get("creationTimestamp")),
    )


class EventSummary(BaseModel):
    namespace: str | None = Field(default=None, description="Namespace of the event.")
    type: str | None = Field(default=None, description="Normal or Warning.")
    reason: str | None = Field(default=None, description="Short machine-readable reason.")
    object: str = Field(description="Kind/name of the object the event is about.")
    message: str = Field(description="What happened (credentials masked).")
    count: int = Field(default=1, description="How many times it happened.")
    last_seen: str | None = Field(default=None, description="Timestamp of the last occurrence.")


def event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or _meta(event).get("creationTimestamp")
        or ""
    )


def event_summary(event: Mapping[str, Any]) -> EventSummary:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return EventSummary(
        namespace=_meta(event).get("namespace"),
        type=event.get("type"),
        reason=event.get("reason"),
        object=f"{involved.get('kind')}/{involved.get('name')}",
        message=redact_text(str(event.get("message") or event.get("note") or ""))[:1000],
        count=int(event.get("count") or (event.get("series") or {}).get("count") or 1),
        last_seen=event_time(event) or None,
    )


class ResourceSummary(BaseModel):
    api_version: str = Field(description="apiVersion of the object.")
    kind: str = Field(description="Kind of the object.")
    namespace: str | None = Field(default=None, description="Namespace, null for cluster-scoped objects.")
    name: str = Field(description="Object name.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    status: str | None = Field(default=None, description="status.phase or the Ready condition, when present.")
    age: str | None = Field(default=None, description="Time since creation.")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="For denied kinds (Secrets): the type and how many keys; never values."
    )


def resource_summary(obj: Mapping[str, Any], api_version: str, kind: str, denied: Collection[str]) -> ResourceSummary:
    meta = _meta(obj)
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    phase = status.get("phase") if status else None
    if phase is None and status:
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("Ready", "Available"):
                phase = f"{cond.get('type')}={cond.get('status')}"
                break
    extra: dict[str, Any] = {}
    if kind.lower() in {d.lower() for d in denied}:
        extra = {"type": obj.get("type"), "keys": len(set(obj.get("data") or {}) | set(obj.get("stringData") or {}))}
    return ResourceSummary(
        api_version=api_version,
        kind=kind,
        namespace=meta.get("namespace"),
        name=str(meta.get("name") or ""),
        labels={str(k): redact_text(str(v)) for k, v in (meta.get("labels") or {}).items()},
        status=None if phase is None else str(phase),
        age=age(meta.get("creationTimestamp")),
        extra=extra,
    )


class ObjectResult(BaseModel):
    """One object, trimmed (no managedFields, no last-applied copy) and redacted."""

    api_version: str = Field(description="apiVersion of the object.")
    kind: str = Field(description="Kind of the object.")
    namespace: str | None = Field(default=None, description="Namespace, null for cluster-scoped objects.")
    name: str = Field(description="Object name.")
    object: JsonObject = Field(description="The object as the API server returned it, trimmed and redacted.")


def object_result(obj: Mapping[str, Any], api_version: str, kind: str, denied: Collection[str]) -> ObjectResult:
    meta = _meta(obj)
    shown = redact_object({**obj, "apiVersion": obj.get("apiVersion") or api_version, "kind": kind}, denied, kind)
    return ObjectResult(
        api_version=api_version,
        kind=kind,
        namespace=meta.get("namespace"),
        name=str(meta.get("name") or ""),
        object=shown,
    )
