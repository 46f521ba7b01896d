"""Serving a FleetServer: module start, uvicorn in the current loop, stdio beside HTTP probes, SIGTERM.

One asyncio loop holds everything. For stdio the MCP frames own stdout, so logs go to stderr and
/health, /ready and /metrics are still served over HTTP on MCP_PORT (the operator probes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Generator
from typing import IO

import anyio
import uvicorn

from mcpfleet_servers.base.app import FleetServer
from mcpfleet_servers.base.redact import install_log_redaction
from mcpfleet_servers.base.report import PodReporter
from mcpfleet_servers.base.settings import ServerSettings, TransportName

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
CLOSE_TIMEOUT_SECONDS = 10.0
GRACEFUL_SHUTDOWN_SECONDS = 5
_SERVER_LOGGERS = ("mcpfleet_servers", "mcp", "uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(settings: ServerSettings, stream: IO[str] | None = None) -> logging.Handler:
    """Logs to stderr (never stdout: stdio's MCP frames live there), redacted, at MCP_LOG_LEVEL."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    install_log_redaction(handler, *(logging.getLogger(name) for name in _SERVER_LOGGERS))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    return handler


class OwnSignalsUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns SIGTERM (here for MCP and probes alike; the
    gateway's runner uses it too)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def wait_started(self) -> bool:
        """True once it listens; False when it gave up first (a taken port, a stop during start-up)."""
        while not self.started:
            if self.should_exit:
                return False
            await anyio.sleep(0.02)
        return True


class ServerRunner:
    """Runs one FleetServer until stop(): start the module, serve, close the module."""

    def __init__(self, server: FleetServer) -> None:
        self.server = server
        self.settings = server.settings
        self.serving = anyio.Event()
        self._http: OwnSignalsUvicorn | None = None
        self._stdio: anyio.CancelScope | None = None

    def stop(self) -> None:
        """Graceful: uvicorn finishes open requests (bounded), stdio stops reading."""
        self.server.state.started = False
        if self._http is not None:
            self._http.should_exit = True
        if self._stdio is not None:
            self._stdio.cancel()

    @property
    def port(self) -> int:
        """The bound port (useful with MCP_PORT 0 in tests)."""
        if self._http is None or not self._http.servers:
            raise RuntimeError("the server is not listening yet")
        return int(self._http.servers[0].sockets[0].getsockname()[1])

    async def run(self) -> None:
        module = self.server.module
        with anyio.fail_after(START_TIMEOUT_SECONDS):
            await module.start()
        self.server.state.started = True
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._report_tools)
                await self._serve()
                group.cancel_scope.cancel()
        finally:
            self.server.state.started = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_SECONDS):
                await module.close()

    async def _report_tools(self) -> None:
        """Contract 2: in a Pod, write the tool list's digest and names on it (the operator's trigger)."""
        settings = self.settings
        if not (settings.pod_name and settings.pod_namespace):
            return
        try:
            listed = await self.server.mcp.list_tools()
            tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed]
            await PodReporter(settings.pod_namespace, settings.pod_name).report(tools)
        except Exception:  # the report is a trigger for the operator, never a reason to stop serving
            logger.exception("tool report failed")

    async def _serve(self) -> None:
        settings = self.settings
        config = uvicorn.Config(
            self.server.http_app(),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=settings.debug,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        self._http = OwnSignalsUvicorn(config)
        async with anyio.create_task_group() as group:
            group.start_soon(self._http.serve)
            if not await self._http.wait_started():
                return
            if settings.transport == TransportName.STDIO:
                logger.info("MCP over stdio; probes on http://%s:%d", settings.host, self.port)
                self.serving.set()
                with anyio.CancelScope() as self._stdio:
                    await self.server.mcp.run_stdio_async()
                # stdin closed (the client is gone) or stop(): the probes go too.
                self._http.should_exit = True
            else:
                logger.info(
                    "MCP (%s) on http://%s:%d%s", settings.transport.value, settings.host, self.port, settings.mcp_path
                )
                self.serving.set()


@contextlib.asynccontextmanager
async def running(server: FleetServer) -> AsyncIterator[ServerRunner]:
    """Serve in the background for the block (tests, embedding); stops and closes on exit."""
    runner = ServerRunner(server)
    async with anyio.create_task_group() as group:
        group.start_soon(runner.run)
        with anyio.fail_after(START_TIMEOUT_SECONDS):
            await runner.serving.wait()
        try:
            yield runner
        finally:
            runner.stop()


async def serve_until_signalled(server: FleetServer) -> None:
    """The process main: serve until SIGTERM or SIGINT, then shut down gracefully."""
    runner = ServerRunner(server)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.stop)
    try:
        await runner.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run_server(server: FleetServer) -> None:
    """Blocking entry point for `mcpfleet server` (and test entry points)."""
    asyncio.run(serve_until_signalled(server))
