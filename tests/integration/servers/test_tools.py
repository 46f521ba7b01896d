"""The base's governance of tool calls, through real in-process MCP client sessions (both protocol eras)."""

from __future__ import annotations

import io
from typing import Any, Literal

import pytest
from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.server.mcpserver.tools import Tool
from mcp.types import INVALID_PARAMS, CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from mcpfleet_servers.base.app import CONFIRMATION_PARAM
from tests.integration.servers.conftest import MakeServer
from tests.integration.servers.demo import SECRET, DemoModule

pytestmark = pytest.mark.integration

Mode = Literal["auto", "legacy"]
MODES: list[Mode] = ["auto", "legacy"]
ALL_TOOLS = [
    "list_items",
    "scale",
    "delete_item",
    "restart",
    "annotate",
    "connection",
    "slow",
    "backend_down",
    "leaky_failure",
    "crash",
    "dump",
]


def _text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


class Answers:
    """An elicitation callback that answers every confirmation the same way and remembers the questions."""

    def __init__(self, action: Literal["accept", "decline", "cancel"], confirm: bool = True) -> None:
        self.action = action
        self.confirm = confirm
        self.questions: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        content = {"confirm": self.confirm} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)


@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_shows_annotations_and_both_schemas(make_server: MakeServer, mode: Mode) -> None:
    server = make_server()
    async with Client(server.mcp, mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert client.instructions == DemoModule.instructions
        assert client.server_info is not None
        assert client.server_info.name == "mcpfleet-demo"
    assert list(tools) == ALL_TOOLS

    scale = tools["scale"]
    assert scale.title == "Scale"
    assert scale.description == "Scale a demo deployment."
    annotations = scale.annotations
    assert annotations is not None
    assert (annotations.read_only_hint, annotations.destructive_hint, annotations.idempotent_hint) == (
        False,
        False,
        True,
    )
    assert annotations.open_world_hint is True
    delete = tools["delete_item"].annotations
    assert delete is not None
    assert delete.destructive_hint is True
    listing = tools["list_items"].annotations
    assert listing is not None
    assert listing.read_only_hint is True
    assert tools["list_items"].title == "List items"

    for name, tool in tools.items():
        bare = Tool.from_function(server.module.toolset()[name].fn)
        assert tool.input_schema == bare.parameters, name
        assert tool.output_schema == bare.output_schema, name
        assert tool.output_schema is not None
        assert CONFIRMATION_PARAM not in tool.input_schema.get("properties", {})
    assert scale.input_schema["properties"]["replicas"] == {
        "description": "Desired replicas.",
        "maximum": 50,
        "minimum": 0,
        "title": "Replicas",
        "type": "integer",
    }
    assert scale.input_schema["required"] == ["name", "replicas"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"read_only": True}, ["list_items", "connection", "slow", "backend_down", "leaky_failure", "crash", "dump"]),
        ({"no_destructive": True}, [name for name in ALL_TOOLS if name != "delete_item"]),
        ({"tools_allow": "list_*,scale"}, ["list_items", "scale"]),
        ({"tools_deny": "*e*"}, ["slow", "crash", "dump"]),
        (
            {"no_destructive": True, "tools_deny": "*_*,annotate"},
            ["scale", "restart", "connection", "slow", "crash", "dump"],
        ),
        ({"tools_allow": "demo:s*", "tools_deny": "slow", "tool_prefix": "demo"}, ["scale"]),
    ],
)
async def test_policy_modes_expose_exactly_the_right_tools(
    make_server: MakeServer, overrides: dict[str, Any], expected: list[str]
) -> None:
    server = make_server(**overrides)
    async with Client(server.mcp) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert names == expected
        if "delete_item" not in expected:
            hidden = await client.call_tool("delete_item", {"name": "x"})
            assert hidden.is_error
            assert "Unknown tool" in _text(hidden)
    assert server.module.deleted == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("arguments", "field", "says"),
    [
        ({"name": "web", "replicas": 99}, "replicas", "less than or equal to 50"),
        ({"name": "web", "replicas": "many"}, "replicas", "valid integer"),
        ({"name": "Web_1", "replicas": 1}, "name", "should match pattern"),
        ({"replicas": 1}, "name", "Field required"),
    ],
)
async def test_bad_arguments_are_invalid_params_naming_the_field(
    make_server: MakeServer, mode: Mode, arguments: dict[str, Any], field: str, says: str
) -> None:
    server = make_server()
    async with Client(server.mcp, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("scale", arguments)
    error = caught.value
    assert error.code == INVALID_PARAMS
    assert field in error.message
    assert says in error.message
    assert error.data["field"] == field
    assert error.data["errors"][0]["field"] == field
    assert 'outcome="invalid",risk="MEDIUM",tool="scale"' in server.metrics.render().decode()


@pytest.mark.parametrize("mode", MODES)
async def test_invalid_argument_from_the_tool_is_invalid_params(make_server: MakeServer, mode: Mode) -> None:
    server = make_server()
    async with Client(server.mcp, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("scale", {"name": "frozen", "replicas": 1})
        assert caught.value.code == INVALID_PARAMS
        assert caught.value.data == {"field": "name", "hint": "pick another"}
        assert "cannot be scaled" in caught.value.message

        first = await client.call_tool("list_items", {"limit": 5})
        token = (first.structured_content or {})["continue_token"]
        with pytest.raises(MCPError) as stale:
            await client.call_tool("list_items", {"limit": 5, "prefix": "item-01", "continue_token": token})
        assert stale.value.code == INVALID_PARAMS
        assert stale.value.data["field"] == "continue_token"


async def test_pages_continue_through_tokens(make_server: MakeServer) -> None:
    server = make_server(max_items=20)
    names: list[str] = []
    async with Client(server.mcp) as client:
        token = None
        while True:
            arguments: dict[str, Any] = {"limit": 30}
            if token:
                arguments["continue_token"] = token
            page = (await client.call_tool("list_items", arguments)).structured_content or {}
            names += [item["name"] for item in page["items"]]
            token = page["continue_token"]
            if not page["truncated"]:
                break
    assert len(names) == 50
    assert len(set(names)) == 50


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_is_a_clear_error(make_server: MakeServer, mode: Mode) -> None:
    server = make_server(call_timeout_seconds=0.2)
    async with Client(server.mcp, mode=mode) as client:
        result = await client.call_tool("slow", {})
    assert result.is_error
    assert "did not finish within 0.2 s (MCP_CALL_TIMEOUT_SECONDS)" in _text(result)
    assert 'kind="timeout",tool="slow"' in server.metrics.render().decode()


@pytest.mark.parametrize("mode", MODES)
async def test_backend_unavailable_names_the_backend(make_server: MakeServer, mode: Mode) -> None:
    server = make_server()
    async with Client(server.mcp, mode=mode) as client:
        result = await client.call_tool("backend_down", {})
    assert result.is_error
    assert "Demo API at http://demo.invalid is unavailable: connection refused" in _text(result)
    assert 'kind="backend_unavailable"' in server.metrics.render().decode()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("action", "confirm", "verb"),
    [("decline", True, "declined"), ("cancel", True, "cancelled"), ("accept", False, "declined")],
)
async def test_high_risk_call_not_confirmed_does_nothing(
    make_server: MakeServer, mode: Mode, action: Literal["decline", "cancel", "accept"], confirm: bool, verb: str
) -> None:
    module = DemoModule()
    server = make_server(module)
    answers = Answers(action, confirm)
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        result = await client.call_tool("delete_item", {"name": "web-1"})
    assert result.is_error
    assert f"The user {verb} the confirmation: delete_item was not run and nothing changed." in _text(result)
    assert module.deleted == []
    assert len(answers.questions) == 1
    assert "delete_item" in answers.questions[0]
    assert "web-1" in answers.questions[0]
    assert 'reason="declined",tool="delete_item"' in server.metrics.render().decode()


@pytest.mark.parametrize("mode", MODES)
async def test_high_risk_call_confirmed_runs(make_server: MakeServer, mode: Mode) -> None:
    module = DemoModule()
    server = make_server(module)
    answers = Answers("accept")
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        result = await client.call_tool("delete_item", {"name": "web-1"})
        restart = await client.call_tool("restart", {"name": "api"})
        scale = await client.call_tool("scale", {"name": "web", "replicas": 2})  # MEDIUM: never asked
    assert not result.is_error
    assert result.structured_content == {"deleted": "web-1"}
    assert not restart.is_error
    assert not scale.is_error
    assert module.deleted == ["web-1"]
    assert module.restarted == ["api"]
    assert len(answers.questions) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_policy_refuses_is_refused_before_anyone_is_asked(make_server: MakeServer, mode: Mode) -> None:
    module = DemoModule()
    server = make_server(module)
    answers = Answers("accept")
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        refused = await client.call_tool("delete_item", {"name": "protected-db"})
        with pytest.raises(MCPError) as invalid:
            await client.call_tool("delete_item", {"name": ""})
    assert refused.is_error
    assert "protected-db is protected: nothing may delete it" in _text(refused)
    assert invalid.value.error.code == INVALID_PARAMS
    assert invalid.value.error.data["field"] == "name"
    assert answers.questions == []
    assert module.deleted == []
    assert 'reason="policy",tool="delete_item"' in server.metrics.render().decode()


@pytest.mark.parametrize("mode", MODES)
async def test_client_without_elicitation_is_refused(make_server: MakeServer, mode: Mode) -> None:
    module = DemoModule()
    server = make_server(module)
    async with Client(server.mcp, mode=mode) as client:
        result = await client.call_tool("delete_item", {"name": "web-1"})
    assert result.is_error
    text = _text(result)
    assert "needs the user's confirmation, but this client cannot show one" in text
    assert "MCP_ALLOW_UNCONFIRMED" in text
    assert module.deleted == []
    assert 'reason="unconfirmable",tool="delete_item"' in server.metrics.render().decode()


@pytest.mark.parametrize("mode", MODES)
async def test_client_without_elicitation_runs_when_unconfirmed_calls_are_allowed(
    make_server: MakeServer, mode: Mode
) -> None:
    module = DemoModule()
    server = make_server(module, allow_unconfirmed=True)
    async with Client(server.mcp, mode=mode) as client:
        result = await client.call_tool("delete_item", {"name": "web-1"})
    assert not result.is_error
    assert module.deleted == ["web-1"]


@pytest.mark.parametrize("mode", MODES)
async def test_confirmation_beside_the_tools_own_context_and_resolver(make_server: MakeServer, mode: Mode) -> None:
    server = make_server()
    answers = Answers("accept")
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        (tool,) = [t for t in (await client.list_tools()).tools if t.name == "annotate"]
        assert list(tool.input_schema["properties"]) == ["note"]
        result = await client.call_tool("annotate", {"note": "hello"})
        protocol = client.protocol_version
    assert not result.is_error, result.content
    assert result.structured_content == {"note": "hello", "protocol": protocol, "caller_protocol": protocol}
    assert len(answers.questions) == 1
    assert '{"note": "hello"}' in answers.questions[0]


async def test_confirmation_can_be_switched_off(make_server: MakeServer) -> None:
    module = DemoModule()
    server = make_server(module, require_confirmation=False)
    answers = Answers("decline")
    async with Client(server.mcp, elicitation_callback=answers) as client:
        result = await client.call_tool("delete_item", {"name": "web-1"})
    assert not result.is_error
    assert module.deleted == ["web-1"]
    assert answers.questions == []


@pytest.mark.parametrize("mode", MODES)
async def test_secrets_in_results_are_redacted(make_server: MakeServer, mode: Mode) -> None:
    server = make_server()
    async with Client(server.mcp, mode=mode) as client:
        result = await client.call_tool("connection", {})
    assert not result.is_error
    assert result.structured_content == {
        "host": "db.demo",
        "user": "app",
        "password": "[REDACTED]",
        "note": "dsn postgres://app:[REDACTED]@db.demo/app",
    }
    assert SECRET not in _text(result)


@pytest.mark.parametrize("mode", MODES)
async def test_secrets_in_error_messages_are_redacted(make_server: MakeServer, mode: Mode) -> None:
    server = make_server()
    async with Client(server.mcp, mode=mode) as client:
        result = await client.call_tool("leaky_failure", {})
    assert result.is_error
    assert "login failed for password=[REDACTED]" in _text(result)
    assert SECRET not in _text(result)


async def test_unexpected_errors_are_generic_with_a_correlation_id_in_the_log(
    make_server: MakeServer, server_log: io.StringIO
) -> None:
    server = make_server()
    async with Client(server.mcp) as client:
        result = await client.call_tool("crash", {})
    assert result.is_error
    text = _text(result)
    assert "crash failed with an internal error (correlation id " in text
    assert "boom" not in text
    correlation = text.split("correlation id ")[1][:12]
    log = server_log.getvalue()
    assert f"correlation id {correlation}" in log
    assert "RuntimeError: boom with token=[REDACTED]" in log
    assert SECRET not in log
    assert 'kind="internal",tool="crash"' in server.metrics.render().decode()


async def test_log_records_of_tools_are_redacted(make_server: MakeServer, server_log: io.StringIO) -> None:
    server = make_server()
    async with Client(server.mcp) as client:
        await client.call_tool("connection", {})
        await client.call_tool("leaky_failure", {})
    log = server_log.getvalue()
    assert "connecting with password=[REDACTED]" in log
    assert "login failed for password=[REDACTED]" in log  # the SDK's own "Tool failed" line
    assert SECRET not in log


@pytest.mark.parametrize("mode", MODES)
async def test_over_budget_result_is_refused_with_advice(make_server: MakeServer, mode: Mode) -> None:
    server = make_server(max_output_bytes=1024)
    async with Client(server.mcp, mode=mode) as client:
        fits = await client.call_tool("dump", {"lines": 5})
        too_big = await client.call_tool("dump", {"lines": 100})
        # a paged tool stays under the same budget on its own
        page = await client.call_tool("list_items", {"limit": 200})
    assert not fits.is_error
    assert too_big.is_error
    text = _text(too_big)
    assert "more than this server returns at once (1024 bytes, MCP_MAX_OUTPUT_BYTES)" in text
    assert "Narrow the query" in text
    assert too_big.structured_content is None
    assert not page.is_error
    assert (page.structured_content or {})["truncated"] is True
    assert 'reason="output_budget",tool="dump"' in server.metrics.render().decode()


async def test_metrics_count_calls_outcomes_and_latency(make_server: MakeServer) -> None:
    server = make_server()
    async with Client(server.mcp) as client:
        await client.call_tool("list_items", {})
        await client.call_tool("list_items", {"prefix": "item-00"})
        await client.call_tool("backend_down", {})
    text = server.metrics.render().decode()
    assert 'mcpfleet_tool_calls_total{outcome="ok",risk="SAFE",tool="list_items"} 2.0' in text
    assert 'mcpfleet_tool_calls_total{outcome="error",risk="SAFE",tool="backend_down"} 1.0' in text
    assert 'mcpfleet_tool_call_duration_seconds_count{tool="list_items"} 2.0' in text
    assert "mcpfleet_tools 11.0" in text
