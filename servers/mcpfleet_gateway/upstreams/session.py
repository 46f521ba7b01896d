"""Upstreams reached through an SDK ``ClientSession`` over one long-lived connection (SSE, WebSocket, stdio,
in-process).

One background task owns the connection: it enters the transport and the session, runs the initialize
handshake, and exits them again — anyio cancel scopes must be left in the task that entered them, so no request
ever does this. Requests from any task share the session (the SDK correlates responses by id). When the
connection drops (the transport's read stream ends: a closed socket, a dead subprocess) the owner tears the
session down and connects again with backoff; a request that finds no session wakes the owner at once and waits
for that attempt, bounded by ``timeouts.connect``. Reconnecting before a request is sent is safe for any tool;
only the circuit breaker stops a dead upstream from being dialled on every call.

The handshake revisions are spoken on these transports, so servers may announce
``notifications/tools/list_changed`` at any time; it triggers :attr:`Upstream.on_list_changed`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Final, Self

import anyio
import mcp_types as types
from mcp.client._transport import TransportStreams
from mcp.client.session import ClientSession, IncomingMessage
from mcp.shared._stream_protocols import ReadStream
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED
from pydantic import ValidationError

from mcpfleet_gateway.upstreams.base import CLIENT_INFO, ResultT, Upstream
from mcpfleet_gateway.upstreams.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRPCError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcpfleet_gateway.upstreams.metrics import UpstreamMetrics
from mcpfleet_gateway.upstreams.spec import UpstreamSpec

logger = logging.getLogger(__name__)

RECONNECT_MIN_SECONDS: Final = 0.1
RECONNECT_MAX_SECONDS: Final = 10.0
CLOSE_GRACE_SECONDS: Final = 5.0

_REQUEST_TYPES: Final[dict[str, type[types.Request[Any, Any]]]] = {
    "tools/list": types.ListToolsRequest,
    "tools/call": types.CallToolRequest,
    "resources/list": types.ListResourcesRequest,
    "resources/read": types.ReadResourceRequest,
    "prompts/list": types.ListPromptsRequest,
    "prompts/get": types.GetPromptRequest,
    "ping": types.PingRequest,
}


class _WatchedReadStream:
    """The transport's read stream, reporting when it ends (the connection is gone)."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], on_end: asyncio.Event) -> None:
        self._inner = inner
        self._on_end = on_end
        self.ended = False

    @property
    def last_context(self) -> Any:
        # The dispatcher reads the sender's context snapshot off the stream when the transport provides one.
        return getattr(self._inner, "last_context", None)

    def _end(self) -> None:
        self.ended = True
        self._on_end.set()

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._end()
            raise

    async def aclose(self) -> None:
        self._end()
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> bool | None:
        await self.aclose()
        return None


