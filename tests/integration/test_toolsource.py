"""The operator's tool source against real MCP servers: a fleet server in-process, the test apps as processes
(killed and restarted on their port), a socket that never answers and a plain web server. Nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from mcp.client.client import Client
from mcp.client.sse import sse_client
from mcp_types import TextContent

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_contracts.mcpserver import Transport
from mcpfleet_contracts.report import tools_digest
from mcpfleet_operator.toolsource import EndpointWatcher, ListFailed, list_tools
from mcpfleet_servers.base.app import build_server
from mcpfleet_servers.base.run import running
from mcpfleet_servers.base.settings import ServerSettings
from tests.integration.conftest import eventually
from tests.integration.gateway.upstreams.upstream_app import PAGE_SIZE, TOOLS
from tests.integration.servers.demo import DemoModule

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOOLSOURCE_APP = "tests.integration.toolsource_app"
UPSTREAM_APP = "tests.integration.gateway.upstreams.upstream_app"
PATHS = {Transport.STREAMABLE_HTTP: "/mcp", Transport.SSE: "/sse"}
APP_TOOLS = ["digest", "echo", "grow"]
READY_SECONDS = 30.0
TIMEOUT = 10.0
SECRET = "s3cret-Zq7"


# -- servers ------------------------------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """An MCP server process on a fixed loopback port, killable and restartable on that port."""

    module: str
    transport: Transport
    flags: tuple[str, ...]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATHS[self.transport]}"

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{self.transport.value}-{self.port}.log").open("ab") as log:
            # Popen returns once the child is forked; its start-up is awaited below without blocking the loop.
            self.process = subprocess.Popen(  # noqa: ASYNC220 - fixed argv, loopback only
                [
                    sys.executable,
                    "-m",
                    self.module,
                    "--transport",
                    self.transport.value,
                    "--port",
                    str(self.port),
                    *self.flags,
                ],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        await eventually(self._listening, within=READY_SECONDS)

    async def _listening(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"{self.module} exited with {self.process.returncode}; see {self.log_dir}"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


Servers = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    """``await servers(transport, *flags, module=...)``: a started server process owned by the test."""
    started: list[ServerProcess] = []

    async def make(transport: Transport, *flags: str, module: str = TOOLSOURCE_APP) -> ServerProcess:
        server = ServerProcess(module, transport, flags, tmp_path / "servers")
        started.append(server)
        await server.start()
        return server

    yield make
    for server in started:
        server.kill()


@contextlib.asynccontextmanager
async def app_client(server: ServerProcess) -> AsyncIterator[Client]:
    """The SDK's own client, to change the app and to ask for its own digest."""
    target: Any = sse_client(server.url) if server.transport is Transport.SSE else server.url
    async with Client(target, mode="legacy" if server.transport is Transport.SSE else "auto") as client:
        yield client


async def grow(server: ServerProcess, name: str, *, announce: bool) -> str:
    """Add a tool on the server; the server's own digest afterwards."""
    async with app_client(server) as client:
        result = await client.call_tool("grow", {"name": name, "announce": announce})
        assert not result.is_error, result
        answer = await client.call_tool("digest", {})
    content = answer.content[0]
    assert isinstance(content, TextContent)
    return content.text


@dataclass
class Silent:
    """A TCP server that accepts connections and never answers."""

    port: int
    connections: int = 0


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    writers: list[asyncio.StreamWriter] = []
    state = Silent(port=0)

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        writers.append(writer)
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    state.port = int(server.sockets[0].getsockname()[1])
    try:
        yield state
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()


@dataclass
class WebSite:
    """A plain web server: an HTML page at /page, 404 elsewhere; it remembers the headers it was sent."""

    base: str
    headers: list[dict[str, str]]


