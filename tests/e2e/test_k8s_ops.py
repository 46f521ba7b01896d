"""`mcpfleet server k8s-ops` as a real process over streamable HTTP, against the real API server.

A real MCP client calls the tools over HTTP; every object the tools read was made by kubectl and the
real controller manager (ReplicaSets, Pods, events), and every change is checked with kubectl. No
kubelet and no scheduler run here: Pods stay Pending, so rollouts never finish and pods have no logs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.types import (
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    TextContent,
)

from mcpfleet_cli.devcluster.cluster import free_port, write_kubeconfig
from tests.e2e.conftest import SAMPLES_DIR, Cluster, OperatorProcess, eventually
from tests.e2e.servers import Mcp, ServerProcess, clean_environment, start_server, text_of

pytestmark = pytest.mark.timeout(180)

IMAGE = "registry.example/web:1.0"
FIELD_MANAGER = "mcpfleet-k8s-ops"  # K8S_FIELD_MANAGER's default
PAGE_ITEMS = 7  # MCP_MAX_ITEMS of the shared server: 30 pods take five pages


# --------------------------------------------------------------------------------------------- server


def start_k8s_ops(kubeconfig: Path, log: Path, **env: str) -> ServerProcess:
    environment = clean_environment("K8S_")
    environment.update({"K8S_KUBECONFIG_PATH": str(kubeconfig), "MCP_LOG_LEVEL": "INFO", **env})
    return start_server("k8s-ops", log, environment)


@pytest.fixture(scope="module")
def shared_server(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The admin-credentialed server most tests share (starting one costs a second or two)."""
    log = tmp_path_factory.mktemp("k8s-ops") / "server.log"
    server = start_k8s_ops(cluster.kubeconfig, log, MCP_MAX_ITEMS=str(PAGE_ITEMS), K8S_EXEC_ENABLED="true")
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


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server with its own kubeconfig and settings; stopped (and checked) after the test."""
    started: list[ServerProcess] = []

    def start(kubeconfig: Path, **env: str) -> ServerProcess:
        server = start_k8s_ops(kubeconfig, tmp_path / f"server-{len(started)}.log", **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    for server in started:
        server.assert_no_traceback()


# --------------------------------------------------------------------------------------------- client


@pytest.fixture
def mcp(server: ServerProcess) -> Mcp:
    return Mcp(server)


# --------------------------------------------------------------------------------------------- objects


def deployment(
    name: str, replicas: int, *, image: str = IMAGE, env: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image}
    if env:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def create(cluster: Cluster, namespace: str, *manifests: dict[str, Any]) -> None:
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(manifests))
    assert result.returncode == 0, result.stderr


def pods_of(cluster: Cluster, namespace: str, app: str, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]
        assert len(items) == count, f"{len(items)} of {count} pods"
        return items

    result: list[dict[str, Any]] = eventually(enough, within=60, what=f"{count} pods of {app}")
    return result


def replicasets_of(cluster: Cluster, namespace: str, app: str) -> dict[str, dict[str, Any]]:
    items = cluster.get("replicasets", "-n", namespace, "-l", f"app={app}")["items"]
    return {item["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: item for item in items}


def spec_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = cluster.get("deployment", name, "-n", namespace)["spec"]
    return spec


def owned_fields(cluster: Cluster, namespace: str, name: str, manager: str) -> dict[str, Any]:
    """The fields `manager` owns in a Deployment's managedFields (merged over its entries)."""
    meta = cluster.get("deployment", name, "-n", namespace, "--show-managed-fields")["metadata"]
    owned: dict[str, Any] = {}
    for entry in meta.get("managedFields", []):
        if entry["manager"] == manager:
            owned.update(entry.get("fieldsV1", {}))
    assert owned, f"{manager} owns nothing in deployment {name}: {[m['manager'] for m in meta['managedFields']]}"
    return owned


# --------------------------------------------------------------------------------------------- 1. reads


