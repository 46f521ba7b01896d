"""Confirmations through the gateway: a real fleet server (MEDIUM calls confirmed, over streamable HTTP) behind a
real gateway, called by real MCP clients of both protocol eras, with and without elicitation."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_gateway.audit import read_lines, verify
from mcpfleet_gateway.errors import FORBIDDEN
from mcpfleet_servers.base.app import FleetServer, build_server
from mcpfleet_servers.base.run import running
from mcpfleet_servers.base.settings import ServerSettings
from tests.integration.gateway.harness import base_url, config_document, gateway_at, headers, mcp_client, token
from tests.integration.gateway.harness import write_config as write_gateway_config
from tests.integration.servers.confirm_demo import AssetModule

pytestmark = pytest.mark.integration

Mode = Literal["auto", "legacy"]
MODES: list[Mode] = ["auto", "legacy"]
TOOL = "assets:update_asset_status"
ARGUMENTS = {"name": "db-1", "status": "draining", "environment": "staging"}
OPERATOR = token("otto", ("operator",))
VIEWER = token("vera", ("viewer",))
DECLINED = "The user declined the confirmation: update_asset_status was not run and nothing changed."
UNCONFIRMABLE = "needs the user's confirmation, but this client cannot show one"


class Answers:
    """An elicitation callback that answers every question the same way and remembers the questions."""

    def __init__(self, action: Literal["accept", "decline"] = "accept") -> None:
        self.action = action
        self.questions: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        content = {"confirm": True} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith(("MCP_", "POD_", "MCPFLEET_SERVER_NAME")):
            monkeypatch.delenv(name)
    return monkeypatch


@contextlib.asynccontextmanager
async def asset_server(**settings: Any) -> AsyncIterator[tuple[FleetServer, str]]:
    """The asset server, confirming MEDIUM calls, on a loopback port: (server, its MCP URL).

    Entered in the test's own task: the server's task group must be left where it was entered.
    """
    server = build_server(AssetModule(Risk.MEDIUM), ServerSettings.load(port=0, **settings))
    async with running(server) as runner:
        yield server, f"http://127.0.0.1:{runner.port}/mcp"


@contextlib.asynccontextmanager
async def client_of(config: Path, bearer: str, **options: Any) -> AsyncIterator[Client]:
    """A real gateway on ``config`` and an MCP client of it with ``bearer``'s credentials."""
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", bearer, **options) as client:
        yield client


def _config(directory: Path, upstream_url: str, **sections: Any) -> Path:
    upstreams = {"assets": {"transport": "streamable-http", "url": upstream_url}}
    return write_gateway_config(directory / "gateway.json", config_document(directory, upstreams=upstreams, **sections))


def _changed(server: FleetServer) -> list[str]:
    module = server.module
    assert isinstance(module, AssetModule)
    return [asset.status for asset in module.changed]


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def _records(directory: Path, tool: str = TOOL) -> list[dict[str, Any]]:
    trail = directory / "audit-gw-test.jsonl"
    assert verify(read_lines(trail)).ok
    return [record for line in read_lines(trail) if (record := json.loads(line))["tool"] == tool]


@pytest.mark.parametrize("mode", MODES)
async def test_a_confirmed_call_runs_upstream_once_and_is_audited_once(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, mode: Mode
) -> None:
    async with asset_server() as (server, url):
        answers = Answers("accept")
        async with gateway_at(_config(tmp_path, url)) as runner:
            gateway = f"{base_url(runner)}/mcp"
            async with mcp_client(gateway, OPERATOR, mode=mode, elicitation_callback=answers) as client:
                result = await client.call_tool(TOOL, ARGUMENTS)
                assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
            async with httpx2.AsyncClient(base_url=base_url(runner)) as http:
                metrics = (await http.get("/metrics")).text
        assert not result.is_error, _text(result)
        assert result.structured_content == {"name": "db-1", "status": "draining", "environment": "staging"}
        assert _changed(server) == ["draining"]
        assert len(answers.questions) == 1
        assert answers.questions[0].startswith("Confirm the MEDIUM-risk call update_asset_status")
        [record] = _records(tmp_path)
        assert (record["subject"], record["decision"], record["status"]) == ("otto", "allowed", "ok")
        assert "after the user's input" in record["reason"]
        relayed = "passed-through" if mode == "auto" else "relayed"
        assert f'mcpfleet_gateway_input_requests_total{{outcome="{relayed}",server="assets"}} 1.0' in metrics
        assert f'mcpfleet_gateway_tool_calls_total{{outcome="ok",server="assets",tool="{TOOL}"}} 1.0' in metrics


