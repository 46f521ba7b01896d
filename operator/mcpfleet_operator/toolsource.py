"""Listing an MCP server's tools over the network: the operator's confirmation of a pod's tool report (contract 2)
and its watch on the tool list of an external server (``spec.endpoint``).

Both go through the SDK's client. Streamable HTTP negotiates the protocol revision (2026-07-28 when the server
offers it, the initialize handshake otherwise); HTTP+SSE only knows the handshake. stdio cannot be reached over
the network and is refused as ``Unsupported``. Tools come back in the shape a server digests for its pod report
(``Tool.model_dump(mode="json", by_alias=True, exclude_none=True)``), so ``report.tools_digest`` of the result is
the digest the server reported when both see the same tools.

Every failure is classified here, once, into a :class:`ListFailed` whose message says what to check. Header values
(credentials) and the URL's userinfo and query never reach a message or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import mcp_types as types
from mcp.client.client import Client
from mcp.client.session import IncomingMessage, MessageHandlerFnT
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcpfleet_contracts.mcpserver import Transport
from mcpfleet_contracts.report import tools_digest

logger = logging.getLogger(__name__)

MAX_PAGES: Final = 50
"""tools/list pages followed at most; a server that keeps handing out cursors is not believed."""
MAX_TOOLS: Final = 2048
"""Tools accepted from one server at most (the catalog and the names annotation stay bounded)."""
BACKOFF_START_SECONDS: Final = 1.0
POLL_JITTER: Final = 0.2
"""Polls are spread by ±20% so watchers started together do not poll together."""
CLOSE_SECONDS: Final = 5.0
"""A graceful close (ending the server's session) may take this long, no longer."""
SSE_IDLE_SECONDS: Final = 300.0
"""A watcher's HTTP+SSE stream silent this long counts as dropped (servers send keep-alive comments)."""
DETAIL_CHARS: Final = 300

FailureReason = Literal["Unreachable", "Timeout", "HTTPError", "ProtocolError", "Unsupported", "TooManyTools"]


class ListFailed(Exception):
    """Listing the tools failed. ``reason`` is stable (fit for a condition's reason); ``message`` is for a person:
    what failed and what to check. ``status`` is the HTTP status of an ``HTTPError``.

    Reasons: ``Unreachable`` (connection refused, DNS, the connection dropped), ``Timeout`` (no answer in time),
    ``HTTPError`` (a non-2xx answer), ``ProtocolError`` (the endpoint does not speak MCP, or breaks it),
    ``Unsupported`` (stdio: not reachable over the network), ``TooManyTools`` (more than :data:`MAX_TOOLS`).
    """

    def __init__(self, reason: FailureReason, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason: str = reason
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"ListFailed({self.reason!r}, {self.message!r})"


# -- one-shot listing ----------------------------------------------------------------------------------------------


async def list_tools(
    url: str,
    transport: Transport,
    *,
    timeout: float,  # noqa: ASYNC109 - the caller's budget for the whole exchange; enforced with fail_after here
    headers: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The server's tools, all pages, over one MCP connection; the whole call (connect, handshake, pages, close)
    is bounded by ``timeout``. Raises :class:`ListFailed`."""
    if transport is Transport.STDIO:
        raise _unsupported(url)
    responses = _Responses()
    tools: list[dict[str, Any]] | None = None
    try:
        with anyio.fail_after(timeout):
            async with _connect(
                url, transport, request_seconds=timeout, headers=headers, responses=responses
            ) as client:
                tools = await _list_pages(client, url)
    except Exception as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Our caller cancelled us: the client turns that into broken-stream errors, which are not the
            # server's failure and must not be reported as one.
            raise asyncio.CancelledError from exc
        if tools is None:
            raise _classify(exc, url, transport, timeout, responses) from None
        # The listing is complete; only ending the session went wrong, which the server's idle timeout covers.
        logger.debug("tools of %s: closing failed: %r", _display(url), exc)
    if tools is None:  # fail_after cancelled the exchange without a failure reaching us
        raise _timeout(url, transport, timeout, "waiting for an answer")
    return tools


async def _list_pages(client: Client, url: str) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    cursors: set[str] = set()
    for _ in range(MAX_PAGES):
        result = await client.list_tools(cursor=cursor, cache_mode="bypass")
        tools.extend(tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in result.tools)
        if len(tools) > MAX_TOOLS:
            raise ListFailed(
                "TooManyTools",
                f"{_display(url)} lists more than {MAX_TOOLS} tools; split it into several servers",
            )
        cursor = result.next_cursor
        if not cursor:
            return tools
        if cursor in cursors:
            raise ListFailed(
                "ProtocolError",
                f"{_display(url)} handed out the tools/list cursor {cursor[:40]!r} twice; its paging loops",
            )
        cursors.add(cursor)
    raise ListFailed(
        "ProtocolError", f"{_display(url)} still had more tools/list pages after {MAX_PAGES}; its paging does not end"
    )


# -- watching an endpoint ------------------------------------------------------------------------------------------

ToolsCallback = Callable[[list[dict[str, Any]], str], Awaitable[None]]
ErrorCallback = Callable[[ListFailed], Awaitable[None]]


class EndpointWatcher:
    """Follows the tool list of an external MCP server: a long-lived connection listening for
    ``notifications/tools/list_changed``, plus a poll every ``poll_seconds`` with ±20% jitter (servers that are
    stateless or do not announce changes).

    Notifications: on 2026-07-28 connections a ``subscriptions/listen`` stream (re-opened with backoff when it
    drops); on handshake connections the session's own stream (the GET stream of streamable HTTP, the event stream
    of SSE; a stateless server has none, and polls alone find its changes). A stream that drops is noticed by the
    next listing at the latest.

    ``on_tools(tools, digest)`` is awaited after the first listing, whenever the digest changes, and after a
    failure streak ends (the endpoint is back, even with the same tools). When it raises, the listing counts as
    not delivered and the next listing offers it again. ``on_error(failure)`` is awaited when a failure streak
    begins and whenever the failure (reason or message) changes within it; repeats of the same failure are not
    reported again. Callbacks run in :meth:`run`'s task; exceptions they raise are logged, never end the watch.

    After a failure the watcher connects again with backoff (1 s, doubling, at most ``poll_seconds``). A connection
    that had listed successfully and then fails is replaced at once, without a report, at most once per
    ``poll_seconds`` (a server restart only ended our session). :meth:`trigger` lists now (also during a backoff);
    :meth:`stop` ends :meth:`run` promptly, closing the connection gracefully when it is idle. One run per watcher.
    """

    def __init__(
        self,
        url: str,
        transport: Transport,
        *,
        poll_seconds: float,
        timeout: float,
        on_tools: ToolsCallback,
        on_error: ErrorCallback,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if poll_seconds <= 0 or timeout <= 0:
            raise ValueError(f"poll_seconds ({poll_seconds}) and timeout ({timeout}) must be positive")
        self.url = url
        self.transport = transport
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self._headers = dict(headers or {})
        self._on_tools = on_tools
        self._on_error = on_error
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = False
        self._abort: anyio.CancelScope | None = None
        """What stop() cancels: a connection being established or a listing in flight (waits end on _wake)."""
        self._delivered: str | None = None
        self._failure: ListFailed | None = None
        self._backoff = min(BACKOFF_START_SECONDS, poll_seconds)
        self._listed = False
        self._last_quick_retry = -math.inf
        self._random = random.Random()

    def trigger(self) -> None:
        """List now (e.g. the MCPServer changed)."""
        self._wake.set()

    def stop(self) -> None:
        """End :meth:`run`: at once when connecting, listing or backing off, after a graceful close when idle."""
        self._stopping = True
        self._wake.set()
        if self._abort is not None:
            self._abort.cancel()

    async def run(self) -> None:
        """Watch until :meth:`stop`."""
        if self._running:
            raise RuntimeError(f"the watcher of {_display(self.url)} is already running")
        self._running = True
        try:
            if self.transport is Transport.STDIO:
                await self._report(_unsupported(self.url))
                while not self._stopping:
                    await self._wake.wait()
                    self._wake.clear()
                return
            await self._follow()
        finally:
            self._abort = None

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            failure = await self._connection()
            if failure is None:
                continue  # stopped
            if self._listed and loop.time() - self._last_quick_retry >= self.poll_seconds:
                # It worked until now: the server may only have dropped our session (a restart). Try afresh first.
                self._last_quick_retry = loop.time()
                logger.info("tools of %s: the connection failed (%s); connecting again", _display(self.url), failure)
                continue
            await self._report(failure)
            await self._pause(self._backoff)
            self._backoff = min(self._backoff * 2, self.poll_seconds)

    async def _connection(self) -> ListFailed | None:
        """One connection, listing on notifications, polls and triggers until it fails (the failure is returned)
        or stop() (None)."""
        self._listed = False
        responses = _Responses()
        try:
            with anyio.CancelScope(deadline=anyio.current_time() + self.timeout) as scope:
                self._abort = scope
                if self._stopping:
                    scope.cancel()
                async with _connect(
                    self.url,
                    self.transport,
                    request_seconds=self.timeout,
                    headers=self._headers,
                    responses=responses,
                    message_handler=self._on_message,
                    long_lived=True,
                ) as client:
                    scope.deadline = math.inf
                    self._abort = None
                    try:
                        await self._serve(client)
                    finally:
                        # Leaving: end the server's session gracefully, but never for long.
                        scope.deadline = anyio.current_time() + CLOSE_SECONDS
            if scope.cancelled_caught and not self._stopping:
                return _timeout(self.url, self.transport, self.timeout, "connecting")
            return None
        except Exception as exc:
            if self._stopping:
                logger.debug("tools of %s: closed with %r", _display(self.url), exc)
                return None
            return _classify(exc, self.url, self.transport, self.timeout, responses)
        finally:
            self._abort = None

    async def _serve(self, client: Client) -> None:
        async with anyio.create_task_group() as group:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                group.start_soon(self._listen, client)
            try:
                await self._relist(client)
                while not self._stopping:
                    await self._pause(self.poll_seconds * self._random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER))
                    if not self._stopping:
                        await self._relist(client)
            finally:
                group.cancel_scope.cancel()

    async def _relist(self, client: Client) -> None:
        with anyio.CancelScope() as scope:
            self._abort = scope
            if self._stopping:
                scope.cancel()
            try:
                with anyio.fail_after(self.timeout):
                    tools = await _list_pages(client, self.url)
            finally:
                self._abort = None
        if scope.cancelled_caught:
            return  # stopped
        self._listed = True
        self._backoff = min(BACKOFF_START_SECONDS, self.poll_seconds)
        digest = tools_digest(tools)
        if digest == self._delivered and self._failure is None:
            return
        try:
            await self._on_tools(tools, digest)
        except Exception:
            logger.exception(
                "tools of %s: on_tools failed; offering the list again at the next listing", _display(self.url)
            )
            return
        self._delivered = digest
        self._failure = None

    async def _listen(self, client: Client) -> None:
        """Keep a 2026-07-28 subscriptions/listen stream open; its events (teed to _on_message) wake the lister.
        A stream that ends is opened again with backoff, reset only by a stream that lasted a poll interval (a
        server that closes every stream at once must not make us list in a tight loop)."""
        initial = delay = min(BACKOFF_START_SECONDS, self.poll_seconds)
        while True:
            opened = math.inf
            try:
                async with AsyncExitStack() as stack:
                    with anyio.fail_after(self.timeout):
                        subscription = await stack.enter_async_context(client.listen(tools_list_changed=True))
                    if not subscription.honored.tools_list_changed:
                        logger.info("tools of %s: no change notifications; polling only", _display(self.url))
                        return
                    opened = anyio.current_time()
                    async for _event in subscription:
                        self._wake.set()
                logger.debug("tools of %s: the server closed the listen stream", _display(self.url))
            except ListenNotSupportedError:
                return
            except MCPError as exc:
                if exc.code == types.METHOD_NOT_FOUND:
                    logger.info("tools of %s: no subscriptions/listen; polling only", _display(self.url))
                    return
                logger.debug("tools of %s: listen failed: %s", _display(self.url), exc.error.message)
            except (SubscriptionLost, TimeoutError) as exc:
                logger.debug("tools of %s: listen stream lost: %r", _display(self.url), exc)
            except Exception as exc:  # the stream is only a hint: the listing it triggers finds out what broke
                logger.debug("tools of %s: listen stream failed: %r", _display(self.url), exc)
            if anyio.current_time() - opened >= self.poll_seconds:
                delay = initial
            self._wake.set()  # changes while nobody listened were not announced: list now
            await anyio.sleep(delay)
            delay = min(delay * 2, self.poll_seconds)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._wake.set()
        elif isinstance(message, Exception):
            # A transport fault: list now, which either works or tells what broke.
            logger.debug("tools of %s: transport reported %r", _display(self.url), message)
            self._wake.set()

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when woken (a notification, trigger() or stop())."""
        if not self._stopping:
            with anyio.move_on_after(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def _report(self, failure: ListFailed) -> None:
        previous, self._failure = self._failure, failure
        if previous is not None and (previous.reason, previous.message) == (failure.reason, failure.message):
            return
        logger.warning("tools of %s: %s", _display(self.url), failure)
        try:
            await self._on_error(failure)
        except Exception:
            logger.exception("tools of %s: on_error failed", _display(self.url))


# -- connections ---------------------------------------------------------------------------------------------------


class _Responses:
    """The last answer to a POST (an MCP message): its status and content type tell an HTTP or protocol failure
    apart, which the SDK reports only as a JSON-RPC error."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.content_type = ""

    async def record(self, response: httpx2.Response) -> None:
        if response.request.method == "POST":
            self.status = response.status_code
            self.content_type = response.headers.get("content-type", "").partition(";")[0].strip()

    @property
    def failed_status(self) -> int | None:
        return self.status if self.status is not None and not 200 <= self.status < 300 else None


@functools.cache
def _client_info() -> types.Implementation:
    try:
        version = importlib.metadata.version("mcpfleet")
    except importlib.metadata.PackageNotFoundError:
        version = "0.0.0"
    return types.Implementation(name="mcpfleet-operator", version=version)


@contextlib.asynccontextmanager
async def _connect(
    url: str,
    transport: Transport,
    *,
    request_seconds: float,
    headers: Mapping[str, str] | None,
    responses: _Responses,
    message_handler: MessageHandlerFnT | None = None,
    long_lived: bool = False,
) -> AsyncIterator[Client]:
    """An initialised client. Long-lived connections wait on their streams without a read timeout (every request
    is bounded by ``request_seconds`` on its own, and polls notice a silent death)."""
    hooks = {"response": [responses.record]}
    async with AsyncExitStack() as stack:
        streams: Any
        if transport is Transport.SSE:

            def http_client(
                headers: dict[str, str] | None = None,
                timeout: httpx2.Timeout | None = None,
                auth: httpx2.Auth | None = None,
            ) -> httpx2.AsyncClient:
                return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, event_hooks=hooks)

            streams = sse_client(
                url,
                headers=dict(headers or {}),
                timeout=request_seconds,
                sse_read_timeout=SSE_IDLE_SECONDS if long_lived else request_seconds,
                httpx_client_factory=http_client,
            )
            mode = "legacy"  # HTTP+SSE predates 2026-07-28
        else:
            http = httpx2.AsyncClient(
                headers=dict(headers or {}),
                timeout=httpx2.Timeout(request_seconds, read=None if long_lived else request_seconds),
                event_hooks=hooks,
            )
            await stack.enter_async_context(http)
            streams = streamable_http_client(url, http_client=http)
            mode = "auto"
        client = Client(
            streams,
            mode=mode,
            cache=None,  # polls must reach the server
            read_timeout_seconds=request_seconds,
            message_handler=message_handler,
            client_info=_client_info(),
        )
        yield await stack.enter_async_context(client)


# -- classification ------------------------------------------------------------------------------------------------


def _classify(exc: BaseException, url: str, transport: Transport, timeout: float, responses: _Responses) -> ListFailed:
    leaves = _leaves(exc)
    where = _display(url)
    for leaf in leaves:
        if isinstance(leaf, ListFailed):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, httpx2.HTTPStatusError):
            return _http_error(where, leaf.response.status_code, transport)
    if any(isinstance(leaf, TimeoutError | httpx2.TimeoutException) for leaf in leaves):
        if (status := responses.failed_status) is not None:
            return _http_error(where, status, transport)
        return _timeout(url, transport, timeout, "waiting for an answer")
    for leaf in leaves:
        if isinstance(leaf, httpx2.UnsupportedProtocol | httpx2.InvalidURL):
            return ListFailed(
                "ProtocolError", f"{where}: {_detail(leaf, url)}; the endpoint must be an http:// or https:// URL"
            )
        if isinstance(leaf, httpx2.SSEError | httpx2.LocalProtocolError):
            return _protocol_error(url, transport, leaf, responses)
        if isinstance(leaf, httpx2.TransportError | OSError):
            return _unreachable(where, _detail(leaf, url))
        if isinstance(leaf, MCPError) and leaf.code == types.CONNECTION_CLOSED and responses.failed_status is None:
            return _unreachable(where, leaf.error.message)
    if (status := responses.failed_status) is not None:
        return _http_error(where, status, transport)
    return _protocol_error(url, transport, leaves[0], responses)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _detail(exc: BaseException, url: str) -> str:
    """What went wrong, in one bounded line; the URL, wherever it appears, without its credentials."""
    if isinstance(exc, MCPError):
        text = exc.error.message
    elif isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        text = f"invalid result at {where}: {first['msg']}"
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    if url:
        text = text.replace(url, _display(url))
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def _unsupported(url: str) -> ListFailed:
    return ListFailed(
        "Unsupported",
        f"{_display(url)}: a stdio server cannot be listed over the network; serve it over streamable-http or sse",
    )


def _unreachable(where: str, detail: str) -> ListFailed:
    return ListFailed(
        "Unreachable", f"cannot reach {where}: {detail}; check that the server runs and the host and port are right"
    )


def _timeout(url: str, transport: Transport, timeout: float, doing: str) -> ListFailed:
    return ListFailed(
        "Timeout",
        f"{_display(url)} did not answer within {timeout:g}s ({doing}); check that the server is healthy and serves "
        f"MCP over {transport.value} at that path",
    )


def _http_error(where: str, status: int, transport: Transport) -> ListFailed:
    if status in (401, 403):
        hint = "check the credentials sent to it"
    elif status in (404, 405):
        hint = f"check the path and the transport ({transport.value})"
    elif 300 <= status < 400:
        hint = "redirects are followed only within the same origin; use the final URL"
    elif status >= 500:
        hint = "the server failed; check its logs"
    else:
        hint = f"check that it serves MCP over {transport.value} at that path"
    return ListFailed("HTTPError", f"{where} answered HTTP {status}; {hint}", status=status)


def _protocol_error(url: str, transport: Transport, leaf: BaseException, responses: _Responses) -> ListFailed:
    answered = responses.content_type
    if answered and answered not in ("application/json", "text/event-stream"):
        detail = f"it answered with {answered}, not MCP"
    else:
        detail = _detail(leaf, url)
    return ListFailed(
        "ProtocolError",
        f"{_display(url)} does not speak MCP over {transport.value}: {detail}; check the transport and the path",
    )


def _display(url: str) -> str:
    """The URL without userinfo, query or fragment (they may carry credentials)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "the endpoint (an invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))