def test_read_tools_report_what_the_real_api_server_and_controller_hold(  # noqa: PLR0915 - one walk, one setup
    cluster: Cluster, namespace: str, mcp: Mcp
) -> None:
    create(
        cluster,
        namespace,
        deployment("web", 30),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "e2e"}},
    )
    pods = pods_of(cluster, namespace, "web", 30)
    pod_names = {p["metadata"]["name"] for p in pods}

    info = mcp.ok("cluster_info")
    assert info["version"] == "v1.37.1"
    assert info["server"] == cluster.state.server
    assert (info["nodes_total"], info["nodes_ready"]) == (0, 0)

    by_name = {n["name"]: n for n in mcp.every_item("list_namespaces")}
    assert by_name[namespace]["phase"] == "Active"
    assert not by_name[namespace]["protected"]
    assert by_name["kube-system"]["protected"]

    # Paging through the API server's limit/continue: 30 pods at MCP_MAX_ITEMS=7 per page.
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        args: dict[str, Any] = {"namespace": namespace, "label_selector": "app=web"}
        if token:
            args["continue_token"] = token
        page = mcp.ok("list_pods", **args)
        pages += 1
        assert len(page["items"]) <= PAGE_ITEMS
        seen += [p["name"] for p in page["items"]]
        assert all(p["phase"] == "Pending" and p["node"] is None for p in page["items"])
        token = page["continue_token"]
        assert page["truncated"] == (token is not None)
        if token is None:
            break
    assert pages == 5
    assert sorted(seen) == sorted(pod_names), "every pod exactly once"
    assert mcp.ok("list_pods", namespace=namespace, label_selector="app=nothing")["items"] == []

    pod_name = sorted(pod_names)[0]
    pod = mcp.ok("get_pod", name=pod_name, namespace=namespace)
    assert pod["summary"]["status"] == "Pending"
    assert [c["image"] for c in pod["object"]["spec"]["containers"]] == [IMAGE]
    assert pod["object"]["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"

    deployments = mcp.ok("list_deployments", namespace=namespace)["items"]
    assert [(d["name"], d["replicas"], d["images"]) for d in deployments] == [("web", 30, [IMAGE])]
    detail = mcp.ok("get_deployment", name="web", namespace=namespace)
    assert detail["summary"]["revision"] == "1"
    assert detail["summary"]["updated"] == 30
    assert detail["summary"]["available"] == 0

    # The pods never run: the rollout is honestly not done.
    status = mcp.ok("rollout_status", name="web", namespace=namespace)
    assert status["done"] is False
    assert (status["desired"], status["updated"], status["available"]) == (30, 30, 0)
    assert "0 of 30 updated replicas are available" in status["message"]

    history = mcp.ok("rollout_history", name="web", namespace=namespace)["revisions"]
    (replicaset,) = replicasets_of(cluster, namespace, "web").values()
    assert [(r["revision"], r["replicaset"], r["images"], r["current"]) for r in history] == [
        (1, replicaset["metadata"]["name"], [IMAGE], True)
    ]

    services = mcp.ok("list_services", namespace=namespace)["items"]
    assert [s["name"] for s in services] == ["web"]
    service = mcp.ok("get_service", name="web", namespace=namespace)["summary"]
    real_ip = cluster.get("service", "web", "-n", namespace)["spec"]["clusterIP"]
    assert service["cluster_ip"] == real_ip
    assert service["type"] == "ClusterIP"
    assert service["selector"] == {"app": "web"}

    def scaled_event() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = mcp.ok("list_events", namespace=namespace, kind="Deployment", name="web")["items"]
        assert any(e["reason"] == "ScalingReplicaSet" for e in items), items
        return items

    events = eventually(scaled_event, within=30, what="the controller's ScalingReplicaSet event")
    assert all(e["object"] == "Deployment/web" for e in events)
    assert "to 30" in events[0]["message"]

    described = mcp.ok("describe_resource", kind="Pod", name=pod_name, namespace=namespace)
    assert described["owners"] == [
        {"kind": "ReplicaSet", "name": replicaset["metadata"]["name"], "found": True},
        {"kind": "Deployment", "name": "web", "found": True},
    ]

    configmap = mcp.ok("get_resource", kind="cm", name="settings", namespace=namespace)
    assert configmap["object"]["data"] == {"mode": "e2e"}

    assert mcp.ok("list_nodes")["items"] == []
    for tool in ("top_pods", "top_nodes"):
        message = mcp.fails(tool, **({"namespace": namespace} if tool == "top_pods" else {}))
        assert "metrics API (metrics.k8s.io) is not served" in message
        assert "metrics-server" in message

    # No node, so no logs: the API server answers with no content; the tool says why instead.
    message = mcp.fails("get_pod_logs", name=pod_name, namespace=namespace)
    assert f"pod {namespace}/{pod_name} has no logs" in message
    assert "no node assigned" in message
    message = mcp.fails("get_pod_logs", name="ghost", namespace=namespace)
    assert "not found" in message


def test_custom_resources_through_discovery(cluster: Cluster, namespace: str, mcp: Mcp) -> None:
    sample = yaml.safe_load((SAMPLES_DIR / "mcpserver.yaml").read_text())
    create(cluster, namespace, sample)
    name = sample["metadata"]["name"]

    for kind in ("MCPServer", "mcps", "mcpservers.mcpfleet.io"):
        got = mcp.ok("get_resource", kind=kind, name=name, namespace=namespace)
        assert (got["api_version"], got["kind"], got["name"]) == ("mcpfleet.io/v1alpha1", "MCPServer", name)
        assert got["object"]["spec"]["type"] == "k8s-ops"
        assert got["object"]["spec"]["rbac"] == {"preset": "read-only"}
    listed = mcp.ok("list_resources", kind="mcps", namespace=namespace)["items"]
    assert [(i["kind"], i["name"]) for i in listed] == [("MCPServer", name)]

    with pytest.raises(MCPError) as unknown:
        mcp.call("get_resource", kind="MCPServr", name=name, namespace=namespace)
    assert "did you mean MCPServer" in str(unknown.value)


# --------------------------------------------------------------------------------------------- 2. changes


def test_scale_restart_and_rollback_change_the_real_deployment(cluster: Cluster, namespace: str, mcp: Mcp) -> None:
    create(cluster, namespace, deployment("api", 2))
    pods_of(cluster, namespace, "api", 2)
    original = spec_of(cluster, namespace, "api")["template"]

    scaled = mcp.ok("scale_deployment", name="api", replicas=4, namespace=namespace)
    assert (scaled["before"], scaled["after"]) == ("2", "4")
    assert spec_of(cluster, namespace, "api")["replicas"] == 4
    pods_of(cluster, namespace, "api", 4)
    assert "f:replicas" in owned_fields(cluster, namespace, "api", FIELD_MANAGER)["f:spec"], "K8S_FIELD_MANAGER"
    assert mcp.asked == [], "scaling is MEDIUM risk: no confirmation"

    restarted = mcp.ok("restart_deployment", name="api", namespace=namespace)
    assert len(mcp.asked) == 1
    assert "restart_deployment" in mcp.asked[0]
    annotations = spec_of(cluster, namespace, "api")["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/restartedAt"] == restarted["after"]
    template = owned_fields(cluster, namespace, "api", FIELD_MANAGER)["f:spec"]["f:template"]
    assert "f:kubectl.kubernetes.io/restartedAt" in template["f:metadata"]["f:annotations"]

    def two_revisions() -> dict[str, dict[str, Any]]:
        sets = replicasets_of(cluster, namespace, "api")
        assert set(sets) == {"1", "2"}, set(sets)
        return sets

    sets = eventually(two_revisions, within=30, what="the controller's new ReplicaSet")
    history = mcp.ok("rollout_history", name="api", namespace=namespace)["revisions"]
    assert [(r["revision"], r["replicaset"], r["current"]) for r in history] == [
        (2, sets["2"]["metadata"]["name"], True),
        (1, sets["1"]["metadata"]["name"], False),
    ]

    rolled = mcp.ok("rollback_deployment", name="api", to_revision=1, namespace=namespace)
    assert (rolled["before"], rolled["after"]) == ("2", "1")
    assert len(mcp.asked) == 2
    assert spec_of(cluster, namespace, "api")["template"] == original, "revision 1's template, restartedAt gone"

    def revision_three() -> bool:
        dep = cluster.get("deployment", "api", "-n", namespace)
        rs = replicasets_of(cluster, namespace, "api")
        assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        # The controller reuses revision 1's ReplicaSet (same template hash) as revision 3.
        assert rs["3"]["metadata"]["name"] == sets["1"]["metadata"]["name"], set(rs)
        return True

    eventually(revision_three, within=30, what="the rollback observed by the controller")


def test_apply_manifest_dry_runs_on_the_server_then_applies_and_delete_removes(
    cluster: Cluster, namespace: str, mcp: Mcp
) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "labels": {"team": "e2e"}},
        "data": {"level": "1"},
    }
    dry = mcp.ok("apply_manifest", manifest=yaml.safe_dump(manifest), namespace=namespace, dry_run_only=True)
    (planned,) = dry["objects"]
    assert (dry["dry_run"], planned["action"], planned["applied"]) == (True, "create", False)
    created = planned["changes"][0]["after"]
    assert created["data"] == {"level": "1"}
    assert created["metadata"]["namespace"] == namespace
    assert cluster.kubectl("get", "configmap", "applied", "-n", namespace).returncode != 0, "a dry run writes nothing"

    applied = mcp.ok("apply_manifest", manifest=yaml.safe_dump(manifest), namespace=namespace)
    assert applied["objects"][0]["applied"] is True
    real = cluster.get("configmap", "applied", "-n", namespace, "--show-managed-fields")
    assert real["data"] == {"level": "1"}
    assert any(m["manager"] == FIELD_MANAGER for m in real["metadata"]["managedFields"])

    # An update: the diff comes from the server's dry run and names exactly the changed fields.
    manifest["data"] = {"level": "2", "extra": "yes"}
    dry = mcp.ok("apply_manifest", manifest=yaml.safe_dump(manifest), namespace=namespace, dry_run_only=True)
    changes = {(c["path"], c["op"], c["before"], c["after"]) for c in dry["objects"][0]["changes"]}
    assert changes == {("data.extra", "add", None, "yes"), ("data.level", "change", "1", "2")}
    assert cluster.get("configmap", "applied", "-n", namespace)["data"] == {"level": "1"}
    again = mcp.ok("apply_manifest", manifest=yaml.safe_dump(manifest), namespace=namespace)
    assert again["objects"][0]["action"] == "update"
    assert cluster.get("configmap", "applied", "-n", namespace)["data"] == {"level": "2", "extra": "yes"}
    unchanged = mcp.ok("apply_manifest", manifest=yaml.safe_dump(manifest), namespace=namespace)
    assert (unchanged["objects"][0]["action"], unchanged["objects"][0]["applied"]) == ("unchanged", False)

    # The API server's own validation surfaces as invalid params naming the field.
    bad = {**manifest, "metadata": {"name": "Not_A_Name"}}
    with pytest.raises(MCPError) as invalid:
        mcp.call("apply_manifest", manifest=yaml.safe_dump(bad), namespace=namespace, dry_run_only=True)
    assert "metadata.name" in str(invalid.value)

    # A Deployment it created itself: the real server defaults dozens of fields; the diff of an image
    # change still names only the image, since both sides come from the API server.
    mcp.ok("apply_manifest", manifest=yaml.safe_dump(deployment("shop", 1)), namespace=namespace)
    pods_of(cluster, namespace, "shop", 1)
    newer = deployment("shop", 1, image="registry.example/web:2.0")
    dry = mcp.ok("apply_manifest", manifest=yaml.safe_dump(newer), namespace=namespace, dry_run_only=True)
    assert [(c["path"], c["before"], c["after"]) for c in dry["objects"][0]["changes"]] == [
        ("spec.template.spec.containers[0].image", IMAGE, "registry.example/web:2.0")
    ]
    assert spec_of(cluster, namespace, "shop")["template"]["spec"]["containers"][0]["image"] == IMAGE

    deleted = mcp.ok("delete_resource", kind="ConfigMap", name="applied", namespace=namespace)
    assert deleted["action"] == "deleted"
    eventually(
        lambda: cluster.kubectl("get", "configmap", "applied", "-n", namespace).returncode != 0,
        within=15,
        what="the ConfigMap gone",
    )
    assert "not found" in mcp.fails("delete_resource", kind="ConfigMap", name="applied", namespace=namespace)


