"""`mcpfleet server cmdb` (kubernetes backend) as a real process over streamable HTTP, on the real API server.

The app is a realistic one, made with kubectl: Ingress web -> Service web -> Deployment web, whose two Pods
the real controller manager creates through a ReplicaSet; an unrelated Deployment worker beside it. No
kubelet and no scheduler run here, so the test creates two Node objects itself and binds the Pods to them
with the pods/binding subresource, as the scheduler would. A real MCP client calls the tools; every change
the server makes is checked with kubectl.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import MCPError

from tests.e2e.conftest import Cluster, eventually
from tests.e2e.servers import Mcp, ServerProcess, clean_environment, start_server

pytestmark = pytest.mark.timeout(180)

IMAGE = "registry.example/web:1.0"
ENVIRONMENT_LABEL = "app.kubernetes.io/environment"
OWNER_ANNOTATION = "mcpfleet.io/owner"
STATUS_ANNOTATION = "mcpfleet.io/asset-status"
STATUS_REASON_ANNOTATION = "mcpfleet.io/asset-status-reason"


# --------------------------------------------------------------------------------------------- server


def start_cmdb(kubeconfig: Path, log: Path) -> ServerProcess:
    environment = clean_environment("CMDB_", "K8S_")
    environment.update({"CMDB_BACKEND": "kubernetes", "CMDB_KUBECONFIG_PATH": str(kubeconfig), "MCP_LOG_LEVEL": "INFO"})
    return start_server("cmdb", log, environment)


@pytest.fixture(scope="module")
def shared_server(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One admin-credentialed server for the module (the cmdb ServiceAccount's RBAC is tested elsewhere)."""
    server = start_cmdb(cluster.kubeconfig, tmp_path_factory.mktemp("cmdb") / "server.log")
    try:
        yield server
    finally:
        server.stop()
        server.assert_no_traceback()


@pytest.fixture
def server(shared_server: ServerProcess) -> Iterator[ServerProcess]:
    """The shared server; the test fails if the server logged a traceback while it ran."""
    shared_server.assert_no_traceback()
    yield shared_server
    assert shared_server.process.poll() is None, f"the server exited:\n{shared_server.log_text()[-3000:]}"
    shared_server.assert_no_traceback()


# --------------------------------------------------------------------------------------------- client


@pytest.fixture
def mcp(server: ServerProcess) -> Mcp:
    return Mcp(server, max_pages=200)


# --------------------------------------------------------------------------------------------- the app


@dataclass(frozen=True)
class App:
    """What the test made, by name, and the asset ids the server should give them."""

    namespace: str
    team: str  # the namespace's owner label: inherited by everything without an owner of its own
    web_owner: str  # the web Deployment's own owner annotation
    node_owner: str
    nodes: tuple[str, str]  # (ready-less node, cordoned node)
    replicaset: str
    web_pods: dict[str, str]  # pod -> node it is bound to
    worker_pod: str

    def id(self, kind: str, name: str) -> str:
        return f"{kind}/{name}" if kind == "node" else f"{kind}/{self.namespace}/{name}"


def deployment(name: str, replicas: int, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "frontend"}},
                "spec": {"containers": [{"name": "app", "image": IMAGE}]},
            },
        },
    }


def app_manifests(web_owner: str) -> list[dict[str, Any]]:
    return [
        deployment("web", 2, **{OWNER_ANNOTATION: web_owner}),
        deployment("worker", 1),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web"},
            "spec": {
                "rules": [
                    {
                        "host": "shop.example",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ]
            },
        },
    ]


def node_manifest(name: str, owner: str, *, cordoned: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {ENVIRONMENT_LABEL: "staging", "team": owner}},
        "spec": {"unschedulable": cordoned},
    }


def pods_of(cluster: Cluster, namespace: str, app: str, count: int) -> list[str]:
    def enough() -> list[str]:
        items = cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]
        assert len(items) == count, f"{len(items)} of {count} pods"
        return sorted(str(item["metadata"]["name"]) for item in items)

    names: list[str] = eventually(enough, within=60, what=f"{count} pods of {app}")
    return names


