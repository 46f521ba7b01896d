"""The cmdb tools through a real MCP client session, kubernetes backend, against kmock's emulator.

The app: Ingress shop/web -> Service shop/web -> Deployment shop/web -> ReplicaSet -> two Pods on two Nodes,
plus a degraded database in the same production namespace and a staging namespace.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent

from mcpfleet_cli.devcluster.cluster import free_port
from tests.emulator import ApiServerEmulator
from tests.integration.cmdb.conftest import MakeFleet, put, stored
from tests.integration.k8s_ops.conftest import write_kubeconfig
from tests.integration.k8s_ops.session import Answers

pytestmark = pytest.mark.integration


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.31.0"}},
    }


def service(name: str, ns: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80}]},
    }


def deployment(name: str, ns: str, ready: int, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
        "status": {"readyReplicas": ready},
    }


def replicaset(name: str, revision: str, created: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "creationTimestamp": created,
            "annotations": {"deployment.kubernetes.io/revision": revision},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u"}],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": f"web:{revision}"}]}}},
    }


def pod(name: str, node_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-b", "uid": "u"}],
        },
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "web:2"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": True}]},
    }


def seed_app(emulator: ApiServerEmulator) -> None:
    put(emulator, "namespaces", namespace("shop", environment="production", team="payments"))
    put(emulator, "namespaces", namespace("shop-staging", environment="staging", team="payments"))
    put(emulator, "nodes", node("node-1"))
    put(emulator, "nodes", node("node-2"))
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "rules": [
                {"http": {"paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}
            ]
        },
    }
    put(emulator, "ingresses", ingress, group="networking.k8s.io")
    put(emulator, "services", service("web", "shop", "web"))
    put(emulator, "services", service("db", "shop", "db"))
    put(emulator, "deployments", deployment("web", "shop", ready=2), group="apps")
    put(emulator, "deployments", deployment("db", "shop", ready=0, replicas=1), group="apps")
    put(emulator, "deployments", deployment("web", "shop-staging", ready=1, replicas=1), group="apps")
    put(emulator, "replicasets", replicaset("web-a", "1", "2026-01-01T10:00:00Z"), group="apps")
    put(emulator, "replicasets", replicaset("web-b", "2", "2026-01-02T10:00:00Z"), group="apps")
    put(emulator, "pods", pod("web-b-1", "node-1"))
    put(emulator, "pods", pod("web-b-2", "node-2"))
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web-b-1.1", "namespace": "shop"},
        "involvedObject": {"kind": "Pod", "name": "web-b-1", "namespace": "shop"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container",
        "source": {"component": "kubelet"},
        "lastTimestamp": "2026-01-03T10:00:00Z",
    }
    put(emulator, "events", event)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


async def failure(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return text_of(result)


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


async def test_query_assets_filters(make_fleet: MakeFleet, emulator: ApiServerEmulator) -> None:
    seed_app(emulator)
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:
        production = await ok(client, "query_assets", environment="production")
        degraded = await ok(client, "query_assets", status="degraded")
        deployments = await ok(client, "query_assets", type="deployment", namespace="shop")
        staging_web = await ok(client, "query_assets", owner="payments", text="WE", environment="staging")
        nodes = await ok(client, "query_assets", type="node")
    assert set(ids(production)) == {
        "deployment/shop/db",
        "deployment/shop/web",
        "ingress/shop/web",
        "namespace/shop",
        "service/shop/db",
        "service/shop/web",
    }
    web = next(a for a in production["items"] if a["id"] == "deployment/shop/web")
    assert (web["owner"], web["status"], web["attributes"]["replicas"]) == ("payments", "active", "2")
    assert ids(degraded) == ["deployment/shop/db"]
    assert ids(deployments) == ["deployment/shop/db", "deployment/shop/web"]
    assert ids(staging_web) == ["deployment/shop-staging/web"]
    assert ids(nodes) == ["node/node-1", "node/node-2"]


async def test_get_asset_and_unknown_ids(make_fleet: MakeFleet, emulator: ApiServerEmulator) -> None:
    seed_app(emulator)
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:
        asset = await ok(client, "get_asset", asset_id="service/shop/web")
        missing = await failure(client, "get_asset", asset_id="deployment/shop/nope")
        with pytest.raises(MCPError) as malformed:
            await client.call_tool("get_asset", {"asset_id": "deployment/nope"})
    assert (asset["environment"], asset["attributes"]["ports"]) == ("production", "80")
    assert "deployment/shop/nope not found" in missing
    assert malformed.value.code == INVALID_PARAMS
    assert malformed.value.error.data["field"] == "asset_id"


async def test_topology_nodes_edges_and_depth(make_fleet: MakeFleet, emulator: ApiServerEmulator) -> None:
    seed_app(emulator)
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:
        near = await ok(client, "get_service_topology", service="web", namespace="shop", depth=1)
        full = await ok(client, "get_service_topology", service="web", namespace="shop", depth=5)
        for depth in (0, 99):
            with pytest.raises(MCPError) as bad:
                await client.call_tool("get_service_topology", {"service": "web", "namespace": "shop", "depth": depth})
            assert bad.value.code == INVALID_PARAMS
            assert bad.value.error.data["field"] == "depth"
        missing = await failure(client, "get_service_topology", service="nope", namespace="shop")
    assert {n["id"] for n in near["nodes"]} == {"service/shop/web", "ingress/shop/web", "deployment/shop/web"}
    assert {(e["source"], e["target"], e["relation"]) for e in near["edges"]} == {
        ("ingress/shop/web", "service/shop/web", "routes-to"),
        ("service/shop/web", "deployment/shop/web", "selects"),
    }
    types = {n["id"]: n["type"] for n in full["nodes"]}
    assert types["pod/shop/web-b-1"] == "pod"
    assert types["node/node-2"] == "node"
    assert types["replicaset/shop/web-b"] == "replicaset"
    assert "deployment/shop/db" not in types  # another service's workload
    edges = {(e["source"], e["target"], e["relation"]) for e in full["edges"]}
    assert ("deployment/shop/web", "pod/shop/web-b-1", "runs") in edges
    assert ("pod/shop/web-b-2", "node/node-2", "scheduled-on") in edges
    assert ("deployment/shop/web", "replicaset/shop/web-b", "owns") in edges
    assert ("replicaset/shop/web-b", "pod/shop/web-b-1", "owns") in edges
    assert "service/shop/nope not found" in missing


async def test_update_asset_status_confirmed_writes_annotation_and_event(
    make_fleet: MakeFleet, emulator: ApiServerEmulator
) -> None:
    seed_app(emulator)
    fleet = await make_fleet()
    declined = Answers("decline")
    async with Client(fleet.mcp, elicitation_callback=declined) as client:
        refused = await failure(
            client, "update_asset_status", asset_id="deployment/shop/web", status="maintenance", reason="db upgrade"
        )
    assert "declined" in refused
    assert "annotations" not in stored(emulator, "deployments", "shop", "web", group="apps")["metadata"]

    answers = Answers("accept")
    async with Client(fleet.mcp, elicitation_callback=answers) as client:
        record = await ok(
            client,
            "update_asset_status",
            asset_id="deployment/shop/web",
            status="maintenance",
            reason="db upgrade",
            actor="alice",
        )
        unknown = await failure(
            client, "update_asset_status", asset_id="node/ghost", status="retired", reason="gone for good"
        )
        asset = await ok(client, "get_asset", asset_id="deployment/shop/web")
        changes = await ok(client, "get_change_records", asset_id="deployment/shop/web")
    assert len(answers.questions) == 1
    assert "update_asset_status" in answers.questions[0]
    assert "HIGH" in answers.questions[0], "shop is production: the change is asked as HIGH risk"
    assert "node/ghost not found" in unknown
    annotations = stored(emulator, "deployments", "shop", "web", group="apps")["metadata"]["annotations"]
    assert annotations["mcpfleet.io/asset-status"] == "maintenance"
    assert annotations["mcpfleet.io/asset-status-reason"] == "db upgrade"
    assert (record["from_value"], record["to_value"], record["actor"]) == ("active", "maintenance", "alice")
    assert asset["status"] == "maintenance"
    events = [
        o.raw
        for key, o in emulator.objects.items()
        if key[0].plural == "events" and not o.deleted and o.raw.get("reason") == "AssetStatusChanged"
    ]
    assert len(events) == 1
    assert events[0]["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": "shop",
        "uid": stored(emulator, "deployments", "shop", "web", group="apps")["metadata"]["uid"],
    }
    assert "active -> maintenance: db upgrade (by alice)" in events[0]["message"]
    # Newest first: the status change, the pod's back-off, then the rollout revisions.
    assert [c["action"] for c in changes["items"]] == ["AssetStatusChanged", "BackOff", "rollout", "rollout"]
    assert [c["to_value"] for c in changes["items"][2:]] == ["revision 2", "revision 1"]


async def test_change_records_time_range(make_fleet: MakeFleet, emulator: ApiServerEmulator) -> None:
    seed_app(emulator)
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:
        window = await ok(
            client,
            "get_change_records",
            asset_id="deployment/shop/web",
            since="2026-01-01T12:00:00Z",
            until="2026-01-02T12:00:00Z",
        )
        everything = await ok(client, "get_change_records")
        with pytest.raises(MCPError) as swapped:
            await client.call_tool(
                "get_change_records", {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
            )
    assert ids(window) == ["rollout/shop/web/2"]
    assert ids(everything) == ["event/shop/web-b-1.1", "rollout/shop/web/2", "rollout/shop/web/1"]
    assert swapped.value.error.data["field"] == "until"


async def test_five_thousand_assets_keep_the_output_budget(make_fleet: MakeFleet, emulator: ApiServerEmulator) -> None:
    put(emulator, "namespaces", namespace("bulk", environment="dev"))
    for index in range(5000):
        put(emulator, "services", service(f"svc-{index:04d}", "bulk", f"app-{index}"))
    budget = 32 * 1024
    fleet = await make_fleet(max_output_bytes=budget, max_items=1000)
    async with Client(fleet.mcp) as client:
        first = await client.call_tool("query_assets", {"type": "service", "limit": 1000})
        page = first.structured_content
        assert page is not None
        assert not first.is_error
        second = await ok(client, "query_assets", type="service", limit=1000, continue_token=page["continue_token"])
        with pytest.raises(MCPError) as foreign:
            await client.call_tool("query_assets", {"type": "node", "continue_token": page["continue_token"]})
    assert len(text_of(first).encode()) <= budget
    assert page["truncated"]
    assert page["total"] == 5000
    assert "bytes" in page["note"]
    assert 0 < len(page["items"]) < 1000
    assert ids(second)[0] == f"service/bulk/svc-{len(page['items']):04d}"
    assert foreign.value.error.data["field"] == "continue_token"


async def test_api_server_down_is_backend_unavailable(make_fleet: MakeFleet, tmp_path: Path) -> None:
    dead = write_kubeconfig(tmp_path / "dead", f"http://127.0.0.1:{free_port()}")
    fleet = await make_fleet(cmdb={"kubeconfig_path": str(dead), "request_timeout_seconds": 3})
    async with Client(fleet.mcp) as client:
        message = await failure(client, "query_assets")
    assert "Kubernetes API at http://127.0.0.1" in message
    assert "is unavailable" in message


async def test_assets_resource_is_a_bounded_first_page(make_fleet: MakeFleet, emulator: ApiServerEmulator) -> None:
    seed_app(emulator)
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        resource = await client.read_resource("cmdb://assets")
    assert listed == {"query_assets", "get_asset", "get_service_topology", "update_asset_status", "get_change_records"}
    content = resource.contents[0]
    body = json.loads(getattr(content, "text", "{}"))
    assert "namespace/shop" in ids(body)
    assert body["truncated"] is False


async def test_outside_production_a_status_change_is_asked_as_medium(
    make_fleet: MakeFleet, emulator: ApiServerEmulator
) -> None:
    seed_app(emulator)
    fleet = await make_fleet()
    answers = Answers("accept")
    async with Client(fleet.mcp, elicitation_callback=answers) as client:
        await ok(
            client,
            "update_asset_status",
            asset_id="deployment/shop-staging/web",
            status="maintenance",
            reason="staging rehearsal",
        )
    assert len(answers.questions) == 1
    assert "MEDIUM" in answers.questions[0]