class SessionUpstream(Upstream):
    """Base of the ClientSession transports; a subclass only says how to open its transport streams."""

    def __init__(self, name: str, spec: UpstreamSpec, metrics: UpstreamMetrics | None = None) -> None:
        super().__init__(name, spec, metrics)
        self._session: ClientSession | None = None
        self._owner: asyncio.Task[None] | None = None
        self._signal = asyncio.Event()  # wakes the owner: connection ended, a request wants a connection, or stop
        self._stop_requested = False
        self._connect_attempt: asyncio.Future[ClientSession | UpstreamError] | None = None
        self.connects = 0
        """How many times a session was established (for diagnostics and tests)."""

    @abc.abstractmethod
    async def _connect(self, stack: AsyncExitStack) -> TransportStreams:
        """Open the transport inside ``stack`` (exited by the owner task) and return its streams."""

    def _describe(self, exc: BaseException) -> str:
        """A one-line reason for a failed connect."""
        leaves = _leaf_exceptions(exc)
        return "; ".join(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__ for e in leaves[:3])

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def _open(self) -> None:
        self._stop_requested = False
        self._owner = asyncio.create_task(self._own(), name=f"upstream-session-{self.name}")
        # Give the first connect its chance, but an unreachable upstream does not fail the start.
        with contextlib.suppress(UpstreamError):
            await self._get_session(self.spec.timeouts.connect)

    async def _close(self) -> None:
        self._stop_requested = True
        self._signal.set()
        owner, self._owner = self._owner, None
        if owner is not None:
            done, _ = await asyncio.wait({owner}, timeout=CLOSE_GRACE_SECONDS)
            if not done:
                owner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await owner
        self._settle_attempt(UpstreamUnavailable(self.name, "closed"))

    def _stopping(self) -> bool:
        # A method, not an attribute read: it changes while the owner awaits.
        return self._stop_requested

    @property
    def connected(self) -> bool:
        return self._session is not None

    # -- the owner task ------------------------------------------------------------------------------------------

    async def _own(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while not self._stopping():
            self._signal.clear()
            established = False
            try:
                async with AsyncExitStack() as stack:
                    read_stream, write_stream = await self._connect(stack)
                    watched = _WatchedReadStream(read_stream, self._signal)
                    # No session-wide read timeout: every request carries its own deadline (see _send).
                    session = ClientSession(
                        watched, write_stream, message_handler=self._on_message, client_info=CLIENT_INFO
                    )
                    await stack.enter_async_context(session)
                    async with asyncio.timeout(self.spec.timeouts.connect):
                        await session.initialize()
                    self._session = session
                    established = True
                    self.connects += 1
                    delay = RECONNECT_MIN_SECONDS
                    self._reached()
                    self._settle_attempt(session)
                    logger.info("upstream %s: session established", self.name)
                    while not (watched.ended or self._stopping()):
                        await self._signal.wait()
                        self._signal.clear()
                    # Down from this moment, not only once the transport is torn down (a subprocess may take a
                    # while to be reaped).
                    self._session = None
                    if not self._stopping():
                        self._mark_down("the connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if established:
                    logger.debug("upstream %s: connection ended with %s", self.name, self._describe(exc))
                    if not self._stopping():
                        self._mark_down(f"the connection was closed: {self._describe(exc)}")
                else:
                    failure = self._connect_failure(exc)
                    self._mark_down(str(failure))
                    self._settle_attempt(failure)
                    logger.warning("upstream %s: %s", self.name, failure)
            finally:
                self._session = None
            if self._stopping():
                break
            if established:
                logger.warning("upstream %s: connection lost; reconnecting", self.name)
            await self._back_off(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _back_off(self, delay: float) -> None:
        """Wait ``delay`` before dialling again, unless a request asks for a connection now. While the breaker is
        open nobody dials: requests fail fast, and this loop waits until the breaker lets a probe through."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while not self._stopping() and self._connect_attempt is None:
            wait = until - loop.time()
            if self.breaker.state == "open":
                wait = max(wait, self.breaker.retry_in())
            if wait <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signal.wait(), wait)
            self._signal.clear()

    def _connect_failure(self, exc: BaseException) -> UpstreamError:
        if isinstance(exc, UpstreamError):
            return exc
        if isinstance(exc, TimeoutError):
            return UpstreamUnavailable(self.name, f"no answer to initialize within {self.spec.timeouts.connect:g}s")
        if isinstance(exc, MCPError) and exc.error.code != CONNECTION_CLOSED:
            return UpstreamProtocolError(self.name, f"initialize failed: {exc.error.message}")
        return UpstreamUnavailable(self.name, f"cannot connect: {self._describe(exc)}")

    def _settle_attempt(self, outcome: ClientSession | UpstreamError) -> None:
        attempt, self._connect_attempt = self._connect_attempt, None
        if attempt is not None and not attempt.done():
            attempt.set_result(outcome)

    async def _get_session(self, seconds: float) -> ClientSession:
        session = self._session
        if session is not None:
            return session
        if self._owner is None or self._owner.done():
            raise UpstreamUnavailable(self.name, "not started (or already closed)")
        if self._connect_attempt is None:
            self._connect_attempt = asyncio.get_running_loop().create_future()
        attempt = self._connect_attempt
        self._signal.set()
        try:
            outcome = await asyncio.wait_for(asyncio.shield(attempt), seconds)
        except TimeoutError:
            raise UpstreamUnavailable(self.name, f"no connection within {seconds:g}s") from None
        if isinstance(outcome, UpstreamUnavailable):
            # A fresh exception per waiter: one instance raised in many tasks would pile up their tracebacks.
            raise UpstreamUnavailable(self.name, outcome.reason)
        if isinstance(outcome, UpstreamProtocolError):
            raise UpstreamProtocolError(self.name, outcome.detail)
        if isinstance(outcome, UpstreamError):
            raise outcome
        return outcome

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            logger.debug("upstream %s: transport reported %r", self.name, message)
            return
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            self._list_changed()

    # -- requests ------------------------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        params: dict[str, Any] | None,
        result_type: type[ResultT],
        seconds: float,
        *,
        capabilities: dict[str, Any] | None = None,  # fixed at initialize on the handshake revisions spoken here
    ) -> ResultT:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        session = await self._get_session(min(seconds, self.spec.timeouts.connect))
        request: dict[str, Any] = {"method": method}
        if params is not None:
            request["params"] = params
        typed = _REQUEST_TYPES[method].model_validate(request, by_name=False)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise UpstreamTimeout(self.name, method, round(seconds, 3))
        try:
            async with asyncio.timeout(remaining):
                return await session.send_request(typed, result_type)
        except TimeoutError:
            raise UpstreamTimeout(self.name, method, round(seconds, 3)) from None
        except MCPError as exc:
            error = exc.error
            if error.code == CONNECTION_CLOSED and error.message == "Connection closed":
                raise UpstreamUnavailable(self.name, f"{method}: the connection was closed") from None
            raise UpstreamRPCError(error.code, error.message, error.data, upstream=self.name) from None
        except ValidationError as exc:
            raise UpstreamProtocolError(self.name, f"invalid {method} result: {exc.errors()[0]['msg']}") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise UpstreamUnavailable(self.name, f"{method}: connection failed: {exc!r}") from None

    async def _probe(self, seconds: float) -> None:
        await self._send("ping", None, types.EmptyResult, seconds)


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[BaseException] = []
        for inner in exc.exceptions:
            leaves.extend(_leaf_exceptions(inner))
        return leaves
    return [exc]
