"""SIGTERM to a gateway process with clients holding streams open: they end cleanly, a call in flight finishes.

Behind it, a real server process (the shutdown tests' waiting demo) over streamable HTTP, so the gateway also
holds its own sessions to an upstream while it stops. The gateway runs with a graceful timeout of
GRACE_SECONDS; exiting within PROMPT_SECONDS shows the client streams were ended, not waited out.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.types import CallToolResult

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_gateway.config import GatewaySettings, load_config
from mcpfleet_gateway.run import build_gateway, configure_logging, serve_until_signalled
from tests.integration.conftest import eventually
from tests.integration.gateway.harness import ROOT, config_document, headers, mcp_client, token, write_config
from tests.integration.servers.test_shutdown import (
    CALL_SECONDS,
    GRACE_ENV,
    GRACE_SECONDS,
    HANDSHAKE,
    PROMPT_SECONDS,
    Outcomes,
    Served,
    assert_answered,
    legacy_session,
    logged,
    server_process,
    spawn,
    stream_end,
    until_ready,
)

pytestmark = pytest.mark.integration

CONFIG_ENV = "SHUTDOWN_TEST_GATEWAY_CONFIG"  # test-only: the config of the gateway process under test
ADMIN = token("ada", ("admin",))


def serve() -> None:
    """The gateway process under test (``python -c``), as `mcpfleet gateway` runs it, with the test's timeout."""
    settings = GatewaySettings(config=Path(os.environ[CONFIG_ENV]), replica="gw-shutdown")
    configure_logging(settings)
    gateway = build_gateway(settings, load_config(settings))
    asyncio.run(serve_until_signalled(gateway, graceful_shutdown_seconds=int(os.environ[GRACE_ENV])))


@asynccontextmanager
async def gateway_process(tmp_path: Path, upstream: Served) -> AsyncIterator[Served]:
    port = free_port()
    document = config_document(
        tmp_path,
        upstreams={"demo": {"transport": "streamable-http", "url": f"{upstream.base}/mcp"}},
        listen={"host": "127.0.0.1", "port": port},
    )
    config = write_config(tmp_path / "gateway.json", document)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "MCPFLEET_"))}
    env |= {"PYTHONPATH": str(ROOT), CONFIG_ENV: str(config), GRACE_ENV: str(GRACE_SECONDS)}
    log = tmp_path / "gateway.log"
    async with until_ready(Served(spawn("tests.integration.gateway.test_shutdown", env, log), port, log)) as served:
        yield served


async def test_sigterm_ends_client_streams_and_lets_a_call_finish(tmp_path: Path) -> None:
    async with (
        server_process(tmp_path, "streamable-http") as upstream,
        gateway_process(tmp_path, upstream) as gateway,
    ):
        url = f"{gateway.base}/mcp"
        auth = headers(ADMIN)
        outcomes = Outcomes()
        get_opened, sse_opened = anyio.Event(), anyio.Event()

        async def legacy_get_stream() -> str:
            async with httpx2.AsyncClient(headers=auth, timeout=httpx2.Timeout(5, read=60)) as http:
                session = await legacy_session(http, url)
                stream_headers = {
                    "Accept": "text/event-stream",
                    "Mcp-Session-Id": session,
                    "MCP-Protocol-Version": HANDSHAKE,
                }
                async with http.stream("GET", url, headers=stream_headers) as response:
                    assert response.status_code == 200
                    return await stream_end(response, get_opened)

        async def sse_session_stream() -> str:
            async with (
                httpx2.AsyncClient(headers=auth, timeout=httpx2.Timeout(5, read=60)) as http,
                http.stream("GET", f"{gateway.base}/sse", headers={"Accept": "text/event-stream"}) as response,
            ):
                assert response.status_code == 200
                return await stream_end(response, sse_opened)

        async def slow_call() -> CallToolResult:
            async with mcp_client(url, ADMIN) as client:
                names = [tool.name for tool in (await client.list_tools()).tools]
                waiting = next(name for name in names if name.endswith("wait_a_while"))
                return await client.call_tool(waiting, {"seconds": CALL_SECONDS})

        async with anyio.create_task_group() as group:
            outcomes.start(group, "get", legacy_get_stream)
            outcomes.start(group, "sse", sse_session_stream)
            with anyio.fail_after(30):
                await get_opened.wait()
                await sse_opened.wait()
            outcomes.start(group, "call", slow_call)
            await eventually(logged(upstream, "wait_a_while started"), within=30)
            assert await gateway.stopped_within(PROMPT_SECONDS) == 0

        assert outcomes.seen["get"] == "clean"
        assert outcomes.seen["sse"] == "clean"
        assert_answered(outcomes.seen["call"])
        gateway.assert_clean_log()
