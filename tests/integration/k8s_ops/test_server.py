"""The module as the base sees it: tool names and traits, resources and prompts through a real MCP client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import TextResourceContents

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.app import build_server
from mcpfleet_servers.base.module import ServerModule
from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.settings import ConfigFile, ServerSettings
from mcpfleet_servers.k8s_ops.server import K8sOpsServer
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from tests.integration.k8s_ops.conftest import K8sOpsEmulator, pod, put
from tests.integration.k8s_ops.session import HIGH_TOOLS, READ_TOOLS

pytestmark = pytest.mark.integration


def test_tool_names_and_traits(server: K8sOpsServer) -> None:
    module: ServerModule = server
    tools = {t.name: t.traits for t in module.toolset()}
    assert set(tools) == READ_TOOLS | HIGH_TOOLS | {"scale_deployment"}
    for name in READ_TOOLS:
        assert (tools[name].read_only, tools[name].risk) == (True, Risk.SAFE), name
    for name in HIGH_TOOLS:
        assert (tools[name].destructive, tools[name].risk) == (True, Risk.HIGH), name
    scale = tools["scale_deployment"]
    assert (scale.risk, scale.destructive, scale.idempotent, scale.read_only) == (Risk.MEDIUM, False, True, False)
    assert module.type_name == "k8s-ops"
    assert "continue_token" in module.instructions


async def test_every_tool_has_a_described_input_schema_and_an_output_schema(server: K8sOpsServer) -> None:
    mcp = MCPServer("k8s-test")
    for tool in server.toolset():
        mcp.add_tool(tool.fn, name=tool.name, description=tool.description)
    for listed in await mcp.list_tools():
        assert listed.output_schema is not None, listed.name
        for name, prop in listed.input_schema.get("properties", {}).items():
            assert prop.get("description"), f"{listed.name}.{name} has no description"
        if "namespace" in listed.input_schema.get("properties", {}):
            assert "context" in listed.input_schema["properties"], listed.name


async def test_resources_and_prompts(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    put(emulator, "pods", pod("web-1"))
    mcp = MCPServer("k8s-test")
    server.register_extras(mcp)
    async with Client(mcp) as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"k8s://cluster", "k8s://namespaces"} <= uris
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "k8s://namespaces/{ns}/pods/{name}" in templates
        read = await client.read_resource("k8s://namespaces/team-a/pods/web-1")
        contents = read.contents[0]
        assert isinstance(contents, TextResourceContents)
        assert json.loads(contents.text)["summary"]["name"] == "web-1"
        cluster = await client.read_resource("k8s://cluster")
        assert isinstance(cluster.contents[0], TextResourceContents)
        assert "contexts" in json.loads(cluster.contents[0].text)
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"diagnose_pod", "explain_rollout"}
        prompt = await client.get_prompt("diagnose_pod", {"namespace": "team-a", "pod": "web-1"})
        assert "get_pod_logs" in str(prompt.messages[0].content)


async def test_read_only_mode_offers_no_change_tools(
    kubeconfig: Path, budget: Budget, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The operator's config block sets readOnly; the base's policy (MCP_READ_ONLY) reads it.
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"type": "k8s-ops", "config": {"k8sOps": {"readOnly": True}}}))
    for name in ("MCP_READ_ONLY", "MCP_TOOLS_ALLOW", "MCP_TOOLS_DENY"):
        monkeypatch.delenv(name, raising=False)
    base = ServerSettings.load(ConfigFile.read(config))
    k8s = K8sOpsSettings.from_config(None, kubeconfig_path=str(kubeconfig), exec_enabled=True)
    fleet = build_server(K8sOpsServer(k8s, budget), base)
    async with Client(fleet.mcp) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert names == READ_TOOLS
