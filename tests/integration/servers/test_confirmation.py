"""Which calls ask the user first: the module's threshold, MCP_CONFIRM_FROM, a tool's own trait and a per-call
risk hook, through real in-process MCP client sessions (both protocol eras)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.app import CONFIRMATION_PARAM, RISK_PARAM, FleetServer, build_server
from mcpfleet_servers.base.settings import ServerSettings
from tests.integration.servers.confirm_demo import AssetModule

pytestmark = pytest.mark.integration

Mode = Literal["auto", "legacy"]
MODES: list[Mode] = ["auto", "legacy"]
MakeAssets = Callable[..., FleetServer]


class Answers:
    """An elicitation callback that answers every question the same way and remembers the questions."""

    def __init__(self, action: Literal["accept", "decline", "cancel"] = "accept") -> None:
        self.action = action
        self.questions: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        content = {"confirm": True} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)


@pytest.fixture
def make_assets(server_env: pytest.MonkeyPatch) -> MakeAssets:
    """A FleetServer around an AssetModule with the given threshold, settings overridden by keyword."""

    def make(module_threshold: Risk | None = None, **overrides: Any) -> FleetServer:
        return build_server(AssetModule(module_threshold), ServerSettings.load(**overrides))

    return make


def _module(server: FleetServer) -> AssetModule:
    assert isinstance(server.module, AssetModule)
    return server.module


def _text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


@pytest.mark.parametrize("mode", MODES)
async def test_medium_call_is_confirmed_when_the_module_threshold_is_medium(
    make_assets: MakeAssets, mode: Mode
) -> None:
    server = make_assets(Risk.MEDIUM)
    answers = Answers("accept")
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        renamed = await client.call_tool("rename_asset", {"name": "db-1", "new_name": "db-2"})
        read = await client.call_tool("get_asset", {"name": "db-1"})
        retired = await client.call_tool("retire_asset", {"name": "db-3"})
    assert not renamed.is_error, renamed.content
    assert renamed.structured_content == {"name": "db-2", "status": "active", "environment": "staging"}
    assert not read.is_error
    assert not retired.is_error
    assert [asset.name for asset in _module(server).changed] == ["db-2"]
    assert _module(server).retired == ["db-3"]
    assert len(answers.questions) == 2  # the MEDIUM and the HIGH call, not the SAFE read
    assert answers.questions[0].startswith("Confirm the MEDIUM-risk call rename_asset (Rename asset) with ")
    assert '{"name": "db-1", "new_name": "db-2"}' in answers.questions[0]
    assert answers.questions[1].startswith("Confirm the HIGH-risk call retire_asset")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("action", "verb"), [("decline", "declined"), ("cancel", "cancelled")])
async def test_declined_medium_call_does_nothing(
    make_assets: MakeAssets, mode: Mode, action: Literal["decline", "cancel"], verb: str
) -> None:
    server = make_assets(Risk.MEDIUM)
    answers = Answers(action)
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        result = await client.call_tool("rename_asset", {"name": "db-1", "new_name": "db-2"})
    assert result.is_error
    assert f"The user {verb} the confirmation: rename_asset was not run and nothing changed." in _text(result)
    assert _module(server).changed == []
    assert len(answers.questions) == 1
    assert 'reason="declined",tool="rename_asset"' in server.metrics.render().decode()


@pytest.mark.parametrize("mode", MODES)
async def test_medium_call_is_not_confirmed_under_the_default_high_threshold(
    make_assets: MakeAssets, mode: Mode
) -> None:
    server = make_assets()
    answers = Answers("decline")
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        renamed = await client.call_tool("rename_asset", {"name": "db-1", "new_name": "db-2"})
        retired = await client.call_tool("retire_asset", {"name": "db-3"})
    assert not renamed.is_error
    assert [asset.name for asset in _module(server).changed] == ["db-2"]
    assert retired.is_error  # HIGH is still asked, and declined here
    assert _module(server).retired == []
    assert len(answers.questions) == 1
    assert answers.questions[0].startswith("Confirm the HIGH-risk call retire_asset")


@pytest.mark.parametrize(
    ("module_threshold", "setting", "tool", "arguments", "asked"),
    [
        (Risk.MEDIUM, "HIGH", "rename_asset", {"name": "a", "new_name": "b"}, False),
        (None, "MEDIUM", "rename_asset", {"name": "a", "new_name": "b"}, True),
        (Risk.HIGH, "safe", "get_asset", {"name": "a"}, True),
        (Risk.MEDIUM, "", "rename_asset", {"name": "a", "new_name": "b"}, True),  # empty: the module's
    ],
)
async def test_mcp_confirm_from_overrides_the_module_threshold(
    make_assets: MakeAssets,
    server_env: pytest.MonkeyPatch,
    module_threshold: Risk | None,
    setting: str,
    tool: str,
    arguments: dict[str, Any],
    asked: bool,
) -> None:
    server_env.setenv("MCP_CONFIRM_FROM", setting)
    server = make_assets(module_threshold)
    answers = Answers("accept")
    async with Client(server.mcp, elicitation_callback=answers) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert len(answers.questions) == (1 if asked else 0)


async def test_confirm_from_follows_a_reload(make_assets: MakeAssets) -> None:
    server = make_assets()
    answers = Answers("decline")
    async with Client(server.mcp, elicitation_callback=answers) as client:
        before = await client.call_tool("rename_asset", {"name": "a", "new_name": "b"})
        await server.reconfigure(ServerSettings.load(confirm_from=Risk.MEDIUM))
        after = await client.call_tool("rename_asset", {"name": "b", "new_name": "c"})
    assert not before.is_error
    assert after.is_error
    assert [asset.name for asset in _module(server).changed] == ["b"]
    assert len(answers.questions) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_require_confirmation_false_turns_every_confirmation_off(make_assets: MakeAssets, mode: Mode) -> None:
    server = make_assets(Risk.MEDIUM, require_confirmation=False, confirm_from=Risk.SAFE)
    answers = Answers("decline")
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        results = [
            await client.call_tool("rename_asset", {"name": "a", "new_name": "b"}),
            await client.call_tool("update_asset_status", {"name": "a", "status": "down", "environment": "production"}),
            await client.call_tool("note_asset", {"note": "hello"}),
            await client.call_tool("retire_asset", {"name": "a"}),
        ]
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert [result.is_error for result in results] == [False] * 4
    assert answers.questions == []
    assert _module(server).retired == ["a"]
    assert _module(server).noted == ["hello"]
    assert CONFIRMATION_PARAM not in listed["rename_asset"].input_schema["properties"]


@pytest.mark.parametrize("mode", MODES)
async def test_risk_hook_raises_the_call_to_high_for_production_only(
    make_assets: MakeAssets, mode: Mode, server_log: io.StringIO
) -> None:
    server = make_assets()  # HIGH threshold: only a raised call asks
    answers = Answers("accept")
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        staging = await client.call_tool("update_asset_status", {"name": "web", "status": "down"})
        development = await client.call_tool(
            "update_asset_status", {"name": "dev", "status": "down", "environment": "development"}
        )
        assert answers.questions == []
        production = await client.call_tool(
            "update_asset_status", {"name": "db", "status": "down", "environment": "production"}
        )
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert [result.is_error for result in (staging, development, production)] == [False] * 3
    assert [asset.name for asset in _module(server).changed] == ["web", "dev", "db"]
    (question,) = answers.questions
    assert question.startswith("Confirm the HIGH-risk call update_asset_status (Update asset status) with ")
    assert '"environment": "production"' in question
    assert "call of update_asset_status is HIGH risk (declared MEDIUM) for its arguments" in server_log.getvalue()
    # Metrics count each call at its own risk, so HIGH-risk activity is visible as such.
    metrics = server.metrics.render().decode()
    assert 'mcpfleet_tool_calls_total{outcome="ok",risk="MEDIUM",tool="update_asset_status"} 2.0' in metrics
    assert 'mcpfleet_tool_calls_total{outcome="ok",risk="HIGH",tool="update_asset_status"} 1.0' in metrics

    # The catalog sees the declared risk: the listing is the same for every call.
    tool = listed["update_asset_status"]
    assert tool.annotations is not None
    assert (tool.annotations.read_only_hint, tool.annotations.destructive_hint) == (False, False)
    assert list(tool.input_schema["properties"]) == ["name", "status", "environment"]
    assert RISK_PARAM not in tool.input_schema["properties"]


@pytest.mark.parametrize("mode", MODES)
async def test_declined_production_call_does_nothing(make_assets: MakeAssets, mode: Mode) -> None:
    server = make_assets()
    answers = Answers("decline")
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        result = await client.call_tool(
            "update_asset_status", {"name": "db", "status": "down", "environment": "production"}
        )
    assert result.is_error
    assert "declined the confirmation: update_asset_status was not run and nothing changed" in _text(result)
    assert _module(server).changed == []
    assert 'mcpfleet_tool_calls_total{outcome="refused",risk="HIGH",tool="update_asset_status"} 1.0' in (
        server.metrics.render().decode()
    )


async def test_a_risk_hook_never_lowers_the_declared_risk(make_assets: MakeAssets) -> None:
    server = make_assets(Risk.MEDIUM)
    answers = Answers("accept")
    async with Client(server.mcp, elicitation_callback=answers) as client:
        result = await client.call_tool(
            "update_asset_status", {"name": "dev", "status": "down", "environment": "development"}
        )
    assert not result.is_error
    (question,) = answers.questions  # the hook said SAFE: the call stays MEDIUM, which this server confirms
    assert question.startswith("Confirm the MEDIUM-risk call update_asset_status")


async def test_a_tools_own_confirm_trait_wins_over_the_threshold(make_assets: MakeAssets) -> None:
    answers = Answers("accept")
    medium = make_assets(Risk.MEDIUM)
    async with Client(medium.mcp, elicitation_callback=answers) as client:
        touched = await client.call_tool("touch_asset", {"name": "a"})  # confirm=False
    assert not touched.is_error
    assert answers.questions == []

    high = make_assets()
    async with Client(high.mcp, elicitation_callback=answers) as client:
        noted = await client.call_tool("note_asset", {"note": "hello"})  # SAFE, confirm=True
    assert not noted.is_error
    (question,) = answers.questions
    assert question.startswith("Confirm the SAFE-risk call note_asset")


@pytest.mark.parametrize("mode", MODES)
async def test_client_without_elicitation_is_refused_only_for_calls_that_need_confirmation(
    make_assets: MakeAssets, mode: Mode
) -> None:
    medium = make_assets(Risk.MEDIUM)
    async with Client(medium.mcp, mode=mode) as client:
        renamed = await client.call_tool("rename_asset", {"name": "a", "new_name": "b"})
        read = await client.call_tool("get_asset", {"name": "a"})
    assert renamed.is_error
    text = _text(renamed)
    assert "rename_asset is MEDIUM risk and needs the user's confirmation, but this client cannot show one" in text
    assert "MCP_ALLOW_UNCONFIRMED" in text
    assert not read.is_error
    assert _module(medium).changed == []
    assert 'reason="unconfirmable",tool="rename_asset"' in medium.metrics.render().decode()

    high = make_assets()
    async with Client(high.mcp, mode=mode) as client:
        staging = await client.call_tool("update_asset_status", {"name": "web", "status": "down"})
        production = await client.call_tool(
            "update_asset_status", {"name": "db", "status": "down", "environment": "production"}
        )
    assert not staging.is_error
    assert production.is_error
    assert "update_asset_status is HIGH risk and needs the user's confirmation" in _text(production)
    assert [asset.name for asset in _module(high).changed] == ["web"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("threshold", [Risk.MEDIUM, Risk.HIGH])
async def test_a_failing_risk_hook_ends_the_call_clearly(make_assets: MakeAssets, mode: Mode, threshold: Risk) -> None:
    server = make_assets(threshold)
    answers = Answers("accept")
    async with Client(server.mcp, mode=mode, elicitation_callback=answers) as client:
        failed = await client.call_tool("tag_asset", {"name": "unknown", "tag": "x"})
        tagged = await client.call_tool("tag_asset", {"name": "known", "tag": "x"})
    assert failed.is_error
    assert "Asset DB at http://assets.invalid is unavailable: connection refused" in _text(failed)
    assert not tagged.is_error
    assert [asset.name for asset in _module(server).changed] == ["known"]
    assert len(answers.questions) == (1 if threshold == Risk.MEDIUM else 0)  # only the call that got through
    assert 'kind="backend_unavailable",tool="tag_asset"' in server.metrics.render().decode()
