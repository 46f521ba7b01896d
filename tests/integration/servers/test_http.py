"""The base over real transports: streamable HTTP and SSE on loopback with uvicorn, stdio in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.types import ElicitRequestParams, ElicitResult

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_servers.base.run import running
from tests.integration.servers.conftest import MakeServer
from tests.integration.servers.demo import SECRET, DemoModule

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


async def _accept(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"confirm": True})


async def test_streamable_http_end_to_end(make_server: MakeServer, server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("POD_NAMESPACE", "team-a")
    server_env.setenv("MCPFLEET_SERVER_NAME", "demo")
    module = DemoModule()
    server = make_server(module, port=0)
    async with running(server) as runner:
        base = f"http://127.0.0.1:{runner.port}"
        async with Client(f"{base}/mcp") as client:
            result = await client.call_tool("list_items", {"limit": 2})
            assert not result.is_error
            assert len((result.structured_content or {})["items"]) == 2
            secret = await client.call_tool("connection", {})
            assert SECRET not in json.dumps(secret.structured_content)

        async with httpx2.AsyncClient(base_url=base, timeout=5) as http:
            health = await http.get("/health")
            assert (health.status_code, health.text) == (200, "ok")
            ready = await http.get("/ready")
            assert ready.status_code == 200
            body = ready.json()
            assert body["ready"] is True
            assert body["server"] == "demo"
            assert body["tools"] == 11
            assert body["backend"] == {"name": "Demo API at http://demo.invalid", "reachable": True, "detail": ""}
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200
            assert 'mcpfleet_tool_calls_total{outcome="ok",risk="SAFE",tool="list_items"} 1.0' in metrics.text
            assert "mcpfleet_backend_up 1.0" in metrics.text

            foreign = await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Host": "evil.example.com"})
            assert foreign.status_code == 421
            for host in ("demo.team-a.svc:8080", "demo.team-a.svc.cluster.local", "demo:80", "localhost:9"):
                accepted = await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Host": host})
                assert accepted.status_code == 200, (host, accepted.text)
    assert module.started
    assert module.closed


async def test_ready_reports_an_unreachable_backend_and_still_serves(make_server: MakeServer) -> None:
    module = DemoModule(reachable=False)
    server = make_server(module, port=0, host="0.0.0.0", stateless=True)  # JSON answers follow from stateless
    async with running(server) as runner:
        base = f"http://127.0.0.1:{runner.port}"
        async with httpx2.AsyncClient(base_url=base, timeout=5) as http:
            ready = await http.get("/ready")
            assert ready.status_code == 200
            assert ready.json()["backend"] == {
                "name": "Demo API at http://demo.invalid",
                "reachable": False,
                "detail": "refused",
            }
            # listening on 0.0.0.0 does not switch the Host check off
            foreign = await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Host": "evil.example.com"})
            assert foreign.status_code == 421
            # stateless, so JSON responses by default: a plain JSON answer, no session id
            answer = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            assert answer.headers["content-type"].startswith("application/json")
            assert "mcp-session-id" not in answer.headers
        async with Client(f"{base}/mcp") as client:
            assert not (await client.call_tool("list_items", {})).is_error
            # the 2026-07-28 era confirms through input_required results, which need no back-channel
            confirmed = await client.call_tool("restart", {"name": "api"})
            assert confirmed.is_error  # no elicitation callback: refused
        async with Client(f"{base}/mcp", elicitation_callback=_accept) as client:
            assert not (await client.call_tool("restart", {"name": "api"})).is_error
        # a handshake-era client on stateless HTTP has no back-channel to be asked on
        async with Client(f"{base}/mcp", mode="legacy", elicitation_callback=_accept) as client:
            refused = await client.call_tool("delete_item", {"name": "web-1"})
            assert refused.is_error
            assert "cannot show one" in str(refused.content[0])
    assert module.restarted == ["api"]
    assert module.deleted == []
    assert not server.state.started


async def test_sse_transport(make_server: MakeServer) -> None:
    server = make_server(port=0, transport="sse")
    async with running(server) as runner:
        url = f"http://127.0.0.1:{runner.port}/sse"
        async with sse_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("scale", {"name": "web", "replicas": 3})
            assert result.structured_content == {"name": "web", "replicas": 3}
        async with httpx2.AsyncClient(timeout=5) as http:
            assert (await http.get(f"http://127.0.0.1:{runner.port}/health")).status_code == 200
            foreign = await http.get(url, headers={"Host": "evil.example.com"})
            assert foreign.status_code == 421


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "POD_", "MCPFLEET_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env | values


async def test_stdio_transport_with_http_probes() -> None:
    port = free_port()
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tests.integration.servers.stdio_entry"],
        env=_env(MCP_TRANSPORT="stdio", MCP_PORT=str(port)),
        cwd=str(REPO),
    )
    async with Client(parameters) as client:
        # a tool that logs: the log line must go to stderr, or the client would read garbage
        result = await client.call_tool("connection", {})
        assert not result.is_error
        assert (result.structured_content or {})["password"] == "[REDACTED]"
        async with httpx2.AsyncClient(timeout=5) as http:
            health = await http.get(f"http://127.0.0.1:{port}/health")
            assert health.status_code == 200
            ready = await http.get(f"http://127.0.0.1:{port}/ready")
            assert ready.json()["transport"] == "stdio"
            metrics = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert 'mcpfleet_tool_calls_total{outcome="ok",risk="SAFE",tool="connection"} 1.0' in metrics.text
            assert (await http.post(f"http://127.0.0.1:{port}/mcp", json=INITIALIZE)).status_code == 404


def _wait_for_health(port: int, process: subprocess.Popen[Any], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stderr.read() if process.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not listen in time")


def test_sigterm_shuts_down_gracefully() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.servers.stdio_entry"],
        env=_env(MCP_PORT=str(port)),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_health(port, process, time.monotonic() + 20)
        assert httpx2.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        assert stdout == ""  # HTTP transports print nothing; logs are on stderr
        assert "MCP (streamable-http) on http://127.0.0.1" in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
