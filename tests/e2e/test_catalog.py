"""The whole flow on a real control plane: `kubectl apply -f samples/mcpserver.yaml` → operator → a server
process standing in for the Pod → catalog ConfigMap → gateway → an MCP client; then a tool added to the
running server reaches the client as list_changed.

No kubelet runs: the controller manager makes the Deployment's Pod, the test marks it running on loopback
(its IP 127.0.0.1) and starts `mcpfleet server k8s-ops` with that Pod's identity and its ServiceAccount's
token, so the server writes its own tool report with exactly the permissions the operator granted. The
gateway reads the catalog with a ServiceAccount that may only read that one ConfigMap.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest

from mcpfleet_cli.devcluster.cluster import free_port, write_kubeconfig
from mcpfleet_contracts.catalog import Catalog
from tests.e2e.conftest import OPERATOR_NAMESPACE, SAMPLES_DIR, Cluster, OperatorProcess, eventually
from tests.e2e.servers import ServerProcess, clean_environment, start_server
from tests.integration.gateway.harness import GatewayProcess, config_document, mcp_client, token, write_config

pytestmark = pytest.mark.timeout(300)

SERVER = "k8s-ops"  # metadata.name in samples/mcpserver.yaml
CATALOG = "mcpfleet-catalog"
GATEWAY_ACCOUNT = "mcpfleet-gateway-e2e"
READY = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}


def pod_on_port(cluster: Cluster, namespace: str, port: int) -> str:
    """The name of the server's Pod whose container listens on ``port`` (the rollout after the port change)."""
    pods = cluster.get("pods", "-n", namespace, "-l", f"mcpfleet.io/server={SERVER}")["items"]
    for pod in pods:
        ports = [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])]
        if port in ports and not pod["metadata"].get("deletionTimestamp"):
            return str(pod["metadata"]["name"])
    raise AssertionError(f"no Pod on port {port} yet among {[p['metadata']['name'] for p in pods]}")


def run_on_loopback(cluster: Cluster, namespace: str, pod: str) -> None:
    """Stand in for the kubelet: the Pod runs, is ready, and its IP is loopback (where the process listens)."""
    status = {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "conditions": [READY]}
    patch = json.dumps({"status": status})
    cluster.ok("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    credential = cluster.ok("create", "token", account, "-n", namespace, "--duration=1h").strip()
    return write_kubeconfig(path, cluster.state.server, cluster.state.ca_cert, user=account, token=credential)


def start_stand_in(config: Path, kubeconfig: Path, port: int, pod: str, namespace: str, log: Path) -> ServerProcess:
    """`mcpfleet server k8s-ops` as the Pod would run it: the operator's config file, the Pod's identity."""
    environment = clean_environment("K8S_", "POD_")
    environment.update(
        {
            "KUBECONFIG": str(kubeconfig),  # the tool report
            "K8S_KUBECONFIG_PATH": str(kubeconfig),  # the tools
            "POD_NAME": pod,
            "POD_NAMESPACE": namespace,
            "MCP_LOG_LEVEL": "INFO",
        }
    )
    return start_server("k8s-ops", log, environment, "--config", str(config), port=port)


def gateway_reader(cluster: Cluster, path: Path) -> Path:
    """A ServiceAccount that may get and watch the catalog ConfigMap and nothing else."""
    ns = ["-n", OPERATOR_NAMESPACE]
    if cluster.kubectl("get", "serviceaccount", GATEWAY_ACCOUNT, *ns).returncode != 0:
        cluster.ok("create", "serviceaccount", GATEWAY_ACCOUNT, *ns)
        cluster.ok(
            "create", "role", GATEWAY_ACCOUNT, *ns, "--verb=get,list,watch", "--resource=configmaps",
            f"--resource-name={CATALOG}",
        )  # fmt: skip
        cluster.ok(
            "create", "rolebinding", GATEWAY_ACCOUNT, *ns, f"--role={GATEWAY_ACCOUNT}",
            f"--serviceaccount={OPERATOR_NAMESPACE}:{GATEWAY_ACCOUNT}",
        )  # fmt: skip
    return service_account_kubeconfig(cluster, OPERATOR_NAMESPACE, GATEWAY_ACCOUNT, path)


def cataloged_tools(cluster: Cluster, namespace: str) -> set[str]:
    found = cluster.get("configmap", CATALOG, "-n", OPERATOR_NAMESPACE)
    catalog = Catalog.model_validate_json(found["data"]["catalog.json"])
    server = next((s for s in catalog.servers if s.name == f"{namespace}/{SERVER}"), None)
    assert server is not None, f"{namespace}/{SERVER} not in catalog revision {catalog.revision}"
    return {tool.name for tool in server.tools}


@pytest.fixture
def stand_in(cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path) -> Iterator[ServerProcess]:
    """The sample applied with kubectl, its Pod running on loopback as a real server process."""
    cluster.ok("apply", "-n", namespace, "-f", str(SAMPLES_DIR / "mcpserver.yaml"))
    port = free_port()  # the sample's 8080 may be taken on this machine: move the server to a free port
    cluster.ok("patch", "mcps", SERVER, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"port": port}}))
    pod = eventually(lambda: pod_on_port(cluster, namespace, port), within=60, what="the server Pod on the new port")
    run_on_loopback(cluster, namespace, pod)

    def config_file() -> str:
        text = cluster.get("configmap", f"{SERVER}-config", "-n", namespace)["data"]["config.json"]
        assert json.loads(text)["port"] == port, "the ConfigMap still has the old port"
        return str(text)

    config = tmp_path / "config.json"
    config.write_text(eventually(config_file, within=30, what="the server's config.json"))
    kubeconfig = service_account_kubeconfig(cluster, namespace, SERVER, tmp_path / "server.kubeconfig")
    server = start_stand_in(config, kubeconfig, port, pod, namespace, tmp_path / "server.log")
    try:
        yield server
    finally:
        server.stop()
        server.assert_no_traceback()


