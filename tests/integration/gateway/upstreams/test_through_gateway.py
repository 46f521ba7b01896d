"""End to end: real MCP clients over each client transport (streamable HTTP in both protocol eras, legacy SSE,
stdio) reach real upstream servers over each upstream transport (streamable HTTP stateless and session-based,
SSE, WebSocket, stdio subprocess, in-process) through one gateway, with prefixed names."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from mcpfleet_contracts.catalog import Catalog, CatalogServer, CatalogTool
from mcpfleet_contracts.mcpserver import Risk, Transport
from tests.integration.gateway.harness import (
    ROOT,
    base_url,
    config_document,
    gateway_at,
    headers,
    mcp_client,
    token,
    write_config,
)
from tests.integration.gateway.upstreams.conftest import APP_TARGET, Apps, app_command

pytestmark = pytest.mark.integration

ADMIN = token("ada", ("admin",))
UPSTREAMS = ("httpjson", "httpsession", "sse", "ws", "stdio", "inproc")


def _upstreams(apps: Apps) -> dict[str, Any]:
    command = app_command("--transport", "stdio")
    return {
        "httpjson": {"transport": "streamable-http", "url": apps.http_json.url},
        "httpsession": {
            "transport": "streamable-http",
            "url": apps.http_session.url,
            "auth": {"headers": {"X-Upstream-Key": "upstream-only"}},
        },
        "sse": {"transport": "sse", "url": apps.sse.url},
        "ws": {"transport": "websocket", "url": apps.websocket.url},
        "stdio": {"transport": "stdio", "command": command[0], "args": command[1:], "cwd": str(ROOT)},
        "inproc": {"transport": "in-process", "target": APP_TARGET},
    }


@pytest.fixture
def config(apps: Apps, tmp_path: Path) -> Path:
    # Echo is a read: cache it for a minute, so the test can also see a SAFE answer served twice.
    document = config_document(
        tmp_path, upstreams=_upstreams(apps), tools={"*:echo": {"risk": "SAFE", "cache_ttl_seconds": 60}}
    )
    return write_config(tmp_path / "gateway.json", document)


async def _exercise(client: Client | ClientSession) -> None:
    names = {tool.name for tool in (await client.list_tools()).tools}
    for upstream in UPSTREAMS:
        assert f"{upstream}:echo" in names, (upstream, sorted(names))
        result = await client.call_tool(f"{upstream}:echo", {"text": f"hello {upstream}"})
        assert not result.is_error, (upstream, result.content)
        assert result.content[0].text == f"hello {upstream}"  # type: ignore[union-attr]
        total = await client.call_tool(f"{upstream}:add", {"a": 2, "b": 3})
        assert total.structured_content == {"sum": 5}, upstream


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_streamable_http_clients_reach_every_upstream_transport(config: Path, mode: str) -> None:
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN, mode=mode) as client:
        await _exercise(client)


async def test_legacy_sse_client(config: Path) -> None:
    async with (
        gateway_at(config) as runner,
        sse_client(f"{base_url(runner)}/sse", headers=headers(ADMIN)) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await _exercise(session)


@pytest.fixture
def stdio_config(config: Path) -> Path:
    """The same config, with the stdio client as an admin (it has no credentials to show)."""
    document = json.loads(config.read_text())
    document["stdio"] = {"subject": "local-dev", "roles": ["admin"]}
    return write_config(config, document)


def _subjects(directory: Path) -> set[str]:
    return {
        json.loads(line)["subject"]
        for path in directory.glob("audit-*.jsonl")
        for line in path.read_text().splitlines()
    }


async def test_stdio_client(stdio_config: Path, tmp_path: Path) -> None:
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcpfleet_cli.main", "gateway", "--stdio", "--config", str(stdio_config)],
        cwd=str(ROOT),
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    async with Client(parameters) as client:
        await _exercise(client)
    assert "local-dev" in await asyncio.to_thread(_subjects, tmp_path)


async def test_client_credentials_never_reach_upstreams(config: Path) -> None:
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN) as client:
        for upstream in ("httpjson", "httpsession", "sse"):
            result = await client.call_tool(f"{upstream}:headers", {})
            seen = result.structured_content["headers"]
            assert ADMIN not in json.dumps(seen), upstream
            assert "authorization" not in seen, upstream
        configured = await client.call_tool("httpsession:headers", {})
        assert configured.structured_content["headers"]["x-upstream-key"] == "upstream-only"


async def test_tool_errors_and_upstream_rpc_errors_come_through(config: Path) -> None:
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN) as client:
        failed = await client.call_tool("httpjson:fail", {"message": "disk full"})
        assert failed.is_error
        assert failed.content[0].text == "disk full"  # type: ignore[union-attr]
        with pytest.raises(MCPError) as refused:  # the schema requires b: refused before forwarding
            await client.call_tool("httpjson:add", {"a": 1})
        assert refused.value.error.code == -32602
        assert "b" in refused.value.error.message
    async with gateway_at(config) as runner, httpx2.AsyncClient(base_url=base_url(runner)) as http:
        response = await http.post(
            "/api/v1/tools/httpjson:add/call", headers=headers(ADMIN), json={"arguments": {"a": 1}}
        )
        assert response.status_code == 400
        assert response.json()["error"]["data"]["field"] == "b"


async def test_a_safe_answer_is_cached_for_its_ttl(config: Path) -> None:
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN) as client:
        first = await client.call_tool("httpjson:echo", {"text": "same"})
        second = await client.call_tool("httpjson:echo", {"text": "same"})
        assert first.content == second.content
        async with httpx2.AsyncClient() as http:
            metrics = (await http.get(f"{base_url(runner)}/metrics")).text
        assert 'mcpfleet_gateway_cache_lookups_total{result="hit"} 1.0' in metrics
        assert 'outcome="cached",server="httpjson",tool="httpjson:echo"' in metrics


def _catalog(revision: int, endpoint: str, tools: list[str]) -> str:
    entries = [
        CatalogTool(
            name=f"cat:{tool}",
            upstream_name=tool,
            description=f"{tool} from the catalog",
            input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
            risk=Risk.SAFE,
            timeout_seconds=10,
            permissions=("cat:get",),
        )
        for tool in tools
    ]
    server = CatalogServer(
        name="team-a/echo", prefix="cat", endpoint=endpoint, transport=Transport.STREAMABLE_HTTP, tools=tuple(entries)
    )
    return Catalog(revision=revision, generated_at=datetime.datetime.now(datetime.UTC), servers=(server,)).dump()


async def test_the_catalog_is_served_and_followed_without_restart(apps: Apps, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(_catalog(1, apps.http_json.url, ["echo"]))
    document = config_document(tmp_path, upstreams={}, catalog={"path": str(catalog), "poll_seconds": 0.2})
    config = write_config(tmp_path / "gateway.json", document)
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    viewer = token("vera", ("viewer",))
    async with (
        gateway_at(config) as runner,
        mcp_client(f"{base_url(runner)}/mcp", viewer, mode="legacy", message_handler=on_message) as client,
    ):
        assert [t.name for t in (await client.list_tools()).tools] == ["cat:echo"]
        result = await client.call_tool("cat:echo", {"text": "from the catalog"})
        assert result.content[0].text == "from the catalog"  # type: ignore[union-attr]

        await asyncio.to_thread(catalog.write_text, _catalog(2, apps.http_json.url, ["echo", "pid"]))
        await asyncio.wait_for(changed.wait(), timeout=10)
        names = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
        assert names == {"cat:echo", "cat:pid"}
        assert runner.gateway.catalog is not None
        assert runner.gateway.catalog.revision == 2

        await asyncio.to_thread(catalog.write_text, '{"revision": "not a catalog"')
        async with httpx2.AsyncClient(base_url=base_url(runner)) as http:
            for _ in range(50):
                ready = (await http.get("/ready")).json()
                if ready["problems"]:
                    break
                await asyncio.sleep(0.1)
        assert any("catalog" in problem for problem in ready["problems"])
        # The last good catalog keeps serving.
        result = await client.call_tool("cat:echo", {"text": "still here"})
        assert result.content[0].text == "still here"  # type: ignore[union-attr]


async def test_a_reload_does_not_drop_calls_in_flight(config: Path) -> None:
    """A call running on an upstream that a reload removes still gets its answer; new calls see the new table."""
    admin_set = {"Authorization": f"Bearer {ADMIN}"}
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN) as client:
        running = asyncio.create_task(client.call_tool("httpjson:slow", {"seconds": 1.5}))
        await asyncio.sleep(0.3)
        document = json.loads(await asyncio.to_thread(config.read_text))
        del document["upstreams"]["httpjson"]
        async with httpx2.AsyncClient(base_url=base_url(runner), timeout=30) as http:
            reloaded = await http.post(
                "/api/v1/tools/gateway:set-mcp-config/call",
                headers=admin_set,
                json={"arguments": {"config-content": json.dumps(document)}},
            )
        assert reloaded.status_code == 200
        assert "httpjson:slow" not in runner.gateway.table.tools
        answer = await running
        assert not answer.is_error
        assert answer.content[0].text == "slept 1.5"  # type: ignore[union-attr]
        with pytest.raises(MCPError):
            await client.call_tool("httpjson:echo", {"text": "gone"})
