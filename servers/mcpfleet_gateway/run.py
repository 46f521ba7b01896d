"""Running the gateway: start the core, serve HTTP (or stdio), watch the config and catalog files, stop cleanly.

File reloads are polled, not pushed: a ConfigMap mounted in a Pod changes by a symlink swap that file-event
APIs report unreliably, and a stat costs microseconds, so even a poll every 50 ms is cheap. A config that
fails validation is logged and counted; the running one stays. (A catalog read from the ConfigMap through the
API is pushed by its watch, see catalog_watch.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import uvicorn

from mcpfleet_gateway.config import GatewayConfig, GatewaySettings, load_config
from mcpfleet_gateway.config_store import ConfigInvalid
from mcpfleet_gateway.gateway import Gateway
from mcpfleet_gateway.selfconfig import self_config_tools
from mcpfleet_gateway.server import build_app, initialization_options
from mcpfleet_servers.base.run import OwnSignalsUvicorn, StreamDrain

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 10
UPSTREAM_REFRESH_SECONDS = 15.0


Stamp = tuple[int, int, int, int] | None
_UNSEEN: Stamp = (-1, -1, -1, -1)


def _stamp(path: Path | None) -> Stamp:
    """Identity and version of the file a path leads to: (device, inode, mtime_ns, size), None when absent.

    os.stat follows symlinks, so the kubelet's swap of a mounted ConfigMap's ``..data`` link shows as a new
    inode of the resolved file even when the size and the second of the change are the same.
    """
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


@dataclass
class Watcher:
    gateway: Gateway

    async def run(self) -> None:
        # Re-listing upstreams can take a list timeout; it must not hold up noticing a changed file.
        async with anyio.create_task_group() as group:
            group.start_soon(self._refresh_upstreams)
            await self._poll_files()

    async def _poll_files(self) -> None:
        settings = self.gateway.settings
        # Nothing counts as seen at first: a file changed between the gateway's start and the first poll is
        # read once more (a no-op when it did not change) instead of being missed.
        config_seen, catalog_seen = _UNSEEN, _UNSEEN
        while True:
            await asyncio.sleep(self.gateway.config.catalog.poll_seconds)
            stamp = _stamp(settings.config)
            if stamp != config_seen and settings.config is not None:
                config_seen = stamp
                await self._reload_config()
            catalog_path = self.gateway.config.catalog.path
            stamp = _stamp(catalog_path)
            if stamp != catalog_seen and catalog_path is not None:
                catalog_seen = stamp
                await self.gateway.reload_catalog()

    async def _refresh_upstreams(self) -> None:
        while True:
            await asyncio.sleep(UPSTREAM_REFRESH_SECONDS)
            await self.gateway.refresh_upstreams()

    async def _reload_config(self) -> None:
        settings = self.gateway.settings
        try:
            changed = await self.gateway.reload(lambda: load_config(settings))
        except (ConfigInvalid, OSError) as exc:
            log.error("config %s not reloaded, the running config stays: %s", settings.config, exc)
            self.gateway.metrics.reloads.labels(source="config", outcome="invalid").inc()
            return
        if changed:
            log.info("config %s reloaded", settings.config)


class GatewayRunner:
    def __init__(self, gateway: Gateway, *, graceful_shutdown_seconds: int = GRACEFUL_SHUTDOWN_SECONDS) -> None:
        self.gateway = gateway
        self.graceful_shutdown_seconds = graceful_shutdown_seconds
        self.serving = anyio.Event()
        self._http: OwnSignalsUvicorn | None = None
        self._stdio: anyio.CancelScope | None = None

    @property
    def port(self) -> int:
        if self._http is None or not self._http.servers:
            raise RuntimeError("the gateway is not listening yet")
        return int(self._http.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        listen = self.gateway.config.listen
        return f"http://{listen.host}:{self.port}{listen.mcp_path}"

    def stop(self) -> None:
        if self._http is not None:
            self._http.should_exit = True
        if self._stdio is not None:
            self._stdio.cancel()

    async def run(self, *, stdio: bool = False) -> None:
        gateway = self.gateway
        await gateway.start()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(Watcher(gateway).run)
                if stdio:
                    await self._serve_stdio()
                else:
                    await self._serve_http()
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(GRACEFUL_SHUTDOWN_SECONDS):
                await gateway.close()

    async def _serve_http(self) -> None:
        app, _, _ = build_app(self.gateway)
        listen = self.gateway.config.listen
        # Clients' GET streams and SSE sessions end first on a stop (the gateway serves no subscriptions/listen).
        drain = StreamDrain(app, messages_path=listen.messages_path)
        config = uvicorn.Config(
            drain,
            host=listen.host,
            port=listen.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            loop="none",
            http="httptools",
            timeout_graceful_shutdown=self.graceful_shutdown_seconds,
            limit_concurrency=None,
            backlog=2048,
        )
        self._http = OwnSignalsUvicorn(config, drain)
        async with anyio.create_task_group() as group:
            group.start_soon(self._http.serve)
            if not await self._http.wait_started():
                return
            log.info("gateway serving MCP on %s (REST under %s)", self.url, listen.rest_prefix)
            self.serving.set()

    async def _serve_stdio(self) -> None:
        from mcp.server.stdio import stdio_server  # noqa: PLC0415

        _, server, _sessions = build_app(self.gateway)
        self.serving.set()
        with anyio.CancelScope() as self._stdio:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, initialization_options(server))


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[GatewayRunner]:
    """Serve in the background for the block (tests, embedding); stops and closes on exit."""
    runner = GatewayRunner(gateway)
    async with anyio.create_task_group() as group:
        group.start_soon(runner.run)
        with anyio.fail_after(30):
            await runner.serving.wait()
        try:
            yield runner
        finally:
            runner.stop()


def build_gateway(settings: GatewaySettings, config: GatewayConfig) -> Gateway:
    return Gateway(config, settings, local_tools=self_config_tools)


async def serve_until_signalled(
    gateway: Gateway, *, stdio: bool = False, graceful_shutdown_seconds: int = GRACEFUL_SHUTDOWN_SECONDS
) -> None:
    runner = GatewayRunner(gateway, graceful_shutdown_seconds=graceful_shutdown_seconds)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.stop)
    try:
        await runner.run(stdio=stdio)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def configure_logging(settings: GatewaySettings) -> None:
    handler = logging.StreamHandler(sys.stderr)  # stdout belongs to MCP in stdio mode
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # One line per upstream HTTP request would drown the gateway's own log.
    for chatty in ("httpx2", "httpx", "mcp.client.sse", "mcp.client.streamable_http"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def run_gateway(settings: GatewaySettings, *, stdio: bool = False) -> None:
    """Blocking entry point of `mcpfleet gateway`; uvloop when available (it roughly halves per-call overhead)."""
    configure_logging(settings)
    config = load_config(settings)
    gateway = build_gateway(settings, config)
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        asyncio.run(serve_until_signalled(gateway, stdio=stdio))
    else:
        uvloop.run(serve_until_signalled(gateway, stdio=stdio))
