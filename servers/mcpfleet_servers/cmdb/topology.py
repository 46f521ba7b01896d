"""A service's neighbourhood from the objects of its namespace: a pure graph walk, bounded by depth and size.

Ingress -routes-to-> Service -selects-> workload -runs-> Pod -scheduled-on-> Node, plus ownerReferences
(Deployment -owns-> ReplicaSet -owns-> Pod). Nodes are not expanded further: their other pods belong to
other services.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcpfleet_servers.cmdb.kinds import (
    BY_KIND,
    INGRESS,
    NODE,
    POD,
    REPLICASET,
    SERVICE,
    WORKLOADS,
    Kind,
    asset_id,
    derived_status,
    labels_of,
    status_of,
)
from mcpfleet_servers.cmdb.models import Relation, Topology, TopologyEdge, TopologyNode

_NOTE_ROOM = 400  # bytes kept free for the note fit_topology adds


@dataclass
class Objects:
    """What one namespace holds, by kind, plus the nodes its pods run on."""

    namespace: str
    by_kind: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of(self, kind: Kind) -> list[dict[str, Any]]:
        return self.by_kind.get(kind.kind, [])


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(str(k)) == str(v) for k, v in selector.items())


def _template_labels(workload: dict[str, Any]) -> dict[str, str]:
    template = (workload.get("spec") or {}).get("template") or {}
    return {str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()}


def _match_labels(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def _ingress_services(ingress: dict[str, Any]) -> set[str]:
    spec = ingress.get("spec") or {}
    backends = [spec.get("defaultBackend") or {}]
    for rule in spec.get("rules") or []:
        backends += [p.get("backend") or {} for p in (rule.get("http") or {}).get("paths") or []]
    return {str((b.get("service") or {}).get("name")) for b in backends if (b.get("service") or {}).get("name")}


def edges_of(objects: Objects) -> list[TopologyEdge]:
    """Every typed relation among the namespace's objects and the nodes of its pods."""
    ns = objects.namespace
    edges: list[TopologyEdge] = []

    def add(source: str, target: str, relation: Relation) -> None:
        edges.append(TopologyEdge(source=source, target=target, relation=relation))

    services = {_name(s): s for s in objects.of(SERVICE)}
    for ingress in objects.of(INGRESS):
        for routed in sorted(_ingress_services(ingress) & services.keys()):
            add(asset_id(INGRESS, _name(ingress), ns), asset_id(SERVICE, routed, ns), "routes-to")
    pods = objects.of(POD)
    for kind in WORKLOADS:
        for workload in objects.of(kind):
            wid = asset_id(kind, _name(workload), ns)
            for svc_name, svc in services.items():
                if _selects((svc.get("spec") or {}).get("selector") or {}, _template_labels(workload)):
                    add(asset_id(SERVICE, svc_name, ns), wid, "selects")
            for pod in pods:
                if _selects(_match_labels(workload), labels_of(pod)):
                    add(wid, asset_id(POD, _name(pod), ns), "runs")
    for kind in (REPLICASET, POD):
        for obj in objects.of(kind):
            for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
                owner = BY_KIND.get(str(ref.get("kind")))
                if owner is not None and ref.get("name"):
                    add(asset_id(owner, str(ref["name"]), ns), asset_id(kind, _name(obj), ns), "owns")
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            add(asset_id(POD, _name(pod), ns), asset_id(NODE, str(node), None), "scheduled-on")
    return edges


def _node_of(objects: Objects, node_id: str, depth: int) -> TopologyNode:
    type_name, _, rest = node_id.partition("/")
    kind = next(k for k in BY_KIND.values() if k.type == type_name)
    name = rest.rpartition("/")[2]
    obj = objects.nodes.get(name) if kind is NODE else next((o for o in objects.of(kind) if _name(o) == name), None)
    if obj is None:
        status = "unknown"
    else:
        status = (
            status_of(kind, obj)
            if kind.type in {k.type for k in (NODE, SERVICE, INGRESS, *WORKLOADS)}
            else (_pod_status(obj) if kind is POD else derived_status(kind, obj))
        )
    return TopologyNode(
        id=node_id,
        type=kind.type,
        name=name,
        namespace=None if kind is NODE else objects.namespace,
        status=status,
        depth=depth,
    )


