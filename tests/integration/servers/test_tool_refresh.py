"""The tool list changing while the server serves: connected clients are told, tools/list and calls follow.

Real sessions over loopback HTTP: a stateful streamable-HTTP session (handshake era, told on its GET stream),
a legacy SSE session, and a 2026-07-28 client listening through subscriptions/listen.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx2
import pytest
from mcp import Client, ClientSession
from mcp.client.sse import sse_client
from mcp.types import ListToolsResult, ServerCapabilities, ToolListChangedNotification
from pydantic import BaseModel, Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.app import FleetServer, ToolsRefresh, build_server
from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.run import running
from mcpfleet_servers.base.settings import ConfigFile, ServerSettings
from mcpfleet_servers.base.toolkit import Toolset
from tests.integration.conftest import eventually
from tests.integration.servers.conftest import MakeServer
from tests.integration.servers.demo import DemoModule

pytestmark = pytest.mark.integration

WRITE_TOOLS = {"scale", "delete_item", "restart", "annotate"}


class Echo(BaseModel):
    text: str = Field(description="What was sent.")


class GrowingModule(DemoModule):
    """The demo tools plus ``echo`` while ``offer_echo`` is set: a module whose tool set changes at runtime."""

    def __init__(self, budget: Budget | None = None) -> None:
        super().__init__(budget)
        self.offer_echo = False

    def toolset(self) -> Toolset:
        tools = super().toolset()
        if self.offer_echo:

            @tools.tool(risk=Risk.SAFE, read_only=True, idempotent=True)
            async def echo(text: Annotated[str, Field(max_length=100, description="What to send back.")]) -> Echo:
                """Send the text back."""
                return Echo(text=text)

        return tools


class Inbox:
    """The tools/list_changed notices one client session received."""

    def __init__(self) -> None:
        self.notices = 0
        self._arrived = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            self.record()

    def record(self) -> None:
        self.notices += 1
        self._arrived.set()
        self._arrived = anyio.Event()

    async def wait_for(self, notices: int, within: float = 15.0) -> None:
        """Until at least ``notices`` arrived; TimeoutError after ``within`` seconds."""
        with anyio.fail_after(within):
            while self.notices < notices:
                await self._arrived.wait()


class Session:
    """One connected client, whatever its transport: list, call, and what it was told."""

    def __init__(
        self,
        inbox: Inbox,
        capabilities: ServerCapabilities | None,
        list_tools: Callable[[], Awaitable[ListToolsResult]],
        call_tool: Callable[[str, dict[str, Any]], Awaitable[Any]],
    ) -> None:
        self.inbox = inbox
        self.capabilities = capabilities
        self._list_tools = list_tools
        self._call_tool = call_tool

    async def names(self) -> set[str]:
        return {tool.name for tool in (await self._list_tools()).tools}

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        return await self._call_tool(name, arguments)


@asynccontextmanager
async def streamable_http_session(port: int) -> AsyncIterator[Session]:
    inbox = Inbox()
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy", message_handler=inbox, cache=None) as client:
        yield Session(inbox, client.server_capabilities, client.list_tools, client.call_tool)


@asynccontextmanager
async def sse_session(port: int) -> AsyncIterator[Session]:
    inbox = Inbox()
    async with (
        sse_client(f"http://127.0.0.1:{port}/sse") as (read, write),
        ClientSession(read, write, message_handler=inbox) as session,
    ):
        initialized = await session.initialize()
        yield Session(inbox, initialized.capabilities, session.list_tools, session.call_tool)


async def until_told(server: FleetServer, module: GrowingModule, session: Session) -> int:
    """Wait until notices reach the session, then leave echo off and the inbox empty; the changes announced.

    A streamable-HTTP client opens its GET stream in the background after the handshake; a notice sent
    before that has nowhere to go. So the tool set is toggled until one arrives (on loopback a notice that
    was sent arrives within the wait, so none is still on its way afterwards).
    """
    announced = 0

    async def heard() -> bool:
        nonlocal announced
        module.offer_echo = not module.offer_echo
        announced += (await server.refresh_tools()).changed
        with contextlib.suppress(TimeoutError):
            await session.inbox.wait_for(1, within=2)
        return session.inbox.notices > 0

    await eventually(heard, within=30)
    if module.offer_echo:
        module.offer_echo = False
        announced += (await server.refresh_tools()).changed
        await session.inbox.wait_for(session.inbox.notices + 1)
    session.inbox.notices = 0
    return announced


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_a_session_is_told_when_tools_come_and_go(make_server: MakeServer, transport: str) -> None:
    module = GrowingModule()
    server = make_server(module, port=0, transport=transport)
    connect = streamable_http_session if transport == "streamable-http" else sse_session
    async with running(server) as runner, connect(runner.port) as session:
        assert session.capabilities is not None
        assert session.capabilities.tools is not None
        assert session.capabilities.tools.list_changed is True
        await until_told(server, module, session)
        assert "echo" not in await session.names()

        module.offer_echo = True
        added = await server.refresh_tools()
        assert (added.changed, added.added, added.removed) == (True, ("echo",), ())
        assert added.notified == 1
        assert added.report is None  # not in a Pod
        await session.inbox.wait_for(1)
        assert "echo" in await session.names()
        echoed = await session.call("echo", {"text": "hello"})
        assert not echoed.is_error
        assert echoed.structured_content == {"text": "hello"}

        same = await server.refresh_tools()
        assert (same.changed, same.added, same.removed, same.notified) == (False, (), (), 0)
        assert same.digest == added.digest

        module.offer_echo = False
        removed = await server.refresh_tools()
        assert (removed.changed, removed.added, removed.removed) == (True, (), ("echo",))
        await session.inbox.wait_for(2)
        assert session.inbox.notices == 2
        assert "echo" not in await session.names()
        gone = await session.call("echo", {"text": "hello"})
        assert gone.is_error
        assert "Unknown tool: echo" in str(gone.content[0])


async def test_a_2026_client_listening_is_told(make_server: MakeServer) -> None:
    module = GrowingModule()
    server = make_server(module, port=0)
    async with (
        running(server) as runner,
        Client(f"http://127.0.0.1:{runner.port}/mcp") as client,
        client.listen(tools_list_changed=True) as subscription,
    ):
        module.offer_echo = True
        refresh = await server.refresh_tools()
        assert refresh.changed
        with anyio.fail_after(10):
            event = await subscription.__anext__()
        assert type(event).__name__ == "ToolsListChanged"
        assert "echo" in {tool.name for tool in (await client.list_tools(cache_mode="bypass")).tools}


async def test_two_sessions_and_concurrent_refreshes(make_server: MakeServer) -> None:
    module = GrowingModule()
    server = make_server(module, port=0)
    async with running(server) as runner, AsyncExitStack() as stack:
        first = await stack.enter_async_context(streamable_http_session(runner.port))
        await until_told(server, module, first)
        second = await stack.enter_async_context(streamable_http_session(runner.port))
        announced = await until_told(server, module, second)
        # The first session heard every one of those: its stream was open all along.
        await first.inbox.wait_for(announced)
        assert first.inbox.notices == announced
        first.inbox.notices = 0

        module.offer_echo = True
        results: list[ToolsRefresh] = []
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(lambda: _collect(server, results))
        # One at a time: exactly one of them saw the change, the others found nothing to do.
        assert sorted(r.changed for r in results) == [False, False, False, False, True]
        await first.inbox.wait_for(1)
        await second.inbox.wait_for(1)
        assert (first.inbox.notices, second.inbox.notices) == (1, 1)
        assert "echo" in await first.names()
        assert "echo" in await second.names()


async def _collect(server: FleetServer, results: list[ToolsRefresh]) -> None:
    results.append(await server.refresh_tools())


async def test_reconfigure_applies_the_policy_and_keeps_the_listener(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    module = GrowingModule()
    server = make_server(module, port=0)
    async with running(server) as runner, streamable_http_session(runner.port) as session:
        await until_told(server, module, session)
        assert await session.names() >= WRITE_TOOLS

        refresh = await server.reconfigure(ServerSettings.load(read_only=True, port=9999))
        assert refresh.changed
        assert set(refresh.removed) == WRITE_TOOLS
        assert server.settings.read_only
        assert server.settings.port == 0, "the listener keeps its running port"
        assert "port (MCP_PORT)" in caplog.text
        assert "needs a restart" in caplog.text
        await session.inbox.wait_for(1)
        assert not WRITE_TOOLS & await session.names()
        assert await _ready_tools(runner.port) == len(server.tools)

        back = await server.reconfigure(ServerSettings.load(port=0))
        assert set(back.added) == WRITE_TOOLS
        await session.inbox.wait_for(2)
        assert await session.names() >= WRITE_TOOLS


async def _ready_tools(port: int) -> int:
    async with httpx2.AsyncClient(timeout=5) as http:
        body = (await http.get(f"http://127.0.0.1:{port}/ready")).json()
    return int(body["tools"])


async def test_a_reload_that_cannot_be_applied_changes_nothing(
    server_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"type": "demo", "config": {"demo": {"readOnly": True}}}))
    settings = ServerSettings.load(ConfigFile.read(path), port=0)
    module = GrowingModule(settings.budget())
    server = build_server(module, settings)
    async with running(server) as runner:
        served = [tool.name for tool in server.tools]
        assert not WRITE_TOOLS & set(served)
        for content, problem in [
            ("{not json", "is not JSON"),
            (json.dumps({"type": "k8s-ops", "config": {"demo": {"readOnly": False}}}), "is now for type k8s-ops"),
            (json.dumps({"type": "demo", "port": "eighty"}), "is invalid: port: Input should be a valid integer"),
            (
                json.dumps({"type": "demo", "config": {"demo": {"readOnly": "sometimes"}}}),
                "MCP_READ_ONLY (read_only, or config.demo.readOnly in",
            ),
        ]:
            path.write_text(content)
            assert not await runner.reload()
            assert problem in caplog.text
            assert [tool.name for tool in server.tools] == served
            assert server.settings is settings

        path.write_text(json.dumps({"type": "demo", "config": {"demo": {"readOnly": False}}}))
        with caplog.at_level(logging.INFO, logger="mcpfleet_servers.base.run"):
            assert await runner.reload()
        assert {tool.name for tool in server.tools} >= WRITE_TOOLS
        assert "settings reloaded from the environment and" in caplog.text
