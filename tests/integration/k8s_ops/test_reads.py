"""Read tools against the emulator: paging of 5,000 pods, logs, events, rollouts, discovery, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.toolkit import InvalidArgument, NotFound, ToolFailure
from mcpfleet_servers.k8s_ops import tools_read
from mcpfleet_servers.k8s_ops.server import K8sOpsServer
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from tests.emulator import declare_resources
from tests.integration.k8s_ops.conftest import K8sOpsEmulator, call, pod, put

pytestmark = pytest.mark.integration


def deployment(name: str, namespace: str = "team-a", revision: int = 2, image: str = "web:2") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": 1,
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }


def replicaset(dep: dict[str, Any], revision: int, image: str) -> dict[str, Any]:
    name = dep["metadata"]["name"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-rev{revision}",
            "namespace": dep["metadata"]["namespace"],
            "labels": {"app": name, "pod-template-hash": f"h{revision}"},
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": name,
                    "uid": dep["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name, "pod-template-hash": f"h{revision}"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            }
        },
        "status": {"replicas": 2 if revision == 2 else 0},
    }


@pytest.mark.parametrize("chunked", [True, False], ids=["api-server-limit-continue", "in-memory-fallback"])
@pytest.mark.parametrize("max_bytes", [256 * 1024, 20_000], ids=["count-bound", "byte-bound"])
async def test_5000_pods_are_paged_within_budget_and_walked_exactly_once(
    emulator: K8sOpsEmulator, settings: K8sOpsSettings, chunked: bool, max_bytes: int
) -> None:
    emulator.chunked_lists = chunked
    for i in range(5000):
        put(emulator, "pods", pod(f"web-{i:05d}"))
    put(emulator, "pods", pod("elsewhere", namespace="team-b"))
    budget = Budget(max_items=500, max_bytes=max_bytes)
    module = K8sOpsServer(settings, budget)
    await module.start()
    try:
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            page = await call(module, "list_pods", continue_token=token)
            pages += 1
            assert len(page.model_dump_json()) <= max_bytes + 1024  # items within budget, plus the envelope
            assert len(page.items) <= budget.max_items
            seen += [p.name for p in page.items]
            if not page.truncated:
                assert page.continue_token is None
                break
            assert page.continue_token
            assert page.note
            token = page.continue_token
            assert pages < 200
        assert len(seen) == 5000
        assert len(set(seen)) == 5000
        assert "elsewhere" not in seen
        assert pages >= 10
        with pytest.raises(InvalidArgument) as reused:
            await call(module, "list_pods", continue_token=token, label_selector="app=other")
        assert reused.value.field == "continue_token"
    finally:
        await module.close()


async def test_list_pods_across_namespaces_with_a_label_selector(
    server: K8sOpsServer, emulator: K8sOpsEmulator
) -> None:
    put(emulator, "pods", pod("a1"))
    put(emulator, "pods", pod("b1", namespace="team-b"))
    other = pod("c1")
    other["metadata"]["labels"] = {"app": "db"}
    put(emulator, "pods", other)
    page = await call(server, "list_pods", all_namespaces=True, label_selector="app=web")
    assert sorted(p.name for p in page.items) == ["a1", "b1"]


async def test_a_50mb_log_stays_within_the_byte_budget_with_continuation(
    server: K8sOpsServer, emulator: K8sOpsEmulator, budget: Budget
) -> None:
    put(emulator, "pods", pod("chatty"))
    line = b"2026-01-01T00:00:00Z INFO request %08d ok Authorization: Bearer abcdefghijklmnop\n"
    log = b"".join(line % i for i in range(50 * 1024 * 1024 // len(line % 0)))
    emulator.logs[("team-a", "chatty")] = log
    first = await call(server, "get_pod_logs", name="chatty")
    assert first.truncated
    assert first.continue_token
    assert "continue_token" in (first.note or "")
    assert len(first.text.encode()) <= budget.max_bytes
    assert "abcdefghijklmnop" not in first.text
    second = await call(server, "get_pod_logs", name="chatty", continue_token=first.continue_token)
    expected = log.decode().replace("Bearer abcdefghijklmnop", "Bearer <redacted>")
    assert expected.startswith(first.text + second.text)  # contiguous: nothing lost, nothing repeated
    grep = await call(server, "get_pod_logs", name="chatty", grep="request 0000012[0-9] ")
    assert grep.lines == 10
    assert not grep.truncated


async def test_logs_of_a_pod_without_a_node_fail_clearly(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    put(emulator, "pods", pod("pending", node=None))
    with pytest.raises(ToolFailure) as failure:
        await call(server, "get_pod_logs", name="pending")
    assert "cannot serve logs of pod team-a/pending" in str(failure.value)
    assert "does not have a host assigned" in str(failure.value)
    with pytest.raises(NotFound, match="team-a/ghost"):
        await call(server, "get_pod_logs", name="ghost")
    with pytest.raises(InvalidArgument) as bad:
        await call(server, "get_pod_logs", name="pending", grep="(")
    assert bad.value.field == "grep"


async def test_deployments_rollouts_history_events_and_owner_chain(
    server: K8sOpsServer, emulator: K8sOpsEmulator
) -> None:
    dep = deployment("web")
    put(emulator, "deployments", dep, group="apps")
    for revision, image in ((1, "web:1"), (2, "web:2")):
        put(emulator, "replicasets", replicaset(dep, revision, image), group="apps")
    rs_uid = emulator.stored("replicasets", "team-a", "web-rev2", group="apps")["metadata"]["uid"]
    owned = pod("web-rev2-x1")
    owned["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-rev2", "uid": rs_uid, "controller": True}
    ]
    put(emulator, "pods", owned)
    for i, (stamp, reason) in enumerate(
        [("2026-01-01T00:00:00Z", "Scheduled"), ("2026-01-01T00:05:00Z", "BackOff"), ("2026-01-01T00:01:00Z", "Pulled")]
    ):
        put(
            emulator,
            "events",
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"e{i}", "namespace": "team-a"},
                "involvedObject": {"kind": "Pod", "name": "web-rev2-x1"},
                "reason": reason,
                "lastTimestamp": stamp,
                "type": "Warning" if reason == "BackOff" else "Normal",
                "message": f"{reason} happened",
            },
        )

    listed = await call(server, "list_deployments")
    assert [(d.name, d.replicas, d.revision) for d in listed.items] == [("web", 2, "2")]
    detail = await call(server, "get_deployment", name="web")
    assert "managedFields" not in json.dumps(detail.object)
    status = await call(server, "rollout_status", name="web")
    assert status.done
    assert "successfully rolled out" in status.message
    history = await call(server, "rollout_history", name="web")
    assert [(r.revision, r.images, r.current) for r in history.revisions] == [
        (2, ["web:2"], True),
        (1, ["web:1"], False),
    ]
    assert not history.truncated
    newest = await call(server, "rollout_history", name="web", limit=1)
    assert ([r.revision for r in newest.revisions], newest.truncated) == ([2], True)
    older = await call(server, "rollout_history", name="web", limit=1, continue_token=newest.continue_token)
    assert ([r.revision for r in older.revisions], older.truncated, older.continue_token) == ([1], False, None)
    events = await call(server, "list_events", kind="Pod", name="web-rev2-x1")
    assert [e.reason for e in events.items] == ["BackOff", "Pulled", "Scheduled"]  # newest first
    warnings = await call(server, "list_events", warnings_only=True)
    assert [e.reason for e in warnings.items] == ["BackOff"]
    described = await call(server, "describe_resource", kind="pod", name="web-rev2-x1")
    assert [(o.kind, o.name, o.found) for o in described.owners] == [
        ("ReplicaSet", "web-rev2", True),
        ("Deployment", "web", True),
    ]
    assert described.events[0].reason == "BackOff"


async def test_services_nodes_namespaces_and_cluster_info(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    put(
        emulator,
        "services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    put(
        emulator,
        "nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.31.0"}},
        },
    )
    for name in ("team-a", "kube-system"):
        put(emulator, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    services = await call(server, "list_services")
    assert services.items[0].ports[0].target_port == "8080"
    assert (await call(server, "get_service", name="web")).summary.cluster_ip == "10.96.0.10"
    nodes = await call(server, "list_nodes")
    assert [(n.name, n.ready, n.kubelet_version) for n in nodes.items] == [("node-1", True, "v1.31.0")]
    namespaces = {n.name: n.protected for n in (await call(server, "list_namespaces")).items}
    assert namespaces == {"team-a": False, "kube-system": True}
    info = await call(server, "cluster_info")
    assert info.version
    assert info.nodes_total == 1
    assert info.nodes_ready == 1
    assert info.contexts == ["emulator", "second"]
    assert info.current_context == "emulator"


async def test_any_kind_through_discovery_including_custom_resources(
    server: K8sOpsServer, emulator: K8sOpsEmulator
) -> None:
    put(
        emulator,
        "mcpservers",
        {
            "apiVersion": "mcpfleet.io/v1alpha1",
            "kind": "MCPServer",
            "metadata": {"name": "k8s", "namespace": "team-a"},
            "spec": {"type": "k8s-ops"},
        },
        group="mcpfleet.io",
        version="v1alpha1",
    )
    page = await call(server, "list_resources", kind="mcps")
    assert [(r.kind, r.api_version, r.name) for r in page.items] == [("MCPServer", "mcpfleet.io/v1alpha1", "k8s")]
    got = await call(server, "get_resource", kind="MCPServer", name="k8s", api_version="mcpfleet.io/v1alpha1")
    assert got.object["spec"] == {"type": "k8s-ops"}
    with pytest.raises(InvalidArgument) as unknown:
        await call(server, "get_resource", kind="Deploymnt", name="x")
    assert unknown.value.field == "kind"
    assert "Deployment" in unknown.value.message
    with pytest.raises(NotFound, match="MCPServer team-a/missing"):
        await call(server, "get_resource", kind="MCPServer", name="missing")


async def test_top_pods_and_nodes_with_and_without_the_metrics_api(
    server: K8sOpsServer, emulator: K8sOpsEmulator
) -> None:
    # Without metrics-server the group is not in discovery (each context discovers on its own).
    for key in [k for k in emulator.resources if k.group == "metrics.k8s.io"]:
        del emulator.resources[key]
    for tool in ("top_pods", "top_nodes"):
        with pytest.raises(ToolFailure, match=r"metrics API \(metrics.k8s.io\) is not served.*metrics-server"):
            await call(server, tool, context="second")

    declare_resources(emulator)
    for name, cpu in (("a", "5m"), ("b", "250m")):
        put(
            emulator,
            "pods",
            {
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "PodMetrics",
                "metadata": {"name": name, "namespace": "team-a"},
                "containers": [{"name": "app", "usage": {"cpu": cpu, "memory": "64Mi"}}],
            },
            group="metrics.k8s.io",
            version="v1beta1",
        )
    top = await call(server, "top_pods")
    assert [(p.name, p.cpu_millicores, p.memory_mib) for p in top.items] == [("b", 250.0, 64.0), ("a", 5.0, 64.0)]
    assert (await call(server, "top_nodes")).items == []


async def test_another_kubeconfig_context_and_an_unknown_one(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    put(emulator, "pods", pod("p1"))
    assert [p.name for p in (await call(server, "list_pods", context="second")).items] == ["p1"]
    with pytest.raises(InvalidArgument) as unknown:
        await call(server, "list_pods", context="nope")
    assert unknown.value.field == "context"
    assert "emulator" in unknown.value.message


async def test_allowed_namespaces_limit_reads(kubeconfig: Path, emulator: K8sOpsEmulator, budget: Budget) -> None:
    put(emulator, "pods", pod("a1"))
    put(emulator, "pods", pod("b1", namespace="team-b"))
    settings = K8sOpsSettings(kubeconfig_path=str(kubeconfig), namespace="team-a", allowed_namespaces=("team-a",))
    module = K8sOpsServer(settings, budget)
    await module.start()
    try:
        assert [p.name for p in (await call(module, "list_pods", all_namespaces=True)).items] == ["a1"]
        with pytest.raises(ToolFailure, match="K8S_ALLOWED_NAMESPACES"):
            await call(module, "get_pod", name="b1", namespace="team-b")
    finally:
        await module.close()


async def test_events_beyond_one_scan_are_flagged_as_possibly_missing(
    server: K8sOpsServer, emulator: K8sOpsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tools_read, "_MAX_EVENTS_SCANNED", 3)
    for i in range(5):
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"ev{i}", "namespace": "team-a"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Tick",
            "lastTimestamp": f"2026-01-01T00:0{i}:00Z",
            "type": "Normal",
            "message": "tick",
        }
        put(emulator, "events", event)
    page = await call(server, "list_events", namespace="team-a")
    assert len(page.items) == 3
    assert "only the first 3 events of the namespace were read" in (page.note or "")
    monkeypatch.setattr(tools_read, "_MAX_EVENTS_SCANNED", 10)
    whole = await call(server, "list_events", namespace="team-a")
    assert len(whole.items) == 5
    assert whole.note is None
