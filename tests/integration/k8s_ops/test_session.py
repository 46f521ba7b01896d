"""Every k8s-ops tool through a real MCP client session on the FleetServer, against the kmock emulator.

Each tool has one scenario below (registered in SCENARIOS); a tool listed by tools/list without a
scenario fails test_every_listed_tool_has_a_session_scenario, so a new tool needs a session test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp_types.jsonrpc import MISSING_REQUIRED_CLIENT_CAPABILITY

from mcpfleet_contracts.mcpserver import Risk
from tests.integration.k8s_ops.conftest import K8sOpsEmulator, MakeFleet, pod, put
from tests.integration.k8s_ops.session import ALL_TOOLS, MANIFEST, MODES, Answers, Mode, Model, Session
from tests.integration.k8s_ops.test_reads import deployment, replicaset

pytestmark = pytest.mark.integration

Scenario = Callable[[Session], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(tool: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        assert tool not in SCENARIOS
        SCENARIOS[tool] = fn
        return fn

    return register


# ------------------------------------------------------------------------- objects


def node(name: str = "node-1", ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"node-role.kubernetes.io/worker": ""}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "nodeInfo": {"kubeletVersion": "v1.31.0"},
            "allocatable": {"cpu": "4", "memory": "8Gi"},
        },
    }


def service(name: str = "web", namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def event(name: str, obj: str, reason: str, stamp: str, kind: str = "Pod", warning: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "team-a"},
        "involvedObject": {"kind": kind, "name": obj, "namespace": "team-a"},
        "reason": reason,
        "message": f"{reason} happened to {obj}",
        "type": "Warning" if warning else "Normal",
        "count": 1,
        "lastTimestamp": stamp,
    }


def web_with_history(emulator: K8sOpsEmulator) -> dict[str, Any]:
    """Deployment web at revision 2 (image web:2) with the ReplicaSets of revisions 1 and 2."""
    dep = deployment("web")
    put(emulator, "deployments", dep, group="apps")
    for revision, image in ((1, "web:1"), (2, "web:2")):
        put(emulator, "replicasets", replicaset(dep, revision, image), group="apps")
    return dep


def stored_deployment(emulator: K8sOpsEmulator, name: str = "web") -> Any:
    return emulator.stored("deployments", "team-a", name, group="apps")


# ------------------------------------------------------------------- read scenarios


@scenario("cluster_info")
async def _cluster_info(s: Session) -> None:
    put(s.emulator, "nodes", node("node-1"))
    put(s.emulator, "nodes", node("node-2", ready=False))
    info = await s.ok("cluster_info")
    assert info["server"] == str(s.emulator.url).rstrip("/")
    assert info["version"]
    assert (info["nodes_total"], info["nodes_ready"], info["nodes_note"]) == (2, 1, None)
    assert info["contexts"] == ["emulator", "second"]
    assert info["current_context"] == "emulator"
    assert info["default_namespace"] == "team-a"
    assert info["protected_namespaces"] == ["kube-system", "kube-public", "kube-node-lease"]
    assert info["allowed_namespaces"] == []
    assert (await s.ok("cluster_info", context="second"))["current_context"] == "second"


@scenario("list_namespaces")
async def _list_namespaces(s: Session) -> None:
    for name in ("team-a", "team-b", "kube-system"):
        put(s.emulator, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    page = await s.ok("list_namespaces")
    assert {n["name"]: n["protected"] for n in page["items"]} == {
        "kube-system": True,
        "team-a": False,
        "team-b": False,
    }
    assert page["truncated"] is False
    assert page["continue_token"] is None


@scenario("list_pods")
async def _list_pods(s: Session) -> None:
    for i in range(7):
        put(s.emulator, "pods", pod(f"web-{i}"))
    for i in range(2):
        db = pod(f"db-{i}")
        db["metadata"]["labels"] = {"app": "db"}
        put(s.emulator, "pods", db)
    put(s.emulator, "pods", pod("web-elsewhere", namespace="team-b"))

    names: list[str] = []
    token = None
    sizes: list[int] = []
    while True:
        args: dict[str, Any] = {"label_selector": "app=web", "limit": 3}
        if token:
            args["continue_token"] = token
        page = await s.ok("list_pods", **args)
        sizes.append(len(page["items"]))
        names += [p["name"] for p in page["items"]]
        token = page["continue_token"]
        assert page["truncated"] is (token is not None)
        if token is None:
            break
        assert page["note"]
    assert sizes == [3, 3, 1]
    assert names == [f"web-{i}" for i in range(7)]
    first = (await s.ok("list_pods", label_selector="app=web", limit=1))["items"][0]
    assert (first["namespace"], first["status"], first["node"], first["restarts"]) == ("team-a", "Running", "node-1", 0)
    db = await s.ok("list_pods", label_selector="app=db")
    assert [p["name"] for p in db["items"]] == ["db-0", "db-1"]
    everywhere = await s.ok("list_pods", all_namespaces=True, label_selector="app=web", limit=100)
    assert ("team-b", "web-elsewhere") in {(p["namespace"], p["name"]) for p in everywhere["items"]}
    assert len(everywhere["items"]) == 8


@scenario("get_pod")
async def _get_pod(s: Session) -> None:
    web = pod("web-1")
    web["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    web["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    web["status"]["containerStatuses"][0]["restartCount"] = 3
    put(s.emulator, "pods", web)
    detail = await s.ok("get_pod", name="web-1")
    assert detail["summary"]["name"] == "web-1"
    assert detail["summary"]["restarts"] == 3
    assert [(c["name"], c["ready"], c["restarts"]) for c in detail["containers"]] == [("app", True, 3)]
    assert detail["conditions"] == [{"type": "Ready", "status": "True"}]
    assert detail["object"]["spec"]["nodeName"] == "node-1"
    assert "managedFields" not in detail["object"]["metadata"]
    missing = await s.error("get_pod", name="ghost")
    assert "ghost" in missing
    assert "not found" in missing.lower()


@scenario("get_pod_logs")
async def _get_pod_logs(s: Session) -> None:
    put(s.emulator, "pods", pod("web-1"))
    s.emulator.logs[("team-a", "web-1")] = b"starting\nGET /health 200\nGET /api 500\nstopping\n"
    page = await s.ok("get_pod_logs", name="web-1")
    assert page["text"] == "starting\nGET /health 200\nGET /api 500\nstopping\n"
    assert (page["lines"], page["truncated"], page["continue_token"], page["pod"]) == (4, False, None, "web-1")
    grep = await s.ok("get_pod_logs", name="web-1", grep=r"GET /\w+ 5\d\d")
    assert (grep["text"], grep["lines"]) == ("GET /api 500\n", 1)
    put(s.emulator, "pods", pod("pending", node=None))
    assert "does not have a host assigned" in await s.error("get_pod_logs", name="pending")


@scenario("list_deployments")
async def _list_deployments(s: Session) -> None:
    web_with_history(s.emulator)
    put(s.emulator, "deployments", deployment("api", image="api:7"), group="apps")
    page = await s.ok("list_deployments")
    summaries = {d["name"]: d for d in page["items"]}
    assert set(summaries) == {"api", "web"}
    assert summaries["api"]["images"] == ["api:7"]
    assert (summaries["web"]["replicas"], summaries["web"]["revision"]) == (2, "2")


@scenario("get_deployment")
async def _get_deployment(s: Session) -> None:
    dep = deployment("web")
    dep["status"]["conditions"] = [{"type": "Available", "status": "True"}]
    put(s.emulator, "deployments", dep, group="apps")
    detail = await s.ok("get_deployment", name="web")
    assert detail["summary"]["name"] == "web"
    assert detail["conditions"] == [{"type": "Available", "status": "True"}]
    assert detail["object"]["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"


@scenario("rollout_status")
async def _rollout_status(s: Session) -> None:
    put(s.emulator, "deployments", deployment("web"), group="apps")
    behind = deployment("slow")
    behind["status"]["updatedReplicas"] = 1
    put(s.emulator, "deployments", behind, group="apps")
    done = await s.ok("rollout_status", name="web")
    assert (done["done"], done["message"], done["revision"]) == (True, "deployment 'web' successfully rolled out", "2")
    waiting = await s.ok("rollout_status", name="slow")
    assert waiting["done"] is False
    assert waiting["message"] == "waiting for rollout of 'slow': 1 of 2 new replicas have been updated"


@scenario("rollout_history")
async def _rollout_history(s: Session) -> None:
    web_with_history(s.emulator)
    history = await s.ok("rollout_history", name="web")
    assert [(r["revision"], r["images"], r["current"], r["replicas"]) for r in history["revisions"]] == [
        (2, ["web:2"], True, 2),
        (1, ["web:1"], False, 0),
    ]


@scenario("list_services")
async def _list_services(s: Session) -> None:
    put(s.emulator, "services", service("web"))
    put(s.emulator, "services", service("other", namespace="team-b"))
    page = await s.ok("list_services")
    assert [svc["name"] for svc in page["items"]] == ["web"]
    assert page["items"][0]["ports"][0]["target_port"] == "8080"


@scenario("get_service")
async def _get_service(s: Session) -> None:
    put(s.emulator, "services", service("web"))
    detail = await s.ok("get_service", name="web")
    assert (detail["summary"]["type"], detail["summary"]["cluster_ip"]) == ("ClusterIP", "10.96.0.10")
    assert detail["object"]["spec"]["selector"] == {"app": "web"}


@scenario("list_events")
async def _list_events(s: Session) -> None:
    put(s.emulator, "events", event("e1", "web-1", "Scheduled", "2026-01-01T00:00:00Z"))
    put(s.emulator, "events", event("e2", "web-1", "BackOff", "2026-01-01T00:05:00Z", warning=True))
    put(s.emulator, "events", event("e3", "db-1", "Pulled", "2026-01-01T00:01:00Z"))
    page = await s.ok("list_events")
    assert [e["reason"] for e in page["items"]] == ["BackOff", "Pulled", "Scheduled"]  # newest first
    about = await s.ok("list_events", kind="Pod", name="web-1")
    assert [e["reason"] for e in about["items"]] == ["BackOff", "Scheduled"]
    warnings = await s.ok("list_events", warnings_only=True)
    assert [(e["reason"], e["type"]) for e in warnings["items"]] == [("BackOff", "Warning")]


@scenario("describe_resource")
async def _describe_resource(s: Session) -> None:
    web_with_history(s.emulator)
    rs_uid = s.emulator.stored("replicasets", "team-a", "web-rev2", group="apps")["metadata"]["uid"]
    owned = pod("web-rev2-x1")
    owned["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-rev2", "uid": rs_uid, "controller": True}
    ]
    put(s.emulator, "pods", owned)
    put(s.emulator, "events", event("e1", "web-rev2-x1", "BackOff", "2026-01-01T00:05:00Z", warning=True))
    described = await s.ok("describe_resource", kind="pod", name="web-rev2-x1")
    assert described["summary"]["kind"] == "Pod"
    assert [(o["kind"], o["name"], o["found"]) for o in described["owners"]] == [
        ("ReplicaSet", "web-rev2", True),
        ("Deployment", "web", True),
    ]
    assert [e["reason"] for e in described["events"]] == ["BackOff"]
    assert described["object"]["metadata"]["name"] == "web-rev2-x1"


@scenario("list_resources")
async def _list_resources(s: Session) -> None:
    for name in ("alpha", "beta"):
        put(
            s.emulator,
            "mcpservers",
            {
                "apiVersion": "mcpfleet.io/v1alpha1",
                "kind": "MCPServer",
                "metadata": {"name": name, "namespace": "team-a"},
                "spec": {"type": "k8s-ops"},
            },
            group="mcpfleet.io",
            version="v1alpha1",
        )
    page = await s.ok("list_resources", kind="mcps")
    assert [(r["kind"], r["api_version"], r["name"]) for r in page["items"]] == [
        ("MCPServer", "mcpfleet.io/v1alpha1", "alpha"),
        ("MCPServer", "mcpfleet.io/v1alpha1", "beta"),
    ]
    put(
        s.emulator,
        "configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "team-a"}},
    )
    configmaps = await s.ok("list_resources", kind="cm")
    assert [(r["kind"], r["name"]) for r in configmaps["items"]] == [("ConfigMap", "cfg")]


@scenario("get_resource")
async def _get_resource(s: Session) -> None:
    put(
        s.emulator,
        "configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "team-a"},
            "data": {"mode": "fast"},
        },
    )
    got = await s.ok("get_resource", kind="ConfigMap", name="cfg")
    assert got["object"]["data"] == {"mode": "fast"}
    assert got["object"]["kind"] == "ConfigMap"
    put(s.emulator, "nodes", node("node-9"))
    cluster_scoped = await s.ok("get_resource", kind="Node", name="node-9")
    assert cluster_scoped["object"]["metadata"]["name"] == "node-9"


@scenario("list_nodes")
async def _list_nodes(s: Session) -> None:
    put(s.emulator, "nodes", node("node-1"))
    put(s.emulator, "nodes", node("node-2", ready=False))
    page = await s.ok("list_nodes")
    assert [(n["name"], n["ready"], n["kubelet_version"]) for n in page["items"]] == [
        ("node-1", True, "v1.31.0"),
        ("node-2", False, "v1.31.0"),
    ]


def pod_metrics(name: str, cpu: str, memory: str, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {"name": name, "namespace": namespace},
        "containers": [{"name": "app", "usage": {"cpu": cpu, "memory": memory}}],
    }


@scenario("top_pods")
async def _top_pods(s: Session) -> None:
    # The emulator's discovery serves metrics.k8s.io (kmock's bundled resources): metrics are present.
    for name, cpu, memory in (("a", "5m", "64Mi"), ("b", "250000000n", "128Mi"), ("c", "1", "1Gi")):
        put(s.emulator, "pods", pod_metrics(name, cpu, memory), group="metrics.k8s.io", version="v1beta1")
    put(s.emulator, "pods", pod_metrics("x", "9", "1Gi", "team-b"), group="metrics.k8s.io", version="v1beta1")
    page = await s.ok("top_pods")
    assert [(p["name"], p["cpu_millicores"], p["memory_mib"]) for p in page["items"]] == [
        ("c", 1000.0, 1024.0),
        ("b", 250.0, 128.0),
        ("a", 5.0, 64.0),
    ]


@scenario("top_nodes")
async def _top_nodes(s: Session) -> None:
    for name, cpu in (("node-1", "500m"), ("node-2", "1500m")):
        put(
            s.emulator,
            "nodes",
            {
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "NodeMetrics",
                "metadata": {"name": name},
                "usage": {"cpu": cpu, "memory": "2Gi"},
            },
            group="metrics.k8s.io",
            version="v1beta1",
        )
    page = await s.ok("top_nodes")
    assert [(n["name"], n["cpu_millicores"], n["memory_mib"]) for n in page["items"]] == [
        ("node-2", 1500.0, 2048.0),
        ("node-1", 500.0, 2048.0),
    ]


@scenario("generate_deployment_yaml")
async def _generate_deployment_yaml(s: Session) -> None:
    result = await s.ok(
        "generate_deployment_yaml",
        name="api",
        image="api:1",
        replicas=2,
        container_port=8080,
        env={"MODE": "prod"},
        secret_env=[{"name": "DB_PASSWORD", "secret": "db", "key": "password"}],
    )
    assert (result["validated"], result["validation"], result["problems"]) == (
        True,
        "server-side dry-run create succeeded",
        [],
    )
    manifest = result["manifest"]
    assert (manifest["kind"], manifest["metadata"]["namespace"], manifest["spec"]["replicas"]) == (
        "Deployment",
        "team-a",
        2,
    )
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert [p["containerPort"] for p in container["ports"]] == [8080]
    assert {"name": "MODE", "value": "prod"} in container["env"]
    assert {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
    } in container["env"]
    assert "kind: Deployment" in result["yaml"]
    assert stored_deployment(s.emulator, "api") is None  # a dry run stores nothing
    rejected = await s.invalid("generate_deployment_yaml", name="api", image="api:1", env={"DB_PASSWORD": "x"})
    assert rejected.data["field"] == "env"


@scenario("generate_deployment_from_description")
async def _generate_from_description(s: Session) -> None:
    result = await s.ok("generate_deployment_from_description", description="an api server, 2 replicas")
    assert (result["validated"], result["manifest"]["metadata"]["name"]) == (True, "api")
    assert result["manifest"]["metadata"]["namespace"] == "team-a"
    assert stored_deployment(s.emulator, "api") is None
    assert s.model is not None
    (prompt,) = s.model.prompts  # the client's model was asked once, with the description
    assert "an api server, 2 replicas" in prompt


# ----------------------------------------------------------------- change scenarios


@scenario("scale_deployment")
async def _scale_deployment(s: Session) -> None:
    put(s.emulator, "deployments", deployment("web"), group="apps")
    result = await s.ok("scale_deployment", name="web", replicas=5)
    assert (result["action"], result["before"], result["after"]) == ("scaled", "2", "5")
    assert result["message"] == "deployment team-a/web scaled from 2 to 5 replicas"
    assert stored_deployment(s.emulator)["spec"]["replicas"] == 5


@scenario("restart_deployment")
async def _restart_deployment(s: Session) -> None:
    put(s.emulator, "deployments", deployment("web"), group="apps")
    result = await s.ok("restart_deployment", name="web")
    assert result["action"] == "restarted"
    annotations = stored_deployment(s.emulator)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/restartedAt"] == result["after"]


@scenario("rollback_deployment")
async def _rollback_deployment(s: Session) -> None:
    web_with_history(s.emulator)
    result = await s.ok("rollback_deployment", name="web")
    assert (result["action"], result["before"], result["after"]) == ("rolled back", "2", "1")
    template = stored_deployment(s.emulator)["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "web:1"
    assert "pod-template-hash" not in template["metadata"]["labels"]
    unknown = await s.invalid("rollback_deployment", name="web", to_revision=9)
    assert unknown.data["field"] == "to_revision"


@scenario("apply_manifest")
async def _apply_manifest(s: Session) -> None:
    preview = await s.ok("apply_manifest", manifest=MANIFEST, dry_run_only=True)
    (planned,) = preview["objects"]
    assert (preview["dry_run"], preview["message"]) == (True, "dry run: 1 to create")
    assert (planned["kind"], planned["namespace"], planned["name"], planned["action"], planned["applied"]) == (
        "Deployment",
        "team-a",
        "api",
        "create",
        False,
    )
    (whole,) = planned["changes"]  # a creation is one change: the whole object
    assert (whole["path"], whole["op"], whole["after"]["spec"]["replicas"]) == ("", "add", 2)
    assert stored_deployment(s.emulator, "api") is None  # the dry run wrote nothing

    applied = await s.ok("apply_manifest", manifest=MANIFEST)
    assert (applied["dry_run"], applied["message"], applied["objects"][0]["applied"]) == (
        False,
        "applied: 1 to create",
        True,
    )
    assert stored_deployment(s.emulator, "api")["spec"]["replicas"] == 2

    changed = await s.ok("apply_manifest", manifest=MANIFEST.replace("replicas: 2", "replicas: 4"))
    assert changed["objects"][0]["action"] == "update"
    assert [(c["path"], c["before"], c["after"]) for c in changed["objects"][0]["changes"]] == [("spec.replicas", 2, 4)]
    assert stored_deployment(s.emulator, "api")["spec"]["replicas"] == 4


@scenario("delete_resource")
async def _delete_resource(s: Session) -> None:
    put(s.emulator, "pods", pod("doomed"))
    put(s.emulator, "pods", pod("kept"))
    result = await s.ok("delete_resource", kind="Pod", name="doomed")
    assert (result["kind"], result["namespace"], result["name"], result["action"]) == (
        "Pod",
        "team-a",
        "doomed",
        "deleted",
    )
    assert result["message"] == "Pod team-a/doomed deleted (Background propagation)"
    assert s.emulator.stored("pods", "team-a", "doomed") is None
    assert s.emulator.stored("pods", "team-a", "kept") is not None


@scenario("exec_in_pod")
async def _exec_in_pod(s: Session) -> None:
    put(s.emulator, "pods", pod("shell"))
    # kmock serves no websocket upgrade for pods/exec: the tested path is the clear error.
    message = await s.error("exec_in_pod", name="shell", command=["id"])
    assert "did not upgrade the pods/exec request of team-a/shell to a websocket" in message
    assert "exec needs an API server that serves pods/exec" in message


# --------------------------------------------------------------------------- tests


async def test_every_listed_tool_has_a_session_scenario(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == set(SCENARIOS) == ALL_TOOLS
    for name, tool in tools.items():
        assert tool.output_schema is not None, name
        assert tool.annotations is not None, name
        traits = fleet.module.toolset()[name].traits
        assert tool.annotations.read_only_hint is traits.read_only, name
        assert tool.annotations.destructive_hint is traits.destructive, name


@pytest.mark.parametrize("tool", sorted(SCENARIOS))
async def test_tool_through_a_session(make_fleet: MakeFleet, emulator: K8sOpsEmulator, tool: str) -> None:
    fleet = await make_fleet()
    answers = Answers("accept")
    model = Model()
    async with Client(fleet.mcp, elicitation_callback=answers, sampling_callback=model) as client:
        session = Session(client, fleet, emulator, model=model)
        await SCENARIOS[tool](session)
    assert tool in session.called
    high = fleet.module.toolset()[tool].traits.risk == Risk.HIGH
    assert bool(answers.questions) is high, answers.questions  # HIGH calls were confirmed, nothing else asked
    for question in answers.questions:
        assert tool in question


@pytest.mark.parametrize("mode", MODES)
async def test_generation_from_a_description_needs_a_client_with_sampling(
    make_fleet: MakeFleet, emulator: K8sOpsEmulator, mode: Mode
) -> None:
    fleet = await make_fleet()
    async with Client(fleet.mcp, mode=mode) as client:  # no sampling_callback: no sampling capability
        session = Session(client, fleet, emulator)
        with pytest.raises(MCPError) as caught:
            await session.call("generate_deployment_from_description", description="an api server")
    # The SDK refuses before the tool runs: -32021 "missing required client capability", naming sampling.
    assert caught.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert caught.value.message.startswith("Client did not declare the sampling capability")
    assert caught.value.data == {"requiredCapabilities": {"sampling": {}}}
    assert emulator.writes() == []


async def test_top_without_the_metrics_api_is_a_clear_error(make_fleet: MakeFleet, emulator: K8sOpsEmulator) -> None:
    for key in [k for k in emulator.resources if k.group == "metrics.k8s.io"]:
        del emulator.resources[key]  # no metrics-server: the group is not in discovery
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:
        session = Session(client, fleet, emulator)
        for tool in ("top_pods", "top_nodes"):
            message = await session.error(tool)
            assert message == (
                f"Error executing tool {tool}: the metrics API (metrics.k8s.io) is not served by this cluster; "
                "install metrics-server to use top_pods and top_nodes"
            )
