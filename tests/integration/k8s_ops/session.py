"""Helpers for driving the k8s-ops FleetServer through a real MCP client session."""

from __future__ import annotations

import json
from typing import Any, Literal

from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.types import (
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    TextContent,
)

from mcpfleet_servers.base.app import FleetServer
from tests.integration.k8s_ops.conftest import K8sOpsEmulator

Mode = Literal["auto", "legacy"]
MODES: list[Mode] = ["auto", "legacy"]

READ_TOOLS = frozenset(
    {
        "cluster_info",
        "list_namespaces",
        "list_pods",
        "get_pod",
        "get_pod_logs",
        "list_deployments",
        "get_deployment",
        "rollout_status",
        "rollout_history",
        "list_services",
        "get_service",
        "list_events",
        "describe_resource",
        "list_resources",
        "get_resource",
        "list_nodes",
        "top_pods",
        "top_nodes",
        "generate_deployment_yaml",
        "generate_deployment_from_description",
    }
)
HIGH_TOOLS = frozenset(
    {"restart_deployment", "rollback_deployment", "apply_manifest", "delete_resource", "exec_in_pod"}
)
ALL_TOOLS = READ_TOOLS | HIGH_TOOLS | {"scale_deployment"}

MANIFEST = """\
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


def text_of(result: CallToolResult) -> str:
    """All text content of a result, joined."""
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


class Answers:
    """An elicitation callback that answers every confirmation the same way and keeps the questions."""

    def __init__(self, action: Literal["accept", "decline", "cancel"] = "accept", confirm: bool = True) -> None:
        self.action = action
        self.confirm = confirm
        self.questions: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        content: dict[str, str | int | float | bool | list[str] | None] | None = (
            {"confirm": self.confirm} if self.action == "accept" else None
        )
        return ElicitResult(action=self.action, content=content)


class Model:
    """A sampling callback standing in for the client's model: answers with a fixed text, keeps the prompts."""

    def __init__(self, answer: str = f"```yaml\n{MANIFEST}```") -> None:
        self.answer = answer
        self.prompts: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
        content = params.messages[0].content
        self.prompts.append(content.text if isinstance(content, TextContent) else "")
        return CreateMessageResult(
            role="assistant", model="test-model", content=TextContent(type="text", text=self.answer)
        )


class Session:
    """One client session on a FleetServer: calls are recorded, and every answer is kept for later scans."""

    def __init__(
        self, client: Client, fleet: FleetServer, emulator: K8sOpsEmulator, model: Model | None = None
    ) -> None:
        self.client = client
        self.fleet = fleet
        self.emulator = emulator
        self.model = model  # the client's sampling callback, when it has one
        self.called: set[str] = set()
        self.transcript: list[str] = []  # every structured result, text content and error message seen

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        self.called.add(tool)
        try:
            result = await self.client.call_tool(tool, arguments)
        except MCPError as exc:
            self.transcript.append(f"{exc.code} {exc}")
            self.transcript.append(json.dumps(exc.error.data, default=str))
            raise
        self.transcript.append(text_of(result))
        if result.structured_content is not None:
            self.transcript.append(json.dumps(result.structured_content))
        return result

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """A successful call's structured content (which must match its text rendering)."""
        result = await self.call(tool, **arguments)
        assert not result.is_error, f"{tool}: {text_of(result)}"
        content: dict[str, Any] | None = result.structured_content
        assert content is not None, tool
        assert json.loads(text_of(result)) == content
        return content

    async def error(self, tool: str, **arguments: Any) -> str:
        """The text of a call that fails as a tool error (is_error, no structured content)."""
        result = await self.call(tool, **arguments)
        assert result.is_error, f"{tool} did not fail: {result.structured_content}"
        assert result.structured_content is None
        return text_of(result)

    async def invalid(self, tool: str, **arguments: Any) -> MCPError:
        """The JSON-RPC error of a call with bad arguments."""
        try:
            await self.call(tool, **arguments)
        except MCPError as exc:
            return exc
        raise AssertionError(f"{tool} accepted {arguments}")