def bind(cluster: Cluster, namespace: str, pod: str, node: str) -> None:
    """What the scheduler does: POST a Binding to the pod's binding subresource."""
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    cluster.ok(
        "create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/binding", "-f", "-", stdin=json.dumps(binding)
    )


@pytest.fixture
def app(cluster: Cluster, namespace: str) -> Iterator[App]:
    suffix = namespace.removeprefix("e2e-")
    team, web_owner, node_owner = f"payments-{suffix}", f"checkout-{suffix}", f"infra-{suffix}"
    nodes = (f"e2e-node-{suffix}-a", f"e2e-node-{suffix}-b")
    cluster.ok("label", "namespace", namespace, f"{ENVIRONMENT_LABEL}=staging", f"team={team}")
    try:
        result = cluster.apply([node_manifest(nodes[0], node_owner, cordoned=False)])
        assert result.returncode == 0, result.stderr
        result = cluster.apply([node_manifest(nodes[1], node_owner, cordoned=True)])
        assert result.returncode == 0, result.stderr
        result = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(app_manifests(web_owner))
        )
        assert result.returncode == 0, result.stderr

        web_pods = dict(zip(pods_of(cluster, namespace, "web", 2), nodes, strict=True))
        (worker_pod,) = pods_of(cluster, namespace, "worker", 1)
        for pod, node in [*web_pods.items(), (worker_pod, nodes[0])]:
            bind(cluster, namespace, pod, node)
        for pod, node in [*web_pods.items(), (worker_pod, nodes[0])]:
            assert cluster.get("pod", pod, "-n", namespace)["spec"]["nodeName"] == node
        (replicaset,) = cluster.get("replicasets", "-n", namespace, "-l", "app=web")["items"]
        yield App(
            namespace=namespace,
            team=team,
            web_owner=web_owner,
            node_owner=node_owner,
            nodes=nodes,
            replicaset=str(replicaset["metadata"]["name"]),
            web_pods=web_pods,
            worker_pod=worker_pod,
        )
    finally:
        cluster.kubectl("delete", "node", *nodes, "--ignore-not-found", "--wait=false")


# --------------------------------------------------------------------------------------------- 1. assets


