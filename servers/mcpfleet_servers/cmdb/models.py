"""What every CMDB backend answers with: assets, topologies and change records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

AssetType = Literal[
    "node", "namespace", "deployment", "statefulset", "daemonset", "service", "ingress", "persistentvolumeclaim"
]
# The statuses a user may set; readiness derives these plus "degraded" and "pending".
SettableStatus = Literal["active", "maintenance", "inactive", "retired"]
# The kubernetes backend's relations; rest passes the CMDB's own, netbox adds its own (see docs/cmdb.md).
Relation = Literal["routes-to", "selects", "runs", "scheduled-on", "owns"]


class Asset(BaseModel):
    """One configuration item."""

    id: str = Field(description="Stable id, e.g. deployment/shop/web or node/node-1.")
    type: str = Field(description="Asset type, e.g. deployment, service, node.")
    name: str
    namespace: str | None = Field(default=None, description="Namespace, for namespaced assets.")
    environment: str = Field(description="production, staging, dev, ... or unknown.")
    owner: str = Field(description="Owning team or person, or unknown.")
    status: str = Field(description="active, degraded, pending, maintenance, inactive, retired, ...")
    labels: dict[str, str] = Field(default_factory=dict)
    attributes: dict[str, str] = Field(default_factory=dict, description="Type-specific facts (replicas, ports...).")


class AssetFilters(BaseModel):
    """query_assets' filters; every one that is set must match."""

    type: str | None = None
    environment: str | None = None
    status: str | None = None
    owner: str | None = None
    text: str | None = None
    namespace: str | None = None

    def matches(self, asset: Asset) -> bool:
        return (
            (self.type is None or asset.type == self.type)
            and (self.environment is None or asset.environment == self.environment)
            and (self.status is None or asset.status == self.status)
            and (self.owner is None or asset.owner == self.owner)
            and (self.namespace is None or asset.namespace == self.namespace)
            and (self.text is None or self.text.lower() in asset.name.lower())
        )


class TopologyNode(BaseModel):
    id: str = Field(description="Asset-style id, e.g. pod/shop/web-1.")
    type: str = Field(description="ingress, service, deployment, replicaset, pod, node, ...")
    name: str
    namespace: str | None = None
    status: str
    depth: int = Field(description="Hops from the service asked about.")


class TopologyEdge(BaseModel):
    source: str
    target: str
    relation: str = Field(
        description="routes-to, selects, runs, scheduled-on, owns (kubernetes); runs-on, has-interface, "
        "has-address, listens-on, member-of (netbox); the CMDB's own edge types (rest)."
    )


class Topology(BaseModel):
    """The neighbourhood of one service."""

    service: str = Field(description="Id of the service asked about.")
    depth: int
    nodes: list[TopologyNode]
    edges: list[TopologyEdge]
    truncated: bool = Field(default=False, description="True when the node limit cut the graph.")
    note: str | None = None


class ChangeRecord(BaseModel):
    """One change to an asset (or to a pod of it)."""

    id: str
    asset: str = Field(description="Id of the changed object.")
    time: datetime
    actor: str = Field(
        description="Who: the user or controller; for audit records the caller the gateway authenticated."
    )
    action: str = Field(description="e.g. AssetStatusChanged, rollout, or an event reason.")
    from_value: str | None = Field(default=None, description="Value before, when known.")
    to_value: str | None = Field(default=None, description="Value after, when known.")
    reason: str = Field(default="", description="Why, or the event message.")
    source: str = Field(
        description="Where the record comes from: event, rollout, audit (a call through the gateway), cmdb, "
        "netbox-changelog, netbox-journal."
    )