def _pod_status(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return str(status.get("phase") or "unknown").lower()
    ready = all(c.get("ready") for c in status.get("containerStatuses") or [])
    return "active" if ready else "degraded"


def within_hops(
    start: str,
    neighbours: Mapping[str, Iterable[str]],
    depth: int,
    max_nodes: int,
    expands: Callable[[str], bool] = lambda _: True,
) -> tuple[dict[str, int], bool]:
    """Breadth-first from ``start``: every node within ``depth`` hops with its distance, ``max_nodes`` at most,
    and whether that bound cut the walk. Only nodes for which ``expands`` holds have their neighbours followed."""
    seen = {start: 0}
    queue = deque([start])
    truncated = False
    while queue:
        current = queue.popleft()
        if seen[current] >= depth or not expands(current):
            continue
        for other in neighbours.get(current, ()):
            if other in seen:
                continue
            if len(seen) >= max_nodes:
                truncated = True
                break
            seen[other] = seen[current] + 1
            queue.append(other)
    return seen, truncated


def undirected(edges: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Each node's neighbours over edges followed both ways."""
    neighbours: dict[str, list[str]] = {}
    for source, target in edges:
        neighbours.setdefault(source, []).append(target)
        neighbours.setdefault(target, []).append(source)
    return neighbours


def walk(objects: Objects, start: str, depth: int, max_nodes: int) -> Topology:
    """Breadth-first from ``start`` over edges in both directions, ``depth`` hops at most."""
    edges = edges_of(objects)
    seen, truncated = within_hops(
        start,
        undirected((edge.source, edge.target) for edge in edges),
        depth,
        max_nodes,
        expands=lambda node: not node.startswith(f"{NODE.type}/"),
    )
    kept = [e for e in _unique(edges) if e.source in seen and e.target in seen]
    return Topology(
        service=start,
        depth=depth,
        nodes=[_node_of(objects, node_id, hops) for node_id, hops in seen.items()],
        edges=kept,
        truncated=truncated,
        note=f"cut at {max_nodes} nodes (CMDB_MAX_TOPOLOGY_NODES); ask with a smaller depth" if truncated else None,
    )


def _unique(edges: Iterable[TopologyEdge]) -> list[TopologyEdge]:
    found: dict[tuple[str, str, str], TopologyEdge] = {}
    for edge in edges:
        found.setdefault((edge.source, edge.target, edge.relation), edge)
    return list(found.values())


def fit_topology(topology: Topology, max_bytes: int) -> Topology:
    """The topology cut to its nearest nodes (they come in breadth-first order) and the edges among them, so
    that its JSON stays within ``max_bytes``; ``truncated`` and the note say so. At least the root is kept."""
    if len(topology.model_dump_json()) <= max_bytes:
        return topology
    by_node: dict[str, list[TopologyEdge]] = {}
    for edge in topology.edges:
        by_node.setdefault(edge.source, []).append(edge)
        by_node.setdefault(edge.target, []).append(edge)
    # Room for the envelope (service, depth, flags, note) besides the nodes and edges.
    used = len(topology.model_copy(update={"nodes": [], "edges": []}).model_dump_json()) + _NOTE_ROOM
    kept: dict[str, TopologyNode] = {}
    edges: list[TopologyEdge] = []
    for node in topology.nodes:
        joined = [e for e in by_node.get(node.id, []) if (e.source in kept or e.target in kept or e.source == e.target)]
        size = len(node.model_dump_json()) + sum(len(e.model_dump_json()) + 1 for e in joined) + 1
        if kept and used + size > max_bytes:
            break
        kept[node.id] = node
        edges += joined
        used += size
    cut = (
        f"cut at {len(kept)} of {len(topology.nodes)} nodes to stay within {max_bytes} bytes; ask with a smaller depth"
    )
    return topology.model_copy(
        update={
            "nodes": list(kept.values()),
            "edges": edges,
            "truncated": True,
            "note": "; ".join(note for note in (topology.note, cut) if note),
        }
    )
