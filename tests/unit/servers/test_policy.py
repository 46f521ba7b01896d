"""Which tools a server exposes: read-only, no-destructive, allow and deny globs (bare or prefixed)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.policy import ToolPolicy, matches_any
from mcpfleet_servers.base.toolkit import Toolset


class Out(BaseModel):
    ok: bool


def _toolset() -> Toolset:
    tools = Toolset()

    @tools.tool(risk=Risk.SAFE, read_only=True)
    async def get_pods() -> Out:
        """Read pods."""
        return Out(ok=True)

    @tools.tool(risk=Risk.SAFE, read_only=True)
    async def get_secret_names() -> Out:
        """Read secret names."""
        return Out(ok=True)

    @tools.tool(risk=Risk.MEDIUM, read_only=False, idempotent=True)
    async def scale_deployment() -> Out:
        """Scale."""
        return Out(ok=True)

    @tools.tool(risk=Risk.HIGH, read_only=False)
    async def restart_deployment() -> Out:
        """Restart."""
        return Out(ok=True)

    @tools.tool(risk=Risk.HIGH, read_only=False, destructive=True)
    async def delete_pod() -> Out:
        """Delete."""
        return Out(ok=True)

    return tools


ALL = ["get_pods", "get_secret_names", "scale_deployment", "restart_deployment", "delete_pod"]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ToolPolicy(), ALL),
        (ToolPolicy(read_only=True), ["get_pods", "get_secret_names"]),
        (ToolPolicy(no_destructive=True), ["get_pods", "get_secret_names", "scale_deployment", "restart_deployment"]),
        (ToolPolicy(allow=("get_*",)), ["get_pods", "get_secret_names"]),
        (ToolPolicy(allow=("get_*",), deny=("get_secret*",)), ["get_pods"]),
        (ToolPolicy(deny=("*_deployment",)), ["get_pods", "get_secret_names", "delete_pod"]),
        (ToolPolicy(allow=("k8s:get_pods", "delete_pod"), prefix="k8s"), ["get_pods", "delete_pod"]),
        (ToolPolicy(deny=("k8s:*",), prefix="k8s"), []),
        (ToolPolicy(deny=("k8s:*",)), ALL),
        (ToolPolicy(read_only=True, allow=("delete_pod",)), []),
        (ToolPolicy(allow=("GET_PODS",)), []),
    ],
)
def test_selection(policy: ToolPolicy, expected: list[str]) -> None:
    assert [tool.name for tool in policy.select(_toolset())] == expected


def test_reasons_name_the_setting() -> None:
    tools = _toolset()
    assert "MCP_READ_ONLY" in (ToolPolicy(read_only=True).hidden_reason(tools["scale_deployment"]) or "")
    assert "MCP_NO_DESTRUCTIVE" in (ToolPolicy(no_destructive=True).hidden_reason(tools["delete_pod"]) or "")
    assert "MCP_TOOLS_ALLOW" in (ToolPolicy(allow=("x",)).hidden_reason(tools["get_pods"]) or "")
    assert "MCP_TOOLS_DENY" in (ToolPolicy(deny=("get_*",)).hidden_reason(tools["get_pods"]) or "")
    assert ToolPolicy().hidden_reason(tools["get_pods"]) is None


def test_globs() -> None:
    assert matches_any("get_pods", ["get_*"])
    assert matches_any("get_pod", ["get_po?"])
    assert not matches_any("get_pods", [])
    assert not matches_any("list_pods", ["get_*", "*_nodes"])