def test_the_sample_reaches_clients_through_the_catalog_and_a_new_tool_follows(
    cluster: Cluster, namespace: str, operator: OperatorProcess, stand_in: ServerProcess, tmp_path: Path
) -> None:
    names = eventually(lambda: cataloged_tools(cluster, namespace), within=60, what="the server in the catalog")
    assert "k8s:list_namespaces" in names
    assert "k8s:scale_deployment" not in names, "the sample is read-only"

    def synced() -> dict[str, Any]:
        obj = cluster.get("mcps", SERVER, "-n", namespace)
        condition: dict[str, Any] = next(
            (c for c in obj["status"].get("conditions", []) if c["type"] == "ToolsSynced"), {}
        )
        assert condition.get("status") == "True", obj["status"]
        return dict(obj["status"])

    status = eventually(synced, within=30, what="ToolsSynced=True")
    assert status["tools"]["count"] == len(names)

    overrides = {f"{namespace}/{SERVER}": stand_in.url}
    catalog = {
        "configmap": {"namespace": OPERATOR_NAMESPACE, "name": CATALOG},
        "kubeconfig": str(gateway_reader(cluster, tmp_path / "gateway.kubeconfig")),
        "endpoint_overrides": overrides,
    }
    config = write_config(tmp_path / "gateway.json", config_document(tmp_path, upstreams={}, catalog=catalog))
    gateway = GatewayProcess(config, "gw-e2e", tmp_path / "gateway.log")
    gateway.start(timeout=60)
    try:
        anyio.run(_through_the_gateway, gateway, stand_in, namespace, cluster)
    finally:
        gateway.stop()
    lines = gateway.log.read_text(errors="replace")
    assert "is forbidden" not in lines, "the gateway's reader lacks a permission:\n" + lines[-3000:]


async def _through_the_gateway(
    gateway: GatewayProcess, stand_in: ServerProcess, namespace: str, cluster: Cluster
) -> None:
    admin = token("ada", ("admin",))
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with mcp_client(f"{gateway.url}/mcp", admin, mode="legacy", message_handler=on_message) as client:
        for _ in range(100):  # the gateway may still be connecting to the upstream it just read
            names = {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}
            if "k8s:list_namespaces" in names:
                break
            await asyncio.sleep(0.2)
        assert "k8s:list_namespaces" in names, names
        result = await client.call_tool("k8s:list_namespaces", {})
        assert not result.is_error, result
        listed = {item["name"] for item in (result.structured_content or {})["items"]}
        assert namespace in listed

        # Tools appear on the running server: readOnly off in its config file, then SIGHUP.
        await asyncio.to_thread(allow_writes, stand_in.log.parent / "config.json")
        stand_in.process.send_signal(signal.SIGHUP)

        await asyncio.wait_for(changed.wait(), timeout=30)
        names = {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}
        assert "k8s:scale_deployment" in names, names
    assert "k8s:scale_deployment" in cataloged_tools(cluster, namespace)


def allow_writes(config: Path) -> None:
    document = json.loads(config.read_text())
    document["config"]["k8sOps"]["readOnly"] = False
    config.write_text(json.dumps(document))


def test_a_servers_account_may_write_only_its_own_report(
    cluster: Cluster, namespace: str, stand_in: ServerProcess, tmp_path: Path
) -> None:
    """RBAC grants patch on the namespace's Pods; the admission policy narrows it to the report on its own Pod."""
    pod = eventually(lambda: reported_pod(cluster, namespace), within=60, what="the stand-in's report on its Pod")
    server = ["--kubeconfig", str(tmp_path / "server.kubeconfig")]

    denied = cluster.kubectl("label", "pod", pod, "-n", namespace, "sneaky=1", *server)
    assert denied.returncode != 0
    assert "may only write the tool report annotations" in denied.stderr, denied.stderr

    other = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bystander", "labels": {"app": "bystander"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }
    assert cluster.apply(other, "-n", namespace).returncode == 0
    foreign = cluster.kubectl(
        "annotate", "pod", "bystander", "-n", namespace, "mcpfleet.io/tools-digest=sha256:" + "0" * 64, *server
    )
    assert foreign.returncode != 0
    assert "on its own Pod" in foreign.stderr, foreign.stderr

    # The report itself stays writable (the stand-in wrote it with this very account).
    assert cluster.get("pod", pod, "-n", namespace)["metadata"]["annotations"]["mcpfleet.io/tools-digest"]


def reported_pod(cluster: Cluster, namespace: str) -> str:
    pods = cluster.get("pods", "-n", namespace, "-l", f"mcpfleet.io/server={SERVER}")["items"]
    reported = [p for p in pods if "mcpfleet.io/tools-digest" in (p["metadata"].get("annotations") or {})]
    assert reported, "no Pod carries a tool report yet"
    return str(reported[0]["metadata"]["name"])