@pytest.fixture
async def website() -> AsyncIterator[WebSite]:
    seen: list[dict[str, str]] = []

    @web.middleware
    async def remember(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(dict(request.headers))
        response: web.StreamResponse = await handler(request)
        return response

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Welcome</body></html>", content_type="text/html")

    app = web.Application(middlewares=[remember])
    app.router.add_route("*", "/page", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield WebSite(f"http://127.0.0.1:{port}", seen)
    finally:
        await runner.cleanup()


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MCP_*/POD_* settings from the environment leak into the fleet server under test."""
    for name in list(os.environ):
        if name.upper().startswith(("MCP_", "POD_", "MCPFLEET_SERVER_NAME")):
            monkeypatch.delenv(name)
    return monkeypatch


def served(tools: list[Any]) -> list[dict[str, Any]]:
    """Tools as a server digests them for its pod report."""
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]


def names(tools: list[dict[str, Any]]) -> list[str]:
    return sorted(str(tool["name"]) for tool in tools)


# -- list_tools ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", [Transport.STREAMABLE_HTTP, Transport.SSE])
async def test_list_tools_confirms_the_digest_a_fleet_server_reports(
    server_env: pytest.MonkeyPatch, transport: Transport
) -> None:
    settings = ServerSettings.load(port=0, transport=transport.value)
    server = build_server(DemoModule(settings.budget()), settings)
    async with running(server) as runner:
        url = f"http://127.0.0.1:{runner.port}{settings.mcp_path}"
        tools = await list_tools(url, transport, timeout=TIMEOUT)
        reported = served(await server.mcp.list_tools())
    assert len(reported) > 3
    assert names(tools) == names(reported)
    assert tools_digest(tools) == tools_digest(reported)


@pytest.mark.parametrize(
    ("transport", "flags"),
    [
        pytest.param(Transport.STREAMABLE_HTTP, (), id="streamable-http"),
        pytest.param(Transport.STREAMABLE_HTTP, ("--handshake-only",), id="streamable-http-handshake"),
        pytest.param(Transport.STREAMABLE_HTTP, ("--stateless", "--json"), id="streamable-http-stateless"),
        pytest.param(Transport.SSE, (), id="sse"),
    ],
)
async def test_list_tools_follows_every_page(servers: Servers, transport: Transport, flags: tuple[str, ...]) -> None:
    server = await servers(transport, *flags, module=UPSTREAM_APP)
    tools = await list_tools(server.url, transport, timeout=TIMEOUT)
    assert len(TOOLS) > 2 * PAGE_SIZE  # the app serves them in pages of PAGE_SIZE
    assert names(tools) == sorted(tool.name for tool in TOOLS)
    assert tools_digest(tools) == tools_digest(served(TOOLS))


@pytest.mark.parametrize(
    ("flags", "reason", "says"),
    [
        pytest.param(("--endless-pages", "1"), "ProtocolError", "after 50", id="pages-without-end"),
        pytest.param(("--endless-pages", "1", "--repeat-cursor"), "ProtocolError", "twice", id="repeated-cursor"),
        pytest.param(("--endless-pages", "100"), "TooManyTools", "more than 2048 tools", id="too-many-tools"),
    ],
)
async def test_list_tools_is_bounded(servers: Servers, flags: tuple[str, ...], reason: str, says: str) -> None:
    server = await servers(Transport.STREAMABLE_HTTP, *flags)
    with pytest.raises(ListFailed) as failed:
        await list_tools(server.url, Transport.STREAMABLE_HTTP, timeout=30)
    assert failed.value.reason == reason, failed.value
    assert says in failed.value.message


@pytest.mark.parametrize(
    "url",
    [pytest.param("refused", id="refused-port"), pytest.param("http://mcp.example.invalid/mcp", id="unknown-host")],
)
@pytest.mark.parametrize("transport", [Transport.STREAMABLE_HTTP, Transport.SSE])
async def test_an_unreachable_endpoint_fails_at_once(url: str, transport: Transport) -> None:
    if url == "refused":
        url = f"http://127.0.0.1:{free_port()}/mcp"
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ListFailed) as failed:
        await list_tools(url, transport, timeout=60)
    assert failed.value.reason == "Unreachable", failed.value
    assert loop.time() - started < 30  # a refusal, not the timeout
    assert "check that the server runs" in failed.value.message


@pytest.mark.parametrize("transport", [Transport.STREAMABLE_HTTP, Transport.SSE])
async def test_an_endpoint_that_never_answers_times_out(silent: Silent, transport: Transport) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ListFailed) as failed:
        await list_tools(f"http://127.0.0.1:{silent.port}/mcp", transport, timeout=1.0)
    assert failed.value.reason == "Timeout", failed.value
    assert "within 1s" in failed.value.message
    assert loop.time() - started < 1.0 + 10  # bounded by the timeout, with room for a slow machine


@pytest.mark.parametrize("transport", [Transport.STREAMABLE_HTTP, Transport.SSE])
async def test_a_missing_path_is_an_http_error(website: WebSite, transport: Transport) -> None:
    with pytest.raises(ListFailed) as failed:
        await list_tools(
            f"{website.base}/missing?token={SECRET}",
            transport,
            timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {SECRET}"},
        )
    assert (failed.value.reason, failed.value.status) == ("HTTPError", 404), failed.value
    assert "HTTP 404" in failed.value.message
    assert SECRET not in failed.value.message
    assert website.headers
    assert all(headers.get("Authorization") == f"Bearer {SECRET}" for headers in website.headers)


@pytest.mark.parametrize("transport", [Transport.STREAMABLE_HTTP, Transport.SSE])
async def test_a_web_page_is_not_mcp(website: WebSite, transport: Transport) -> None:
    with pytest.raises(ListFailed) as failed:
        await list_tools(f"{website.base}/page", transport, timeout=TIMEOUT)
    assert failed.value.reason == "ProtocolError", failed.value
    assert "text/html" in failed.value.message


async def test_stdio_cannot_be_listed_over_the_network() -> None:
    with pytest.raises(ListFailed) as failed:
        await list_tools("http://127.0.0.1:1/mcp", Transport.STDIO, timeout=TIMEOUT)
    assert failed.value.reason == "Unsupported"


# -- EndpointWatcher ----------------------------------------------------------------------------------------------


@dataclass
class Seen:
    tools: list[tuple[list[str], str]] = field(default_factory=list)
    errors: list[ListFailed] = field(default_factory=list)

    async def on_tools(self, tools: list[dict[str, Any]], digest: str) -> None:
        assert digest == tools_digest(tools)
        self.tools.append((names(tools), digest))

    async def on_error(self, failure: ListFailed) -> None:
        self.errors.append(failure)

    async def tools_seen(self, count: int, within: float = 30.0) -> tuple[list[str], str]:
        async def enough() -> bool:
            return len(self.tools) >= count

        await eventually(enough, within=within)
        return self.tools[count - 1]


@contextlib.asynccontextmanager
async def watching(
    url: str, transport: Transport, *, poll_seconds: float
) -> AsyncIterator[tuple[EndpointWatcher, Seen]]:
    seen = Seen()
    watcher = EndpointWatcher(
        url, transport, poll_seconds=poll_seconds, timeout=TIMEOUT, on_tools=seen.on_tools, on_error=seen.on_error
    )
    task = asyncio.create_task(watcher.run())
    try:
        yield watcher, seen
    finally:
        watcher.stop()
        await asyncio.wait_for(task, 15)


@pytest.mark.parametrize(
    ("transport", "flags"),
    [
        pytest.param(Transport.STREAMABLE_HTTP, (), id="streamable-http-listen"),
        pytest.param(Transport.STREAMABLE_HTTP, ("--stateless",), id="streamable-http-stateless-listen"),
        pytest.param(Transport.STREAMABLE_HTTP, ("--handshake-only",), id="streamable-http-get-stream"),
        pytest.param(Transport.SSE, (), id="sse"),
    ],
)
async def test_the_watcher_relists_when_the_server_announces_a_change(
    servers: Servers, transport: Transport, flags: tuple[str, ...]
) -> None:
    server = await servers(transport, *flags)
    # A poll is 48 s away at the earliest: a new list within the deadline below came from the announcement.
    async with watching(server.url, transport, poll_seconds=60) as (_, seen):
        first, _ = await seen.tools_seen(1)
        assert first == APP_TOOLS
        digest = await grow(server, "added", announce=True)
        after, seen_digest = await seen.tools_seen(2, within=20)
    assert after == sorted([*APP_TOOLS, "added"])
    assert seen_digest == digest
    assert seen.errors == []


async def test_the_watcher_polls_a_server_that_cannot_announce(servers: Servers) -> None:
    # Stateless and handshake-only: no session, no stream a notification could travel on.
    server = await servers(Transport.STREAMABLE_HTTP, "--stateless", "--handshake-only")
    async with watching(server.url, Transport.STREAMABLE_HTTP, poll_seconds=0.3) as (_, seen):
        first, _ = await seen.tools_seen(1)
        digest = await grow(server, "polled", announce=False)
        after, seen_digest = await seen.tools_seen(2)
    assert first == APP_TOOLS
    assert after == sorted([*APP_TOOLS, "polled"])
    assert seen_digest == digest
    assert seen.errors == []


async def test_trigger_lists_at_once(servers: Servers) -> None:
    server = await servers(Transport.STREAMABLE_HTTP, "--stateless", "--handshake-only")
    async with watching(server.url, Transport.STREAMABLE_HTTP, poll_seconds=60) as (watcher, seen):
        await seen.tools_seen(1)
        await grow(server, "triggered", announce=False)
        watcher.trigger()
        after, _ = await seen.tools_seen(2, within=20)
    assert after == sorted([*APP_TOOLS, "triggered"])


@pytest.mark.parametrize("transport", [Transport.STREAMABLE_HTTP, Transport.SSE])
async def test_the_watcher_reports_an_outage_and_recovers(servers: Servers, transport: Transport) -> None:
    server = await servers(transport)
    async with watching(server.url, transport, poll_seconds=0.5) as (_, seen):
        _, digest = await seen.tools_seen(1)
        server.kill()

        async def reported() -> bool:
            return bool(seen.errors)

        await eventually(reported, within=30)
        await server.start()
        again, recovered_digest = await seen.tools_seen(2)
    assert recovered_digest == digest  # the same tools, offered again: the endpoint is back
    assert again == APP_TOOLS
    # One streak, one report: retries that fail the same way are not reported again.
    assert [failure.reason for failure in seen.errors] == ["Unreachable"], seen.errors


async def test_a_restarted_server_gets_a_fresh_session_without_a_report(servers: Servers) -> None:
    # Handshake sessions live in the server process: after a restart the old session id is unknown (HTTP 404).
    server = await servers(Transport.STREAMABLE_HTTP, "--handshake-only")
    async with watching(server.url, Transport.STREAMABLE_HTTP, poll_seconds=60) as (watcher, seen):
        await seen.tools_seen(1)
        server.kill()
        await server.start()
        watcher.trigger()  # the listing on the old session fails; a new session is opened at once, not reported
        await grow(server, "after_restart", announce=True)
        # Polls are 48 s away at the earliest: the change came through the new session (its listing or its stream).
        after, _ = await seen.tools_seen(2, within=20)
    assert after == sorted([*APP_TOOLS, "after_restart"])
    assert seen.errors == []


async def test_stop_ends_an_idle_watch_promptly(servers: Servers, caplog: pytest.LogCaptureFixture) -> None:
    server = await servers(Transport.STREAMABLE_HTTP, "--handshake-only")
    before = asyncio.all_tasks()
    seen = Seen()
    watcher = EndpointWatcher(
        server.url,
        Transport.STREAMABLE_HTTP,
        poll_seconds=60,
        timeout=TIMEOUT,
        on_tools=seen.on_tools,
        on_error=seen.on_error,
    )
    task = asyncio.create_task(watcher.run())
    await seen.tools_seen(1)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        watcher.stop()
        await asyncio.wait_for(task, 6)  # a graceful close is bounded by CLOSE_SECONDS (5)
        gc.collect()
        await asyncio.sleep(0)
    assert asyncio.all_tasks() <= before  # nothing of the watcher is left running
    assert not [record for record in caplog.records if record.name == "asyncio"]
    assert seen.errors == []


async def test_stop_ends_a_watch_that_is_still_connecting(silent: Silent) -> None:
    seen = Seen()
    watcher = EndpointWatcher(
        f"http://127.0.0.1:{silent.port}/mcp",
        Transport.STREAMABLE_HTTP,
        poll_seconds=60,
        timeout=60,
        on_tools=seen.on_tools,
        on_error=seen.on_error,
    )
    task = asyncio.create_task(watcher.run())

    async def connected() -> bool:
        return silent.connections > 0

    await eventually(connected)  # it waits for an answer that never comes
    assert not task.done()
    watcher.stop()
    await asyncio.wait_for(task, 10)  # far less than the 60 s the answer would be waited for
    assert (seen.tools, seen.errors) == ([], [])


async def test_a_stdio_endpoint_is_reported_unsupported_until_stopped() -> None:
    async with watching("http://127.0.0.1:1/mcp", Transport.STDIO, poll_seconds=1) as (_, seen):

        async def reported() -> bool:
            return bool(seen.errors)

        await eventually(reported)
    assert [failure.reason for failure in seen.errors] == ["Unsupported"]
