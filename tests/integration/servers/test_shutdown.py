"""SIGTERM with clients holding streams open: a real server process ends them cleanly and exits promptly.

The server runs with a graceful timeout of GRACE_SECONDS; a stop that waited for the open streams would take
that long, so exiting within PROMPT_SECONDS (a third of it) shows the streams were ended, not waited out.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx2
import pytest
from mcp import Client, ClientSession
from mcp.client.sse import sse_client
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.app import build_server
from mcpfleet_servers.base.run import configure_logging, run_server
from mcpfleet_servers.base.settings import DEFAULT_PATHS, ServerSettings, TransportName
from mcpfleet_servers.base.toolkit import Toolset
from tests.integration.conftest import eventually
from tests.integration.servers.demo import DemoModule, logger

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
GRACE_SECONDS = 30
PROMPT_SECONDS = 10.0
CALL_SECONDS = 3.0  # a tool call in flight at SIGTERM, well within the bound
GRACE_ENV = "SHUTDOWN_TEST_GRACE_SECONDS"  # test-only: the graceful timeout of the process under test
HANDSHAKE = "2025-11-25"


class Waited(BaseModel):
    seconds: float


class WaitingDemo(DemoModule):
    """The demo module plus a tool that takes as long as it is told."""

    def toolset(self) -> Toolset:
        tools = super().toolset()

        @tools.tool(risk=Risk.SAFE, read_only=True)
        async def wait_a_while(seconds: Annotated[float, Field(ge=0, le=120, description="How long.")]) -> Waited:
            """Wait, then answer."""
            logger.info("wait_a_while started")
            await anyio.sleep(seconds)
            return Waited(seconds=seconds)

        return tools


def serve() -> None:
    """The process under test (``python -c``): the demo served as `mcpfleet server` serves a module."""
    settings = ServerSettings.load()
    configure_logging(settings)
    server = build_server(WaitingDemo(settings.budget()), settings)
    run_server(server, graceful_shutdown_seconds=int(os.environ.get(GRACE_ENV, GRACE_SECONDS)))


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    async def stopped_within(self, seconds: float) -> int:
        """SIGTERM, then the exit code; fails when the process is still running after ``seconds``."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return await anyio.to_thread.run_sync(lambda: self.process.wait(seconds))
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {seconds:g} s after SIGTERM:\n{self.log_text()[-4000:]}")

    def assert_clean_log(self) -> None:
        text = self.log_text()
        assert "Traceback" not in text, text[-4000:]
        assert "Exception in ASGI application" not in text, text[-4000:]


def spawn(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``serve()`` of the given module in a new process, its output in ``log`` (returns at once)."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-c", f"from {module} import serve; serve()"],
            env=env,
            cwd=str(REPO),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def assert_answered(call: object) -> None:
    """The slow call got its answer although the server was stopped while it ran."""
    assert isinstance(call, CallToolResult), call
    assert not call.is_error, call
    assert call.structured_content == {"seconds": CALL_SECONDS}


@asynccontextmanager
async def server_process(tmp_path: Path, transport: str, grace: int = GRACE_SECONDS) -> AsyncIterator[Served]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "POD_", "MCPFLEET_"))}
    env |= {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
        "MCP_TRANSPORT": transport,
        "MCP_PORT": str(port),
        "MCP_LOG_LEVEL": "INFO",
        GRACE_ENV: str(grace),
    }
    log = tmp_path / f"server-{transport}.log"
    async with until_ready(Served(spawn("tests.integration.servers.test_shutdown", env, log), port, log)) as served:
        yield served


@asynccontextmanager
async def until_ready(served: Served) -> AsyncIterator[Served]:
    """The spawned process, once its /ready answers 200; killed on exit if the test did not stop it."""
    process = served.process
    try:

        async def ready() -> bool:
            assert process.poll() is None, served.log_text()[-3000:]
            try:
                async with httpx2.AsyncClient(timeout=2) as http:
                    return (await http.get(f"{served.base}/ready")).status_code == 200
            except httpx2.TransportError:  # not listening yet
                return False

        await eventually(ready, within=60, interval=0.1)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def stream_end(response: httpx2.Response, opened: anyio.Event) -> str:
    """Read an event stream to its end: "clean" when it ended as HTTP says a response ends."""
    opened.set()
    try:
        async for _ in response.aiter_bytes():
            pass
    except httpx2.HTTPError as exc:
        return f"broken: {exc!r}"
    return "clean"


