"""Serving a FleetServer: module start, uvicorn in the current loop, stdio beside HTTP probes, SIGTERM, SIGHUP.

One asyncio loop holds everything. For stdio the MCP frames own stdout, so logs go to stderr and
/health, /ready and /metrics are still served over HTTP on MCP_PORT (the operator probes them).
SIGHUP reads the settings again from where they came from (the environment, the config file, the
command line's values) and applies what can change while serving; bad settings change nothing.
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
import anyio.to_thread
import uvicorn
from pydantic import ValidationError

from mcpfleet_servers.base.app import FleetServer
from mcpfleet_servers.base.module import SettingsRejected
from mcpfleet_servers.base.redact import install_log_redaction
from mcpfleet_servers.base.settings import ConfigFileError, ServerSettings, TransportName, settings_error_lines

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
        self._reload_wanted = anyio.Event()

    def stop(self) -> None:
        """Graceful: uvicorn finishes open requests (bounded), stdio stops reading."""
        self.server.state.started = False
        if self._http is not None:
            self._http.should_exit = True
        if self._stdio is not None:
            self._stdio.cancel()

    def request_reload(self) -> None:
        """Ask for a settings reload (the SIGHUP handler); requests made while one runs become one more."""
        self._reload_wanted.set()

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
                group.start_soon(self._first_refresh)
                group.start_soon(self._reload_when_asked)
                await self._serve()
                group.cancel_scope.cancel()
        finally:
            self.server.state.started = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_SECONDS):
                await module.close()
                if self.server.reporter is not None:
                    await self.server.reporter.close()

    async def _first_refresh(self) -> None:
        """The same path as every later change: in a Pod this writes the first tool report (contract 2)."""
        try:
            await self.server.refresh_tools()
        except Exception:  # serving the tools built at start beats not serving
            logger.exception("tool refresh at start failed")

    async def _reload_when_asked(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted = anyio.Event()
            await self.reload()

    async def reload(self) -> bool:
        """Read the settings again from their sources and serve with them; False (logged) when they are bad,
        and then nothing changed: the previous settings and tools stay."""
        running = self.server.settings
        source = running.config_file.source if running.config_file is not None else None
        try:
            settings = await anyio.to_thread.run_sync(running.reload)  # reads the file: off the loop
        except ConfigFileError as exc:
            return self._rejected([str(exc)])
        except ValidationError as exc:
            return self._rejected(settings_error_lines(exc, running.config_file))
        kind = settings.config_file.type if settings.config_file is not None else None
        if kind not in (None, self.server.module.type_name):
            return self._rejected([f"{source} is now for type {kind}, not {self.server.module.type_name}"])
        try:
            refresh = await self.server.reconfigure(settings)
        except SettingsRejected as exc:
            return self._rejected(exc.lines)
        except Exception:
            logger.exception("settings reload failed; serving on with the tools served before")
            return False
        where = f"the environment and {source}" if source is not None else "the environment"
        logger.info("settings reloaded from %s: %d tools served (%s)", where, len(self.server.tools), refresh.digest)
        return True

    @staticmethod
    def _rejected(problems: list[str]) -> bool:
        for problem in problems:
            logger.error("settings not reloaded: %s", problem)
        logger.error("serving on with the previous settings and tools; fix the value and send SIGHUP again")
        return False

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
    """The process main: serve until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads the settings."""
    runner = ServerRunner(server)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.stop)
    loop.add_signal_handler(signal.SIGHUP, runner.request_reload)
    try:
        await runner.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def run_server(server: FleetServer) -> None:
    """Blocking entry point for `mcpfleet server` (and test entry points)."""
    asyncio.run(serve_until_signalled(server))
