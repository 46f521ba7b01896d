"""Serving a FleetServer: module start, uvicorn in the current loop, stdio beside HTTP probes, SIGTERM, SIGHUP.

One asyncio loop holds everything. For stdio the MCP frames own stdout, so logs go to stderr and
/health, /ready and /metrics are still served over HTTP on MCP_PORT (the operator probes them).
SIGHUP reads the settings again from where they came from (the environment, the config file, the
command line's values) and applies what can change while serving; bad settings change nothing.

A stop (SIGTERM, SIGINT) first ends the streams that never end by themselves (streamable HTTP's GET stream,
2026-07-28 ``subscriptions/listen`` streams, SSE-transport sessions once their calls are answered), so
clients see a clean end and reconnect elsewhere, then waits for the requests in flight, bounded by
GRACEFUL_SHUTDOWN_SECONDS; what still runs then is cut, with one log line (StreamDrain).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import parse_qs

import anyio
import anyio.to_thread
import uvicorn
from mcp.server.subscriptions import ListenHandler
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcpfleet_servers.base.app import FleetServer
from mcpfleet_servers.base.module import SettingsRejected
from mcpfleet_servers.base.redact import install_log_redaction
from mcpfleet_servers.base.settings import (
    SSE_MESSAGE_PATH,
    ConfigFileError,
    ServerSettings,
    TransportName,
    settings_error_lines,
)

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
CLOSE_TIMEOUT_SECONDS = 10.0
GRACEFUL_SHUTDOWN_SECONDS = 5
CUT_SECONDS = 2.0  # for requests cut at the bound to unwind
_DRAIN_POLL_SECONDS = 0.05
_LISTEN_METHOD = "subscriptions/listen"
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


@dataclass(eq=False)
class _Request:
    """One HTTP request being served, as the drain sees it."""

    label: str  # method and path, for the log
    standing: bool  # a stream that never ends by itself
    listen: bool  # a 2026-07-28 subscriptions/listen stream
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    sse_session: str | None = None  # an SSE-transport session's id, once its stream announced it
    started: bool = False
    complete: bool = False
    ended: bool = False  # cut by the drain

    def end(self) -> None:
        self.ended = True
        self.scope.cancel()


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _sse_data(chunk: bytes) -> list[str]:
    """The data lines of the server-sent events in one body chunk (the SDK writes one event per chunk)."""
    lines = (line.rstrip(b"\r") for line in chunk.split(b"\n"))
    return [line[5:].strip().decode("utf-8", "replace") for line in lines if line.startswith(b"data:")]


class StreamDrain:
    """ASGI middleware through which a stop ends the streams clients hold open before uvicorn waits for them.

    uvicorn on its own waits for every open connection up to its graceful timeout and then cancels them
    (a traceback each), and only afterwards runs the lifespan shutdown where the SDK would end its streams:
    a client holding a stream always costs the whole timeout. ``drain()`` instead ends, right away, the
    standing streams: a GET that asked for ``text/event-stream`` (streamable HTTP's standalone stream) and
    ``subscriptions/listen`` (through the SDK's ListenHandler.close() when given, so the client gets the
    closing result). An SSE-transport session's stream also carries the answers to the calls posted to it,
    so it ends once every request posted to the session has been answered on it. Other requests (a tool
    call) may finish within the bound; whatever still runs then is cut with one log line, its response
    completed (503, or the end of a stream already started) rather than left to uvicorn's cancellation.
    """

    def __init__(self, app: ASGIApp, *, messages_path: str | None = None, listen: ListenHandler | None = None) -> None:
        self.app = app
        self.messages_path = messages_path
        self.listen = listen
        self._requests: set[_Request] = set()
        # Per open SSE-transport session: the ids of requests posted to it and not answered on its stream yet.
        self._unanswered: dict[str, set[Any]] = {}
        self._none_left: anyio.Event | None = None  # set by the last request to finish once draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        mcp_method = _header(scope, b"mcp-method")
        request = _Request(
            label=f"{method} {scope['path']}" + (f" ({mcp_method})" if mcp_method else ""),
            standing=(method == "GET" and "text/event-stream" in _header(scope, b"accept"))
            or mcp_method == _LISTEN_METHOD,
            listen=mcp_method == _LISTEN_METHOD,
        )
        if method == "POST" and self.messages_path is not None and scope["path"].startswith(self.messages_path):
            receive = self._posted_to_session(scope, receive)
        self._requests.add(request)
        try:
            with request.scope:
                await self.app(scope, receive, self._tracked(request, send))
            if request.ended:
                await self._complete(request, send)
        finally:
            self._requests.discard(request)
            if request.sse_session is not None:
                self._unanswered.pop(request.sse_session, None)
            if not self._requests and self._none_left is not None:
                self._none_left.set()

    def _tracked(self, request: _Request, send: Send) -> Send:
        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                request.started = True
            elif message["type"] == "http.response.body":
                if request.standing and self.messages_path is not None:
                    self._answered_on_stream(request, message.get("body", b""))
                request.complete = not message.get("more_body", False)
            await send(message)

        return tracked_send

    def _posted_to_session(self, scope: Scope, receive: Receive) -> Receive:
        """Notes the id of a request posted to an open SSE-transport session (its answer comes on the stream)."""
        session = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_id") or [""])[0]
        body = bytearray()

        async def noting_receive() -> Message:
            message = await receive()
            unanswered = self._unanswered.get(session)
            if message["type"] == "http.request" and unanswered is not None:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    posted = _json_object(bytes(body))
                    if posted.get("method") not in (None, _LISTEN_METHOD) and "id" in posted:
                        unanswered.add(posted["id"])
            return message

        return noting_receive

    def _answered_on_stream(self, request: _Request, chunk: bytes) -> None:
        for data in _sse_data(chunk):
            if request.sse_session is None and "session_id=" in data and data.startswith("/"):
                # The SSE transport's first event: where to post, naming the session.
                query = data.split("?", 1)[1] if "?" in data else ""
                request.sse_session = (parse_qs(query).get("session_id") or [""])[0]
                self._unanswered[request.sse_session] = set()
                continue
            answered = _json_object(data.encode())
            if request.sse_session is not None and "method" not in answered and "id" in answered:
                self._unanswered.get(request.sse_session, set()).discard(answered["id"])

    @staticmethod
    async def _complete(request: _Request, send: Send) -> None:
        """A clean end for a response the drain cut: the client sees the stream end, or a 503."""
        with contextlib.suppress(OSError):  # the client went away meanwhile
            if not request.started:
                await send({"type": "http.response.start", "status": 503, "headers": [(b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
            elif not request.complete:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _may_end(self, request: _Request) -> bool:
        if not request.standing or request.ended or (request.listen and self.listen is not None):
            return False
        return request.sse_session is None or not self._unanswered.get(request.sse_session)

    async def drain(self, within: float) -> None:
        """End the standing streams, wait up to ``within`` s for the other requests, then cut what still runs."""
        self._none_left = anyio.Event()
        logger.info(
            "stopping: ending %d open stream(s) (an SSE session once its calls are answered); "
            "requests in flight get up to %g s",
            sum(request.standing for request in self._requests),
            within,
        )
        with anyio.move_on_after(within):
            while self._requests:
                if self.listen is not None and any(request.listen for request in self._requests):
                    self.listen.close()  # each listen stream sends its closing result and ends
                for request in list(self._requests):
                    if self._may_end(request):
                        request.end()
                await anyio.sleep(_DRAIN_POLL_SECONDS)
        if not self._requests:
            return
        running = sorted(request.label for request in self._requests)
        logger.warning(
            "stopping: cut %d request(s) still running after %g s: %s",
            len(running),
            within,
            ", ".join(running[:10]) + (" …" if len(running) > 10 else ""),
        )
        for request in list(self._requests):
            request.end()
        with anyio.move_on_after(CUT_SECONDS):
            await self._none_left.wait()


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class OwnSignalsUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns SIGTERM (here for MCP and probes alike; the
    gateway's runner uses it too). With a StreamDrain around the app, shutting down ends the open streams
    and waits for the requests in flight (bounded) before uvicorn's own wait, which then finds little left."""

    def __init__(self, config: uvicorn.Config, drain: StreamDrain | None = None) -> None:
        super().__init__(config)
        self.drain = drain

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.drain is not None:
            # No new connection, and no new request on a kept-alive one, while the streams end: a client
            # reconnecting must reach another replica, not this one.
            for server in self.servers:
                server.close()
            for connection in list(self.server_state.connections):
                connection.shutdown()
            await self.drain.drain(float(self.config.timeout_graceful_shutdown or 0))
        await super().shutdown(sockets)

    async def wait_started(self) -> bool:
        """True once it listens; False when it gave up first (a taken port, a stop during start-up)."""
        while not self.started:
            if self.should_exit:
                return False
            await anyio.sleep(0.02)
        return True


class ServerRunner:
    """Runs one FleetServer until stop(): start the module, serve, close the module."""

    def __init__(self, server: FleetServer, *, graceful_shutdown_seconds: int = GRACEFUL_SHUTDOWN_SECONDS) -> None:
        self.server = server
        self.settings = server.settings
        self.graceful_shutdown_seconds = graceful_shutdown_seconds
        self.serving = anyio.Event()
        self._http: OwnSignalsUvicorn | None = None
        self._stdio: anyio.CancelScope | None = None
        self._reload_wanted = anyio.Event()

    def stop(self) -> None:
        """Graceful: open streams end, requests in flight finish (bounded, StreamDrain), stdio stops reading."""
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
        drain = StreamDrain(
            self.server.http_app(),
            messages_path=SSE_MESSAGE_PATH if settings.transport == TransportName.SSE else None,
            listen=self.server.listen_handler,
        )
        config = uvicorn.Config(
            drain,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=settings.debug,
            lifespan="on",
            timeout_graceful_shutdown=self.graceful_shutdown_seconds,
        )
        self._http = OwnSignalsUvicorn(config, drain)
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


async def serve_until_signalled(
    server: FleetServer, *, graceful_shutdown_seconds: int = GRACEFUL_SHUTDOWN_SECONDS
) -> None:
    """The process main: serve until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads the settings."""
    runner = ServerRunner(server, graceful_shutdown_seconds=graceful_shutdown_seconds)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.stop)
    loop.add_signal_handler(signal.SIGHUP, runner.request_reload)
    try:
        await runner.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def run_server(server: FleetServer, *, graceful_shutdown_seconds: int = GRACEFUL_SHUTDOWN_SECONDS) -> None:
    """Blocking entry point for `mcpfleet server` (and test entry points)."""
    asyncio.run(serve_until_signalled(server, graceful_shutdown_seconds=graceful_shutdown_seconds))
