"""Real upstream server processes (the test app over each transport) on free ports, and a TCP proxy that can cut
connections, for the upstream connection tests. Nothing is mocked: every request crosses a socket or a pipe
(in-process aside, which is the point of that transport)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import pytest_asyncio

from mcpfleet_cli.devcluster.cluster import free_port

REPO = Path(__file__).resolve().parents[4]
APP_MODULE = "tests.integration.gateway.upstreams.upstream_app"
APP_TARGET = f"{APP_MODULE}:build_server"
READY_TIMEOUT = 20.0

AppTransport = Literal["streamable-http", "sse", "websocket"]
_PATHS: dict[str, str] = {"streamable-http": "/mcp", "sse": "/sse", "websocket": "/ws"}
_SCHEMES: dict[str, str] = {"streamable-http": "http", "sse": "http", "websocket": "ws"}


def app_command(*args: str) -> list[str]:
    return [sys.executable, "-m", APP_MODULE, *args]


@dataclass
class AppProcess:
    """The test app served over one network transport; killable and restartable on the same port."""

    transport: AppTransport
    log_dir: Path
    flags: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_via(self.port)

    def url_via(self, port: int) -> str:
        return f"{_SCHEMES[self.transport]}://127.0.0.1:{port}{_PATHS[self.transport]}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{self.transport}-{self.port}.log").open("ab")
        self.process = subprocess.Popen(  # fixed argv, loopback only
            app_command("--transport", self.transport, "--port", str(self.port), *self.flags),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"upstream app exited with {self.process.returncode}; see {self.log_dir}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"upstream app on port {self.port} not ready within {timeout}s")

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def kill(self) -> None:
        """SIGKILL: the abrupt outage the gateway must survive."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


@contextlib.contextmanager
def running_apps(*apps: AppProcess) -> Iterator[tuple[AppProcess, ...]]:
    """Start several apps concurrently (their start-up is mostly imports), stop them all at the end."""
    try:
        for app in apps:
            app.launch()
        for app in apps:
            app.wait_ready()
        yield apps
    finally:
        for app in apps:
            app.stop()


@dataclass
class Apps:
    http_json: AppProcess
    """Stateless streamable HTTP answering application/json (--stateless --json)."""
    http_session: AppProcess
    """Session-based streamable HTTP answering with event streams."""
    http_handshake_only: AppProcess
    """Session-based streamable HTTP that refuses 2026-07-28 like a server from before it."""
    sse: AppProcess
    websocket: AppProcess


@pytest.fixture(scope="session")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    logs = tmp_path_factory.mktemp("upstream-apps")
    group = Apps(
        http_json=AppProcess("streamable-http", logs, ("--stateless", "--json")),
        http_session=AppProcess("streamable-http", logs),
        http_handshake_only=AppProcess("streamable-http", logs, ("--handshake-only",)),
        sse=AppProcess("sse", logs),
        websocket=AppProcess("websocket", logs),
    )
    with running_apps(group.http_json, group.http_session, group.http_handshake_only, group.sse, group.websocket):
        yield group


AppFactory = Callable[..., AppProcess]
"""``make(transport, *flags)``: start an app owned by the test."""
ProxyFactory = Callable[[int], Awaitable["TcpProxy"]]
"""``await make(target_port)``: a started proxy to that port."""


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[AppFactory]:
    """Apps owned by one test (to be killed and restarted); all stopped at its end."""
    started: list[AppProcess] = []

    def make(transport: AppTransport, *flags: str) -> AppProcess:
        app = AppProcess(transport, tmp_path / "apps", flags)
        started.append(app)
        app.start()
        return app

    yield make
    for app in started:
        app.stop()


class TcpProxy:
    """A loopback TCP proxy in the test's event loop that can cut every open connection (a network blip)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def sever(self) -> None:
        """Reset every proxied connection, both sides, like a dropped network path."""
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()
        self._links.clear()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        link = (client_writer, upstream_writer)
        self._links.add(link)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(OSError):
                writer.close()

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        self._links.discard(link)


@pytest_asyncio.fixture
async def proxy_factory() -> AsyncIterator[ProxyFactory]:
    proxies: list[TcpProxy] = []

    async def make(target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_port)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it is dead for our purposes.
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[-1][:1] != "Z"
    return True