@pytest.mark.parametrize("mode", MODES)
async def test_a_declined_call_changes_nothing_and_shows_the_servers_answer(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, mode: Mode
) -> None:
    async with asset_server() as (server, url):
        answers = Answers("decline")
        async with client_of(_config(tmp_path, url), OPERATOR, mode=mode, elicitation_callback=answers) as client:
            result = await client.call_tool(TOOL, ARGUMENTS)
        assert result.is_error
        assert DECLINED in _text(result)
        assert _changed(server) == []
        assert len(answers.questions) == 1
        [record] = _records(tmp_path)
        assert (record["decision"], record["status"]) == ("allowed", "tool-error")


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_elicitation_gets_a_clear_refusal(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, mode: Mode
) -> None:
    async with asset_server() as (server, url):
        async with client_of(_config(tmp_path, url), OPERATOR, mode=mode) as client:
            result = await client.call_tool(TOOL, ARGUMENTS)
        assert result.is_error
        assert UNCONFIRMABLE in _text(result)
        assert "MCP_ALLOW_UNCONFIRMED" in _text(result)
        assert _changed(server) == []


@pytest.mark.parametrize("mode", MODES)
async def test_rbac_denial_wins_before_any_confirmation(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, mode: Mode
) -> None:
    async with asset_server() as (server, url):
        answers = Answers("accept")
        async with client_of(_config(tmp_path, url), VIEWER, mode=mode, elicitation_callback=answers) as client:
            with pytest.raises(MCPError) as denied:
                await client.call_tool(TOOL, ARGUMENTS)
        assert denied.value.error.code == FORBIDDEN
        assert answers.questions == []
        assert _changed(server) == []
        [record] = _records(tmp_path)
        assert (record["subject"], record["decision"]) == ("vera", "denied")


async def test_the_retry_carrying_the_answers_takes_no_second_rate_limit_token(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with asset_server() as (server, url):
        answers = Answers("accept")
        config = _config(tmp_path, url, rate_limits={"user_tool_limits": {TOOL: "1/hour"}})
        async with client_of(config, OPERATOR, elicitation_callback=answers) as client:
            first = await client.call_tool(TOOL, ARGUMENTS)
            with pytest.raises(MCPError) as limited:
                await client.call_tool(TOOL, ARGUMENTS)
        assert not first.is_error, _text(first)
        assert limited.value.error.code == -32029
        assert _changed(server) == ["draining"]
        assert len(answers.questions) == 1


async def test_a_forged_request_state_does_not_skip_the_rate_limit(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with asset_server() as (server, url):
        config = _config(tmp_path, url, rate_limits={"user_tool_limits": {TOOL: "1/hour"}})
        async with client_of(config, OPERATOR, elicitation_callback=Answers()) as client:
            await client.call_tool(TOOL, ARGUMENTS)
            with pytest.raises(MCPError) as limited:
                await client.call_tool(TOOL, ARGUMENTS, request_state="mcpfleet1.9999999999.forged.sstate")
        assert limited.value.error.code == -32029
        assert _changed(server) == ["draining"]


async def test_the_rest_facade_cannot_confirm_and_says_what_to_do(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with asset_server() as (server, url):
        async with (
            gateway_at(_config(tmp_path, url)) as runner,
            httpx2.AsyncClient(base_url=base_url(runner), timeout=10) as http,
        ):
            called = await http.post(
                f"/api/v1/tools/{TOOL}/call", json={"arguments": ARGUMENTS}, headers=headers(OPERATOR)
            )
        # The gateway claims no elicitation for a REST caller, so the server itself refuses (and would run the call
        # under MCP_ALLOW_UNCONFIRMED).
        assert called.status_code == 200
        body = called.json()
        assert body["isError"] is True
        assert "MCP_ALLOW_UNCONFIRMED" in body["content"][0]["text"]
        assert _changed(server) == []


async def test_with_allow_unconfirmed_the_rest_facade_runs_the_call(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with asset_server(allow_unconfirmed=True) as (server, url):
        config = _config(tmp_path, url)
        async with (
            gateway_at(config) as runner,
            httpx2.AsyncClient(base_url=base_url(runner), timeout=10) as http,
        ):
            called = await http.post(
                f"/api/v1/tools/{TOOL}/call", json={"arguments": ARGUMENTS}, headers=headers(OPERATOR)
            )
    assert called.status_code == 200
    assert called.json().get("isError") in (None, False), called.text
    assert _changed(server) == ["draining"]
