"""SIGHUP on a real `mcpfleet server k8s-ops` process: the settings are read again and the tool list follows.

The server runs as the operator starts it (a config file, the Pod named by POD_NAME/POD_NAMESPACE) with a
kubeconfig pointing at the Kubernetes emulator, which also holds the Pod the tool report is written on.
A connected client is told of the change (a 2026-07-28 client through subscriptions/listen over streamable
HTTP, a handshake-era session over legacy SSE); a bad edit changes nothing and the log names the field.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from kubernetes_asyncio import client as k8s
from mcp import Client, ClientSession
from mcp.client.sse import sse_client

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_contracts.report import TOOLS_ANNOTATION, parse_tools_annotation
from mcpfleet_servers.base.kube import api_client
from tests.emulator import ApiServerEmulator
from tests.integration.conftest import eventually
from tests.integration.servers.test_tool_refresh import Inbox

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NAMESPACE = "team-a"
POD = "ops-0"
WRITE_TOOLS = {"scale_deployment", "restart_deployment", "rollback_deployment", "apply_manifest", "delete_resource"}


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    config: Path
    log: Path
    port: int
    transport: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{'/sse' if self.transport == 'sse' else '/mcp'}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def write_config(self, **k8s_ops: Any) -> None:
        document = {
            "name": "ops",
            "namespace": NAMESPACE,
            "type": "k8s-ops",
            "transport": self.transport,
            "port": self.port,
            "config": {"k8sOps": k8s_ops},
        }
        self.config.write_text(json.dumps(document))

    def reload(self) -> None:
        assert self.process.poll() is None, self.log_text()[-3000:]
        self.process.send_signal(signal.SIGHUP)

    async def wait_logged(self, text: str, after: int = 0) -> None:
        async def logged() -> bool:
            assert self.process.poll() is None, f"the server exited:\n{self.log_text()[-3000:]}"
            return text in self.log_text()[after:]

        await eventually(logged, within=30, interval=0.1)


def _environment(kubeconfig: Path) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MCP_", "K8S_", "POD_", "MCPFLEET_", "KUBECONFIG"))
    }
    return environment | {
        "KUBECONFIG": str(kubeconfig),
        "POD_NAME": POD,
        "POD_NAMESPACE": NAMESPACE,
        "MCP_LOG_LEVEL": "INFO",
    }


@pytest.fixture(params=["streamable-http", "sse"])
def server_process(request: pytest.FixtureRequest, tmp_path: Path, kubeconfig: Path) -> Iterator[ServerProcess]:
    """`mcpfleet server k8s-ops --config config.json`, the config saying readOnly: true."""
    log = tmp_path / "server.log"
    server = ServerProcess(
        process=None,  # type: ignore[arg-type]  # started right below, once the config exists
        config=tmp_path / "config.json",
        log=log,
        port=free_port(),
        transport=str(request.param),
    )
    server.write_config(readOnly=True)
    with log.open("ab") as sink:
        server.process = subprocess.Popen(  # fixed argv, loopback only
            [str(Path(sys.executable).parent / "mcpfleet"), "server", "k8s-ops", "--config", str(server.config)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=_environment(kubeconfig),
        )
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(20)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(10)


async def _create_pod() -> None:
    async with await api_client() as client:
        pod = k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=POD, namespace=NAMESPACE),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="server", image="mcpfleet:dev")]),
        )
        await k8s.CoreV1Api(client).create_namespaced_pod(NAMESPACE, pod)


async def _reported_names() -> set[str]:
    async with await api_client() as client:
        pod = await k8s.CoreV1Api(client).read_namespaced_pod(POD, NAMESPACE)
    annotations = pod.metadata.annotations or {}
    return (
        set(parse_tools_annotation(annotations[TOOLS_ANNOTATION]).names) if TOOLS_ANNOTATION in annotations else set()
    )


async def _serving(server: ServerProcess) -> None:
    async def healthy() -> bool:
        assert server.process.poll() is None, f"the server exited:\n{server.log_text()[-3000:]}"
        try:
            async with httpx2.AsyncClient(timeout=2) as http:
                return (await http.get(f"http://127.0.0.1:{server.port}/health")).status_code == 200
        except httpx2.HTTPError:
            return False

    await eventually(healthy, within=60, interval=0.2)


class Connected:
    """A client holding a session that can be told of changes: it counts notices and lists tools."""

    def __init__(self, inbox: Inbox, session: ClientSession | Client) -> None:
        self.inbox = inbox
        self._session = session

    async def names(self) -> set[str]:
        if isinstance(self._session, Client):
            return {tool.name for tool in (await self._session.list_tools(cache_mode="bypass")).tools}
        return {tool.name for tool in (await self._session.list_tools()).tools}

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        return await self._session.call_tool(name, arguments)


@asynccontextmanager
async def connected(server: ServerProcess) -> AsyncIterator[Connected]:
    inbox = Inbox()
    if server.transport == "sse":
        async with (
            sse_client(server.url) as (read, write),
            ClientSession(read, write, message_handler=inbox) as session,
        ):
            await session.initialize()
            yield Connected(inbox, session)
        return
    async with Client(server.url) as client, client.listen(tools_list_changed=True) as subscription:

        async def count_events() -> None:
            async for _ in subscription:
                inbox.record()

        async with anyio.create_task_group() as group:
            group.start_soon(count_events)
            yield Connected(inbox, client)
            group.cancel_scope.cancel()


async def test_sighup_reloads_the_config_and_the_tools_follow(
    server_process: ServerProcess, emulator: ApiServerEmulator
) -> None:
    server = server_process
    await _create_pod()
    await _serving(server)
    async with connected(server) as client:
        assert not WRITE_TOOLS & await client.names()
        await eventually(_has_no_write_tools_reported)

        # readOnly off, the namespaces limited, and the port moved (that one needs a restart).
        mark = len(server.log_text())
        server.write_config(readOnly=False, namespaces=[NAMESPACE])
        config = json.loads(server.config.read_text())
        server.config.write_text(json.dumps(config | {"port": free_port()}))
        server.reload()
        await client.inbox.wait_for(1, within=30)
        assert await client.names() >= WRITE_TOOLS
        await server.wait_logged("settings reloaded from", after=mark)
        assert "port (MCP_PORT)" in server.log_text()[mark:]
        assert "needs a restart" in server.log_text()[mark:]
        refused = await client.call("list_pods", {"namespace": "elsewhere"})
        assert refused.is_error
        assert "outside K8S_ALLOWED_NAMESPACES" in str(refused.content[0])
        await eventually(_write_tools_reported, within=30)

        # A bad edit: nothing changes, the log names the field, the server serves on.
        mark = len(server.log_text())
        server.write_config(readOnly="sometimes")
        server.reload()
        await server.wait_logged("settings not reloaded", after=mark)
        assert "read_only" in server.log_text()[mark:]
        assert await client.names() >= WRITE_TOOLS
        assert client.inbox.notices == 1
        assert server.process.poll() is None


async def _has_no_write_tools_reported() -> bool:
    names = await _reported_names()
    return bool(names) and not names & WRITE_TOOLS


async def _write_tools_reported() -> bool:
    return await _reported_names() >= WRITE_TOOLS