def test_the_server_is_ready_against_the_real_api_server(cluster: Cluster, server: ServerProcess) -> None:
    status, body = server.http_json("/ready")
    assert status == 200, body
    assert body["type"] == "cmdb"
    assert body["backend"]["reachable"] is True, body
    assert body["backend"]["name"] == f"Kubernetes API at {cluster.state.server}"
    version = json.loads(cluster.ok("version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert body["backend"]["detail"] == f"Kubernetes {version}"


def test_query_assets_filters_find_the_apps_objects(app: App, mcp: Mcp) -> None:
    ns = app.namespace
    web, worker = app.id("deployment", "web"), app.id("deployment", "worker")
    service, ingress = app.id("service", "web"), app.id("ingress", "web")

    # Pods and ReplicaSets are not assets; sorted by id.
    assert mcp.ids("query_assets", namespace=ns) == [web, worker, ingress, service]
    paged = mcp.ok("query_assets", namespace=ns, limit=3)
    assert [a["id"] for a in paged["items"]] == [web, worker, ingress]
    assert paged["continue_token"] is not None
    rest = mcp.ok("query_assets", namespace=ns, limit=3, continue_token=paged["continue_token"])
    assert ([a["id"] for a in rest["items"]], rest["continue_token"]) == ([service], None)

    assert mcp.ids("query_assets", type="deployment", namespace=ns) == [web, worker]
    assert mcp.ids("query_assets", type="ingress", namespace=ns) == [ingress]
    assert mcp.ids("query_assets", environment="staging", namespace=ns) == [web, worker, ingress, service]
    assert mcp.ids("query_assets", environment="production", namespace=ns) == []

    # Owner: the Deployment's own annotation wins; everything else inherits the namespace's team label,
    # including the namespace itself, which is a cluster-scoped asset.
    assert mcp.ids("query_assets", owner=app.web_owner) == [web]
    assert mcp.ids("query_assets", owner=app.team) == [worker, ingress, f"namespace/{ns}", service]
    assert mcp.ids("query_assets", owner=app.team, type="namespace", environment="staging") == [f"namespace/{ns}"]
    assert mcp.ids("query_assets", text="WORK", namespace=ns) == [worker]

    by_id = {a["id"]: a for a in mcp.every_item("query_assets", type="node", owner=app.node_owner)}
    assert sorted(by_id) == [app.id("node", app.nodes[0]), app.id("node", app.nodes[1])]
    ready_less, cordoned = (by_id[app.id("node", name)] for name in app.nodes)
    assert (ready_less["status"], cordoned["status"]) == ("degraded", "maintenance")
    assert {a["environment"] for a in by_id.values()} == {"staging"}
    assert all(a["namespace"] is None for a in by_id.values())

    # 2 replicas, none ready (no kubelet): degraded, by readiness.
    asset = mcp.ok("get_asset", asset_id=web)
    assert (asset["type"], asset["name"], asset["namespace"]) == ("deployment", "web", ns)
    assert (asset["environment"], asset["owner"], asset["status"]) == ("staging", app.web_owner, "degraded")
    assert (asset["attributes"]["replicas"], asset["attributes"]["readyReplicas"]) == ("2", "0")
    assert asset["labels"] == {"app": "web"}
    assert mcp.ids("query_assets", status="degraded", namespace=ns) == [web, worker]
    svc = mcp.ok("get_asset", asset_id=service)
    assert (svc["status"], svc["owner"], svc["attributes"]["ports"]) == ("active", app.team, "80")

    assert "not found" in mcp.fails("get_asset", asset_id=app.id("deployment", "ghost"))
    with pytest.raises(MCPError) as bad_type:
        mcp.call("query_assets", type="pod")
    assert "unknown asset type" in str(bad_type.value)


# --------------------------------------------------------------------------------------------- 2. topology


def test_topology_from_the_service_reaches_ingress_workload_pods_and_nodes(app: App, mcp: Mcp) -> None:
    ns = app.namespace
    ingress, service, web = app.id("ingress", "web"), app.id("service", "web"), app.id("deployment", "web")
    replicaset = app.id("replicaset", app.replicaset)
    pods = {app.id("pod", pod): app.id("node", node) for pod, node in app.web_pods.items()}
    nodes = [app.id("node", name) for name in app.nodes]

    def graph(depth: int) -> tuple[dict[str, dict[str, Any]], set[tuple[str, str, str]], dict[str, Any]]:
        topology = mcp.ok("get_service_topology", service="web", namespace=ns, depth=depth)
        assert (topology["service"], topology["depth"], topology["truncated"]) == (service, depth, False)
        found = {n["id"]: n for n in topology["nodes"]}
        edges = {(e["source"], e["target"], e["relation"]) for e in topology["edges"]}
        assert len(edges) == len(topology["edges"]), "each edge once"
        return found, edges, topology

    found, edges, _ = graph(1)
    assert {i: n["depth"] for i, n in found.items()} == {service: 0, ingress: 1, web: 1}
    assert edges == {(ingress, service, "routes-to"), (service, web, "selects")}

    found, edges, _ = graph(2)
    assert {i: n["depth"] for i, n in found.items()} == {
        service: 0,
        ingress: 1,
        web: 1,
        replicaset: 2,
        **dict.fromkeys(pods, 2),
    }
    assert not any(relation == "scheduled-on" for _, _, relation in edges), "nodes are 3 hops away"

    found, edges, topology = graph(3)
    expected_edges = {
        (ingress, service, "routes-to"),
        (service, web, "selects"),
        (web, replicaset, "owns"),
        *((web, pod, "runs") for pod in pods),
        *((replicaset, pod, "owns") for pod in pods),
        *((pod, node, "scheduled-on") for pod, node in pods.items()),
    }
    assert edges == expected_edges
    assert {i: (n["type"], n["depth"]) for i, n in found.items()} == {
        service: ("service", 0),
        ingress: ("ingress", 1),
        web: ("deployment", 1),
        replicaset: ("replicaset", 2),
        **dict.fromkeys(pods, ("pod", 2)),
        **dict.fromkeys(nodes, ("node", 3)),
    }
    assert {i: found[i]["status"] for i in (service, ingress, web, *pods, *nodes)} == {
        service: "active",
        ingress: "active",
        web: "degraded",
        **dict.fromkeys(pods, "pending"),
        nodes[0]: "degraded",
        nodes[1]: "maintenance",
    }
    assert all(found[n]["namespace"] is None for n in nodes)
    assert all(found[i]["namespace"] == ns for i in found if i not in nodes)

    # The worker's pod runs on node a too, but nodes are not expanded: a deeper walk finds nothing more.
    deeper, deeper_edges, _ = graph(5)
    assert (set(deeper), deeper_edges) == (set(found), edges)
    assert app.id("pod", app.worker_pod) not in deeper
    assert topology["note"] is None

    assert "not found" in mcp.fails("get_service_topology", service="ghost", namespace=ns)


# --------------------------------------------------------------------------------------------- 3. changes


def test_a_status_change_is_confirmed_annotated_and_recorded(cluster: Cluster, app: App, server: ServerProcess) -> None:
    ns = app.namespace
    web = app.id("deployment", "web")

    declined = Mcp(server, answer="decline", max_pages=200)
    message = declined.fails(
        "update_asset_status", asset_id=web, status="maintenance", reason="patching the base image"
    )
    assert "The user declined the confirmation: update_asset_status was not run and nothing changed." in message
    assert len(declined.asked) == 1
    assert STATUS_ANNOTATION not in (cluster.get("deployment", "web", "-n", ns)["metadata"].get("annotations") or {})

    mcp = Mcp(server, max_pages=200)
    record = mcp.ok(
        "update_asset_status", asset_id=web, status="maintenance", reason="patching the base image", actor="alice"
    )
    assert len(mcp.asked) == 1
    assert "update_asset_status" in mcp.asked[0]
    assert (record["asset"], record["action"], record["source"]) == (web, "AssetStatusChanged", "event")
    assert (record["from_value"], record["to_value"], record["actor"]) == ("degraded", "maintenance", "alice")
    assert record["reason"] == "status degraded -> maintenance: patching the base image (by alice)"

    annotations = cluster.get("deployment", "web", "-n", ns)["metadata"]["annotations"]
    assert annotations[STATUS_ANNOTATION] == "maintenance"
    assert annotations[STATUS_REASON_ANNOTATION] == "patching the base image"
    assert annotations[OWNER_ANNOTATION] == app.web_owner, "a merge patch keeps the other annotations"

    (event,) = cluster.get("events", "-n", ns, "--field-selector", "reason=AssetStatusChanged")["items"]
    assert record["id"] == f"event/{ns}/{event['metadata']['name']}"
    assert event["involvedObject"]["kind"] == "Deployment"
    assert event["involvedObject"]["name"] == "web"
    assert event["involvedObject"]["uid"] == cluster.get("deployment", "web", "-n", ns)["metadata"]["uid"]
    assert event["message"] == record["reason"]
    assert event["type"] == "Normal"
    assert {k: v for k, v in event["metadata"]["annotations"].items() if k.startswith("mcpfleet.io/")} == {
        "mcpfleet.io/from-status": "degraded",
        "mcpfleet.io/to-status": "maintenance",
        "mcpfleet.io/actor": "alice",
    }
    # kubectl shows it the way it shows any event on the object.
    described = cluster.ok("describe", "deployment", "web", "-n", ns)
    assert "AssetStatusChanged" in described

    asset = mcp.ok("get_asset", asset_id=web)
    assert (asset["status"], asset["attributes"]["statusReason"]) == ("maintenance", "patching the base image")
    assert mcp.ids("query_assets", status="maintenance", namespace=ns) == [web]
    assert_change_records(cluster, app, mcp, record)


def assert_change_records(cluster: Cluster, app: App, mcp: Mcp, record: dict[str, Any]) -> None:
    """The Deployment's records: the status change, the controller's events and rollout revision 1."""
    ns = app.namespace
    web = app.id("deployment", "web")

    def with_scaling_event() -> list[dict[str, Any]]:
        records = mcp.every_item("get_change_records", asset_id=web)
        assert any(r["action"] == "ScalingReplicaSet" for r in records), [r["action"] for r in records]
        return records

    records = eventually(with_scaling_event, within=30, what="the deployment controller's ScalingReplicaSet event")
    by_id = {r["id"]: r for r in records}
    assert by_id[record["id"]] == record
    rollout = by_id[f"rollout/{ns}/web/1"]
    assert (rollout["asset"], rollout["action"], rollout["source"]) == (web, "rollout", "rollout")
    assert (rollout["to_value"], rollout["actor"]) == ("revision 1", "deployment-controller")
    assert rollout["reason"] == f"ReplicaSet {app.replicaset} ({IMAGE})"
    created = cluster.get("replicaset", app.replicaset, "-n", ns)["metadata"]["creationTimestamp"]
    assert datetime.fromisoformat(rollout["time"]) == datetime.fromisoformat(created)
    scaling = [r for r in records if r["action"] == "ScalingReplicaSet"]
    assert all(r["asset"] == web and app.replicaset in r["reason"] for r in scaling), scaling
    assert all(r["asset"] == web for r in records), "only the Deployment's (and its pods') changes"
    assert "worker" not in json.dumps(records)
    times = [datetime.fromisoformat(r["time"]) for r in records]
    assert times == sorted(times, reverse=True), "newest first"
    assert records[0]["id"] == record["id"], "the status change came last: its sub-second time puts it first"

    when = datetime.fromisoformat(record["time"])
    recent = mcp.every_item("get_change_records", asset_id=web, since=when.isoformat())
    assert record["id"] in {r["id"] for r in recent}
    later = mcp.every_item("get_change_records", asset_id=web, since=(when + timedelta(seconds=1)).isoformat())
    assert record["id"] not in {r["id"] for r in later}
    everything = {r["id"] for r in mcp.every_item("get_change_records", since=when.isoformat())}
    assert record["id"] in everything


def test_a_nodes_status_change_goes_to_the_default_namespace(cluster: Cluster, app: App, mcp: Mcp) -> None:
    node = app.id("node", app.nodes[0])
    record = mcp.ok("update_asset_status", asset_id=node, status="retired", reason="hardware returned")
    assert (record["asset"], record["from_value"], record["to_value"]) == (node, "degraded", "retired")
    assert record["actor"] == "mcp-client", "CMDB_DEFAULT_ACTOR when the call names none"
    assert len(mcp.asked) == 1

    annotations = cluster.get("node", app.nodes[0])["metadata"]["annotations"]
    assert annotations[STATUS_ANNOTATION] == "retired"
    # The node controller may record events of its own on the node (RegisteredNode, NodeNotReady).
    selector = f"involvedObject.name={app.nodes[0]},reason=AssetStatusChanged"
    (event,) = cluster.get("events", "-n", "default", "--field-selector", selector)["items"]
    assert (event["involvedObject"]["kind"], event["involvedObject"].get("namespace")) == ("Node", None)
    assert record["id"] == f"event/default/{event['metadata']['name']}"

    records = mcp.every_item("get_change_records", asset_id=node)
    assert [r["id"] for r in records if r["action"] == "AssetStatusChanged"] == [record["id"]]
    assert {r["asset"] for r in records} == {node}
    assert mcp.ok("get_asset", asset_id=node)["status"] == "retired"