async def legacy_session(http: httpx2.AsyncClient, url: str) -> str:
    """A handshake-era session (initialize, initialized); its id."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    answer = await http.post(url, json=initialize, headers=headers)
    assert answer.status_code == 200, answer.text
    session = answer.headers["mcp-session-id"]
    headers |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE}
    initialized = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert initialized.status_code == 202, initialized.text
    return session


class Outcomes:
    """What each client task saw, filled in as they end."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def start(self, group: anyio.abc.TaskGroup, name: str, work: Callable[[], Awaitable[Any]]) -> None:
        async def run() -> None:
            try:
                self.seen[name] = await work()
            except Exception as exc:  # reported by the assertions, not lost in the task group
                self.seen[name] = exc

        group.start_soon(run)


async def test_sigterm_ends_streamable_http_streams_and_lets_a_call_finish(tmp_path: Path) -> None:
    async with server_process(tmp_path, "streamable-http") as served:
        url = f"{served.base}/mcp"
        outcomes = Outcomes()
        get_opened, listening = anyio.Event(), anyio.Event()

        async def legacy_get_stream() -> str:
            async with httpx2.AsyncClient(timeout=httpx2.Timeout(5, read=60)) as http:
                session = await legacy_session(http, url)
                headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE}
                async with http.stream("GET", url, headers=headers) as response:
                    assert response.status_code == 200
                    return await stream_end(response, get_opened)

        async def listen_stream() -> str:
            async with Client(url) as client, client.listen(tools_list_changed=True) as subscription:
                assert client.protocol_version == "2026-07-28"
                listening.set()
                async for _ in subscription:
                    pass
            return "clean"  # an abrupt drop raises SubscriptionLost instead

        async def slow_call() -> CallToolResult:
            async with Client(url) as client:
                await client.list_tools()  # the output schema, known before the server goes (the result is checked)
                return await client.call_tool("wait_a_while", {"seconds": CALL_SECONDS})

        async with anyio.create_task_group() as group:
            outcomes.start(group, "get", legacy_get_stream)
            outcomes.start(group, "listen", listen_stream)
            with anyio.fail_after(30):
                await get_opened.wait()
                await listening.wait()
            outcomes.start(group, "call", slow_call)
            await eventually(logged(served, "wait_a_while started"), within=30)
            assert await served.stopped_within(PROMPT_SECONDS) == 0

        assert outcomes.seen["get"] == "clean"
        assert outcomes.seen["listen"] == "clean"
        assert_answered(outcomes.seen["call"])
        served.assert_clean_log()


async def test_sigterm_ends_an_sse_session_after_its_call_is_answered(tmp_path: Path) -> None:
    async with server_process(tmp_path, "sse") as served:
        url = f"{served.base}{DEFAULT_PATHS[TransportName.SSE]}"
        outcomes = Outcomes()
        opened = anyio.Event()

        async def idle_sse_stream() -> str:
            async with (
                httpx2.AsyncClient(timeout=httpx2.Timeout(5, read=60)) as http,
                http.stream("GET", url, headers={"Accept": "text/event-stream"}) as response,
            ):
                assert response.status_code == 200
                return await stream_end(response, opened)

        async def slow_call_over_sse() -> CallToolResult:
            async with sse_client(url) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                await session.list_tools()  # the output schema, known before the server goes (the result is checked)
                return await session.call_tool("wait_a_while", {"seconds": CALL_SECONDS})

        async with anyio.create_task_group() as group:
            outcomes.start(group, "idle", idle_sse_stream)
            with anyio.fail_after(30):
                await opened.wait()
            outcomes.start(group, "call", slow_call_over_sse)
            await eventually(logged(served, "wait_a_while started"), within=30)
            assert await served.stopped_within(PROMPT_SECONDS) == 0

        assert outcomes.seen["idle"] == "clean"
        assert_answered(outcomes.seen["call"])
        served.assert_clean_log()


async def test_a_call_still_running_at_the_bound_is_cut_with_one_line(tmp_path: Path) -> None:
    grace = 2
    async with server_process(tmp_path, "streamable-http", grace=grace) as served:
        url = f"{served.base}/mcp"
        outcomes = Outcomes()

        async def endless_call() -> CallToolResult:
            async with Client(url) as client:
                return await client.call_tool("wait_a_while", {"seconds": 120})

        async with anyio.create_task_group() as group:
            outcomes.start(group, "call", endless_call)
            await eventually(logged(served, "wait_a_while started"), within=30)
            assert await served.stopped_within(grace + PROMPT_SECONDS) == 0

        assert not isinstance(outcomes.seen["call"], CallToolResult), "the cut call cannot have an answer"
        cut_lines = [line for line in served.log_text().splitlines() if "stopping: cut" in line]
        assert len(cut_lines) == 1, served.log_text()[-4000:]
        assert "POST /mcp (tools/call)" in cut_lines[0]
        served.assert_clean_log()


def logged(served: Served, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        await asyncio.sleep(0)
        return text in served.log_text()

    return check