def test_a_declined_confirmation_changes_nothing(cluster: Cluster, namespace: str, server: ServerProcess) -> None:
    create(cluster, namespace, deployment("keep", 1))
    pods_of(cluster, namespace, "keep", 1)
    before = cluster.get("deployment", "keep", "-n", namespace)
    mcp = Mcp(server, answer="decline")

    for tool, args in (
        ("restart_deployment", {"name": "keep"}),
        ("delete_resource", {"kind": "Deployment", "name": "keep"}),
        ("apply_manifest", {"manifest": yaml.safe_dump(deployment("keep", 9))}),
    ):
        message = mcp.fails(tool, namespace=namespace, **args)
        assert f"The user declined the confirmation: {tool} was not run and nothing changed." in message
    assert len(mcp.asked) == 3

    after = cluster.get("deployment", "keep", "-n", namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    assert list(replicasets_of(cluster, namespace, "keep")) == ["1"]


def test_exec_into_a_pod_that_never_ran_fails_clearly(cluster: Cluster, namespace: str, mcp: Mcp) -> None:
    create(cluster, namespace, deployment("shell", 1))
    (pod,) = pods_of(cluster, namespace, "shell", 1)
    name = pod["metadata"]["name"]
    # The API server refuses the websocket upgrade with a 400; the tool explains it from the pod.
    message = mcp.fails("exec_in_pod", name=name, namespace=namespace, command=["id"])
    assert f"the API server refused to exec in pod {namespace}/{name} (HTTP 400)" in message
    assert "no node assigned (phase Pending)" in message
    assert len(mcp.asked) == 1, "exec is HIGH risk: confirmed first"
    assert "not found" in mcp.fails("exec_in_pod", name="ghost", namespace=namespace, command=["id"])


# --------------------------------------------------------------------------------------------- 3. generation


def test_generated_deployments_are_validated_by_a_real_server_side_dry_run(
    cluster: Cluster, namespace: str, mcp: Mcp
) -> None:
    good = mcp.ok(
        "generate_deployment_yaml",
        name="gen",
        image="registry.example/gen:2",
        namespace=namespace,
        replicas=2,
        container_port=8080,
        health_path="/healthz",
        cpu_request="100m",
        memory_limit="256Mi",
        secret_env=[{"name": "DB_PASSWORD", "secret": "db", "key": "password"}],
    )
    assert good["validated"] is True
    assert good["validation"] == "server-side dry-run create succeeded"
    assert good["problems"] == []
    assert yaml.safe_load(good["yaml"]) == good["manifest"]
    assert cluster.kubectl("get", "deployment", "gen", "-n", namespace).returncode != 0, "validation creates nothing"
    # What it generated really creates (kubectl's own server-side dry run agrees).
    check = cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", stdin=good["yaml"])
    assert check.returncode == 0, check.stderr

    # Shape checks pass, but the API server refuses the label key: not validated, with its reason.
    bad = mcp.ok(
        "generate_deployment_yaml",
        name="gen",
        image="registry.example/gen:2",
        namespace=namespace,
        labels={"bad key!": "x"},
    )
    assert bad["validated"] is False
    assert bad["validation"] == "the API server rejected it"
    (problem,) = bad["problems"]
    assert "metadata.labels" in problem
    assert "Invalid value" in problem
    assert "bad key!" in problem

    # A name no API server accepts is refused before anything is sent.
    with pytest.raises(MCPError) as invalid:
        mcp.call("generate_deployment_yaml", name="Bad_Name", image="x", namespace=namespace)
    assert "name" in str(invalid.value)


def test_a_deployment_described_in_words_is_written_by_the_clients_model_and_validated(
    cluster: Cluster, namespace: str, server: ServerProcess
) -> None:
    answer = (
        "Here it is:\n```yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: described\n"
        "spec:\n  replicas: 2\n  selector:\n    matchLabels: {app: described}\n  template:\n"
        "    metadata:\n      labels: {app: described}\n    spec:\n      containers:\n"
        "      - name: web\n        image: registry.example/web:1\n```\n"
    )
    prompts: list[str] = []

    async def model(context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        content = params.messages[0].content
        prompts.append(content.text if isinstance(content, TextContent) else "")
        return CreateMessageResult(role="assistant", model="e2e-model", content=TextContent(type="text", text=answer))

    async def run() -> CallToolResult:
        async with Client(server.url, sampling_callback=model) as client:
            return await client.call_tool(
                "generate_deployment_from_description",
                {"description": "two replicas of registry.example/web:1", "namespace": namespace},
            )

    result = anyio.run(run)
    assert not result.is_error, text_of(result)
    generated = result.structured_content
    assert isinstance(generated, dict)
    assert generated["validated"] is True, generated
    assert generated["manifest"]["metadata"]["namespace"] == namespace
    assert "two replicas of registry.example/web:1" in prompts[0]
    assert cluster.kubectl("get", "deployment", "described", "-n", namespace).returncode != 0, "nothing is created"


# --------------------------------------------------------------------------------------------- 4. RBAC


def test_least_privilege_service_account_reads_but_cannot_scale_or_see_secrets(
    cluster: Cluster, namespace: str, operator: OperatorProcess, own_server: Callable[..., ServerProcess]
) -> None:
    secret_value = f"rbac-{uuid.uuid4().hex}"
    create(
        cluster,
        namespace,
        deployment("target", 2),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hidden"},
            "stringData": {"password": secret_value},
        },
    )
    pod_names = sorted(p["metadata"]["name"] for p in pods_of(cluster, namespace, "target", 2))
    applied = cluster.kubectl("apply", "-n", namespace, "-f", str(SAMPLES_DIR / "mcpserver.yaml"))
    assert applied.returncode == 0, applied.stderr

    def service_account() -> str:
        items = cluster.get("serviceaccounts", "-n", namespace, "-l", "mcpfleet.io/server=k8s-ops")["items"]
        assert len(items) == 1, items
        name = str(items[0]["metadata"]["name"])
        subject = f"system:serviceaccount:{namespace}:{name}"
        can = cluster.kubectl("auth", "can-i", "list", "pods", "-n", namespace, "--as", subject)
        assert can.stdout.strip() == "yes", can.stdout + can.stderr
        return name

    account = eventually(service_account, within=60, what="the operator's ServiceAccount with its RBAC")
    operator.assert_alive()
    subject = f"system:serviceaccount:{namespace}:{account}"
    for verb, resource in (("patch", "deployments"), ("get", "secrets"), ("list", "secrets")):
        can = cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace, "--as", subject)
        assert can.stdout.strip() == "no", f"the read-only preset grants {verb} {resource}"

    token = cluster.ok("create", "token", account, "-n", namespace, "--duration=1h").strip()
    kubeconfig = write_kubeconfig(
        cluster.root / f"k8s-ops-{namespace}.kubeconfig",
        cluster.state.server,
        cluster.state.ca_cert,
        user=account,
        token=token,
        namespace=namespace,
    )
    server = own_server(kubeconfig, K8S_NAMESPACE=namespace)
    mcp = Mcp(server)

    assert mcp.ok("cluster_info")["version"] == "v1.37.1"
    assert len(mcp.ok("list_pods", label_selector="app=target")["items"]) == 2
    assert mcp.ok("get_deployment", name="target")["summary"]["replicas"] == 2
    pod = mcp.ok("describe_resource", kind="Pod", name=pod_names[0])
    assert [o["kind"] for o in pod["owners"]] == ["ReplicaSet", "Deployment"]
    assert any(e["reason"] == "ScalingReplicaSet" for e in mcp.ok("list_events", kind="Deployment")["items"])

    refused = mcp.fails("scale_deployment", name="target", replicas=5)
    assert "the server's ServiceAccount lacks permission 'patch' on deployments.apps" in refused
    assert f"namespace {namespace}" in refused
    assert "forbidden" in refused
    assert subject in refused, "the API server's own 403 message is passed on"
    assert spec_of(cluster, namespace, "target")["replicas"] == 2

    outputs = []
    for tool, args in (
        ("list_resources", {"kind": "secrets"}),
        ("get_resource", {"kind": "Secret", "name": "hidden"}),
        ("describe_resource", {"kind": "Secret", "name": "hidden"}),
    ):
        result = mcp.call(tool, **args)
        outputs.append(text_of(result) + json.dumps(result.structured_content))
        assert result.is_error, f"{tool}: the read-only preset cannot read Secrets"
        assert "lacks permission" in text_of(result)
        assert "secrets" in text_of(result)
    assert not any(secret_value in out for out in outputs)
    assert secret_value not in server.log_text()


