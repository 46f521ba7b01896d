"""Change and generation tools against the emulator: scale, restart, rollback, apply (dry run + diff), delete,
exec's error path, manifest generation with server-side validation, and sampling through a real MCP client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CreateMessageRequestParams, CreateMessageResult, TextContent

from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.toolkit import InvalidArgument, ToolFailure
from mcpfleet_servers.k8s_ops.server import K8sOpsServer
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from tests.integration.k8s_ops.conftest import K8sOpsEmulator, call, pod, put
from tests.integration.k8s_ops.test_reads import deployment, replicaset

pytestmark = pytest.mark.integration

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "api:1"}]
"""


async def test_scale_restart_and_rollback(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    dep = deployment("web")
    put(emulator, "deployments", dep, group="apps")
    for revision, image in ((1, "web:1"), (2, "web:2")):
        put(emulator, "replicasets", replicaset(dep, revision, image), group="apps")

    scaled = await call(server, "scale_deployment", name="web", replicas=5)
    assert (scaled.before, scaled.after) == ("2", "5")
    assert emulator.stored("deployments", "team-a", "web", group="apps")["spec"]["replicas"] == 5

    restarted = await call(server, "restart_deployment", name="web")
    template = emulator.stored("deployments", "team-a", "web", group="apps")["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == restarted.after

    rolled = await call(server, "rollback_deployment", name="web")
    assert (rolled.before, rolled.after) == ("2", "1")
    template = emulator.stored("deployments", "team-a", "web", group="apps")["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "web:1"
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert "annotations" not in template["metadata"]  # the template is replaced, not merged
    with pytest.raises(InvalidArgument) as bad:
        await call(server, "rollback_deployment", name="web", to_revision=9)
    assert bad.value.field == "to_revision"
    assert "[2, 1]" in bad.value.message


async def test_apply_manifest_dry_runs_first_and_shows_the_diff(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    preview = await call(server, "apply_manifest", manifest=MANIFEST, dry_run_only=True)
    assert preview.dry_run
    assert preview.objects[0].action == "create"
    assert not preview.objects[0].applied
    assert emulator.stored("deployments", "team-a", "api", group="apps") is None  # nothing written

    applied = await call(server, "apply_manifest", manifest=MANIFEST)
    assert applied.objects[0].applied
    assert applied.objects[0].namespace == "team-a"
    assert emulator.stored("deployments", "team-a", "api", group="apps")["spec"]["replicas"] == 2

    changed = await call(server, "apply_manifest", manifest=MANIFEST.replace("replicas: 2", "replicas: 4"))
    assert changed.objects[0].action == "update"
    assert [(c.path, c.before, c.after) for c in changed.objects[0].changes] == [("spec.replicas", 2, 4)]
    assert emulator.stored("deployments", "team-a", "api", group="apps")["spec"]["replicas"] == 4

    same = await call(server, "apply_manifest", manifest=MANIFEST.replace("replicas: 2", "replicas: 4"))
    assert same.objects[0].action == "unchanged"
    assert not same.objects[0].applied

    with pytest.raises(InvalidArgument) as bad:
        await call(server, "apply_manifest", manifest="kind: [")
    assert bad.value.field == "manifest"


async def test_delete_resource(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    put(emulator, "pods", pod("doomed"))
    result = await call(server, "delete_resource", kind="Pod", name="doomed")
    assert result.action == "deleted"
    assert emulator.stored("pods", "team-a", "doomed") is None


async def test_exec_fails_clearly_where_the_api_server_cannot_upgrade(
    server: K8sOpsServer, emulator: K8sOpsEmulator, kubeconfig: Path, budget: Budget
) -> None:
    put(emulator, "pods", pod("shell"))
    # kmock serves no websocket upgrade for pods/exec; the tool says so instead of returning nonsense.
    with pytest.raises(ToolFailure, match="did not upgrade the pods/exec request of team-a/shell"):
        await call(server, "exec_in_pod", name="shell", command=["id"])
    quiet = K8sOpsServer(K8sOpsSettings(kubeconfig_path=str(kubeconfig)), budget)
    assert "exec_in_pod" not in [t.name for t in quiet.toolset()]


async def test_generate_deployment_yaml_is_validated_by_a_server_dry_run(
    server: K8sOpsServer, emulator: K8sOpsEmulator
) -> None:
    result = await call(
        server,
        "generate_deployment_yaml",
        name="api",
        image="api:1",
        replicas=2,
        container_port=8080,
        secret_env=None,
        env={"MODE": "prod"},
    )
    assert result.validated
    assert result.validation == "server-side dry-run create succeeded"
    assert "kind: Deployment" in result.yaml
    assert result.manifest["metadata"]["namespace"] == "team-a"
    assert emulator.stored("deployments", "team-a", "api", group="apps") is None  # dry run only
    with pytest.raises(InvalidArgument) as credential:
        await call(server, "generate_deployment_yaml", name="api", image="api:1", env={"DB_PASSWORD": "x"})
    assert credential.value.field == "env"


async def test_generation_without_a_reachable_cluster_says_not_validated(closed_port_server: K8sOpsServer) -> None:
    result = await call(closed_port_server, "generate_deployment_yaml", name="api", image="api:1")
    assert not result.validated
    assert "not validated" in result.validation
    assert result.problems == []


def _sampled(text: str) -> CreateMessageResult:
    return CreateMessageResult(role="assistant", model="test-model", content=TextContent(type="text", text=text))


async def test_generate_from_description_through_mcp_sampling(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    direct = await call(
        server, "generate_deployment_from_description", description="api server", model_answer=_sampled(MANIFEST)
    )
    assert direct.validated
    assert direct.manifest["metadata"]["name"] == "api"
    with pytest.raises(ToolFailure, match="did not answer with a manifest"):
        await call(server, "generate_deployment_from_description", description="x y z", model_answer=_sampled("no"))

    # The same tool on a real MCP server: the client's model answers through the SDK's Sample resolver.
    tool = server.toolset()["generate_deployment_from_description"]
    mcp = MCPServer("k8s-test")
    mcp.add_tool(tool.fn, name=tool.name, description=tool.description)
    prompts: list[str] = []

    async def sampling(context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        content = params.messages[0].content
        prompts.append(content.text if isinstance(content, TextContent) else "")
        return _sampled(f"```yaml\n{MANIFEST}```")

    async with Client(mcp, sampling_callback=sampling) as client:
        answer = await client.call_tool("generate_deployment_from_description", {"description": "an api, 2 replicas"})
    assert not answer.is_error
    assert answer.structured_content is not None
    assert answer.structured_content["validated"] is True
    assert "an api, 2 replicas" in prompts[0]

    async with Client(mcp) as client:  # no sampling callback: the client does not support sampling
        with pytest.raises(MCPError, match="did not declare the sampling capability"):
            await client.call_tool("generate_deployment_from_description", {"description": "an api"})


async def test_negative_replicas_are_refused_by_the_tool_schema(server: K8sOpsServer) -> None:
    tool = server.toolset()["scale_deployment"]
    mcp = MCPServer("k8s-test")
    mcp.add_tool(tool.fn, name=tool.name, description=tool.description)
    listed = {t.name: t for t in await mcp.list_tools()}
    schema: dict[str, Any] = listed["scale_deployment"].input_schema
    assert schema["properties"]["replicas"]["minimum"] == 0
    assert "replicas" in schema["required"]
    with pytest.raises(ToolError, match=r"replicas\n.*greater than or equal to 0"):
        await mcp.call_tool("scale_deployment", {"name": "web", "replicas": -1})
