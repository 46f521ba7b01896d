"""A node whose kubelet is down: logs and exec say so, instead of blaming the API server.

Its own control plane, because a Node object would change what other tests see in the shared one.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import yaml
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult, TextContent

from mcpfleet_cli.devcluster.cluster import find_binaries, kubectl, running
from mcpfleet_servers.base.app import build_server
from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.settings import ServerSettings
from mcpfleet_servers.k8s_ops.server import K8sOpsServer
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from tests.e2e.conftest import _tools_bin, eventually

pytestmark = pytest.mark.timeout(180)

# A Node whose kubelet endpoint is a closed loopback port, and a Pod bound to it.
NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "ghost"},
    "status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}},
    },
}
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "default"},
    "spec": {"nodeName": "ghost", "containers": [{"name": "c", "image": "registry.example/c:1"}]},
}


async def _accept(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"confirm": True})


def test_logs_and_exec_on_a_node_without_a_reachable_kubelet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binaries = find_binaries(_tools_bin())
    with running(tmp_path / "cluster", binaries) as (_, state):
        kubeconfig = Path(state.kubeconfig)
        # The default ServiceAccount appears once the controller manager has started.
        eventually(
            lambda: kubectl(binaries, kubeconfig, "get", "sa", "default").returncode == 0, within=60, what="default SA"
        )
        applied = kubectl(binaries, kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all([NODE, POD]))
        assert applied.returncode == 0, applied.stderr

        for name in ("MCP_READ_ONLY", "MCP_NO_DESTRUCTIVE", "MCP_TOOLS_ALLOW", "MCP_TOOLS_DENY"):
            monkeypatch.delenv(name, raising=False)
        module = K8sOpsServer(K8sOpsSettings(kubeconfig_path=str(kubeconfig), exec_enabled=True), Budget())
        fleet = build_server(module, ServerSettings.load())

        async def calls() -> list[str]:
            await module.start()
            try:
                async with Client(fleet.mcp, elicitation_callback=_accept) as client:
                    logs = await client.call_tool("get_pod_logs", {"name": "p", "namespace": "default"})
                    execd = await client.call_tool(
                        "exec_in_pod", {"name": "p", "namespace": "default", "command": ["ls"]}
                    )
            finally:
                await module.close()
            texts = []
            for result in (logs, execd):
                assert result.is_error, json.dumps(result.structured_content)
                texts.append(" ".join(b.text for b in result.content if isinstance(b, TextContent)))
            return texts

        logs_text, exec_text = anyio.run(calls)
    assert "could not reach the kubelet of Pod default/p's node for its logs" in logs_text
    assert "127.0.0.1:1" in logs_text, "the API server's own reason is passed on"
    assert "could not reach the kubelet of Pod default/p's node for its exec" in exec_text
    for text in (logs_text, exec_text):
        assert "Kubernetes API at" not in text, "the API server itself answered; it is not the one unavailable"