# --------------------------------------------------------------------------------------------- 5. redaction


def test_secret_values_never_leave_the_server(cluster: Cluster, namespace: str, mcp: Mcp) -> None:
    from_secret = f"s3cret-{uuid.uuid4().hex}"
    literal = f"literal-{uuid.uuid4().hex}"
    in_configmap = f"cm-{uuid.uuid4().hex}"
    create(
        cluster,
        namespace,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": from_secret}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"}, "data": {"api_token": in_configmap}},
        deployment(
            "app",
            1,
            env=[
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "ADMIN_PASSWORD", "value": literal},
                {"name": "MODE", "value": "plain"},
            ],
        ),
    )
    (pod,) = pods_of(cluster, namespace, "app", 1)
    pod_name = pod["metadata"]["name"]

    outputs: dict[str, str] = {}
    for tool, args in (
        ("get_pod", {"name": pod_name}),
        ("describe_resource", {"kind": "Pod", "name": pod_name}),
        ("get_deployment", {"name": "app"}),
        ("get_resource", {"kind": "Deployment", "name": "app"}),
        ("get_resource", {"kind": "Secret", "name": "db"}),
        ("describe_resource", {"kind": "Secret", "name": "db"}),
        ("list_resources", {"kind": "secrets"}),
        ("get_resource", {"kind": "ConfigMap", "name": "conf"}),
        ("list_events", {}),
        ("apply_manifest", {"manifest": yaml.safe_dump(deployment("app", 1)), "dry_run_only": True}),
        (
            "apply_manifest",
            {
                "manifest": yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "db"},
                        "stringData": {"password": from_secret + "-new"},
                    }
                ),
                "dry_run_only": True,
            },
        ),
    ):
        result = mcp.call(tool, namespace=namespace, **args)
        assert not result.is_error, f"{tool}: {text_of(result)}"
        outputs[f"{tool} {args}"] = text_of(result) + json.dumps(result.structured_content)

    for call, out in outputs.items():
        for value in (from_secret, literal, in_configmap):
            assert value not in out, f"{call} leaked a secret value"
    env = {
        e["name"]: e
        for e in mcp.ok("get_pod", name=pod_name, namespace=namespace)["object"]["spec"]["containers"][0]["env"]
    }
    assert env["DB_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "password"}}
    assert env["MODE"]["value"] == "plain"
    secret = mcp.ok("get_resource", kind="Secret", name="db", namespace=namespace)["object"]
    assert "data" not in secret
    assert "stringData" not in secret
    assert secret["keys"] == 1
    assert from_secret not in mcp.server.log_text()


# --------------------------------------------------------------------------------------------- 6. policy


def test_changes_in_a_protected_namespace_are_refused(cluster: Cluster, mcp: Mcp) -> None:
    name = f"guarded-{uuid.uuid4().hex[:6]}"
    create(cluster, "kube-system", deployment(name, 1))
    try:
        message = mcp.fails("scale_deployment", name=name, replicas=3, namespace="kube-system")
        assert "namespace 'kube-system' is protected" in message
        assert "K8S_PROTECTED_NAMESPACES" in message
        message = mcp.fails("delete_resource", kind="Deployment", name=name, namespace="kube-system")
        assert "K8S_PROTECTED_NAMESPACES" in message
        assert spec_of(cluster, "kube-system", name)["replicas"] == 1
        assert mcp.ok("get_deployment", name=name, namespace="kube-system")["summary"]["replicas"] == 1
    finally:
        cluster.kubectl("delete", "deployment", name, "-n", "kube-system", "--wait=false")


# --------------------------------------------------------------------------------------------- 7. probes


def test_ready_reports_the_real_api_server(cluster: Cluster, server: ServerProcess) -> None:
    status, body = server.http_json("/ready")
    assert status == 200
    assert body["ready"] is True
    assert body["backend"] == {
        "name": f"Kubernetes API at {cluster.state.server}",
        "reachable": True,
        "detail": "Kubernetes v1.37.1",
    }
    tools = Mcp(server).tool_names()
    assert body["tools"] == len(tools)
    assert {"cluster_info", "list_pods", "scale_deployment", "apply_manifest", "generate_deployment_yaml"} <= set(tools)
    assert len(tools) == 26
    assert "exec_in_pod" in tools, "K8S_EXEC_ENABLED is true on this server"


def test_an_unreachable_api_server_is_reported_not_fatal(
    cluster: Cluster, tmp_path: Path, own_server: Callable[..., ServerProcess]
) -> None:
    closed = f"https://127.0.0.1:{free_port()}"
    kubeconfig = write_kubeconfig(
        tmp_path / "closed.kubeconfig", closed, cluster.state.ca_cert, user="nobody", token="not-a-token"
    )
    server = own_server(kubeconfig, K8S_PROBE_TIMEOUT_SECONDS="2")
    status, body = server.http_json("/ready")
    assert status == 200, "the server serves; /ready reports the backend"
    assert body["ready"] is True
    assert body["backend"]["reachable"] is False
    assert body["backend"]["name"] == f"Kubernetes API at {closed}"

    mcp = Mcp(server)
    tools = mcp.tool_names()
    assert len(tools) == 25
    assert "exec_in_pod" not in tools, "offered only with K8S_EXEC_ENABLED"
    message = mcp.fails("list_pods", namespace="default")
    assert f"Kubernetes API at {closed} is unavailable" in message
    message = mcp.fails("cluster_info")
    assert f"Kubernetes API at {closed} is unavailable" in message
