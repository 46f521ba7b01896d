"""The upstream interface the gateway programs against, and the policy every transport shares.

A transport implements four primitives — open, close, send one request, probe liveness — and this class adds
what must behave the same on every transport: deadlines, the circuit breaker, retries of safe calls, paginated
listing, health state and metrics. Transports register themselves by name (``class X(Upstream,
transport="sse")``) and :func:`build_upstream` looks the class up; nothing dispatches on transport strings.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, TypeVar, overload

import aiohttp
import mcp_types as types
from pydantic import BaseModel, Discriminator, RootModel, Tag, ValidationError

from mcpfleet_gateway.upstreams.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRPCError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcpfleet_gateway.upstreams.metrics import BoundUpstreamMetrics, CallOutcome, UpstreamMetrics
from mcpfleet_gateway.upstreams.resilience import BreakerState, CircuitBreaker, backoff_delays
from mcpfleet_gateway.upstreams.spec import Transport, UpstreamSpec

logger = logging.getLogger(__name__)

MAX_LIST_PAGES: Final = 100
"""Pages followed per listing; a paginator that never ends fails the listing instead of hanging it."""
MAX_LIST_ITEMS: Final = 10_000
"""Items accepted per listing."""
CLIENT_INFO: Final = types.Implementation(name="mcpfleet-gateway", version="0.1.0")

ResultT = TypeVar("ResultT", bound=BaseModel)
ListChangedHandler = Callable[[], Awaitable[None]]

FORM_ELICITATION: Final[dict[str, Any]] = {"elicitation": {"form": {}}}
"""The client capability a request advertises when the gateway's own client can answer a confirmation."""


@dataclass(frozen=True, slots=True)
class ClientInput:
    """What one tool call carries for a server that asks the user (2026-07-28 multi-round-trip requests).

    ``elicitation`` says the gateway can get an answer from its client; it is advertised upstream on the 2026-07-28
    revision only (the handshake revisions fix capabilities at ``initialize``). ``input_responses`` and
    ``request_state`` are a retry's answers and the upstream's opaque state, sent back verbatim.
    """

    elicitation: bool = False
    input_responses: dict[str, Any] | None = None
    request_state: str | None = None

    @property
    def is_retry(self) -> bool:
        return self.input_responses is not None or self.request_state is not None


def _answer_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "input_required" if value.get("resultType") == "input_required" else "complete"
    return "input_required" if isinstance(value, types.InputRequiredResult) else "complete"


class ToolCallAnswer(
    RootModel[
        Annotated[
            Annotated[types.CallToolResult, Tag("complete")]
            | Annotated[types.InputRequiredResult, Tag("input_required")],
            Discriminator(_answer_kind),
        ]
    ]
):
    """A ``tools/call`` answer: the result, or the upstream's request for client input (never an error)."""

    accepts_input_required: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class UpstreamHealth:
    up: bool
    """Whether the last health check or request reached the upstream."""
    breaker: BreakerState
    last_error: str | None
    """The last transport failure, kept after recovery for diagnosis."""
    checked_at: datetime | None
    """When ``up`` was last established (a health check or a change of state), UTC."""


def _outcome(exc: BaseException) -> CallOutcome:
    if isinstance(exc, UpstreamUnavailable):
        return "breaker-open" if exc.breaker_open else "unavailable"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamRPCError):
        return "rpc-error"
    return "protocol-error"


class Upstream(abc.ABC):
    """One upstream MCP server. ``start()`` before use, ``close()`` at the end; calls may run concurrently."""

    transport: ClassVar[Transport]
    _registry: ClassVar[dict[str, type[Upstream]]] = {}

    def __init_subclass__(cls, transport: Transport | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if transport is not None:
            if transport in Upstream._registry:
                raise TypeError(f"transport {transport!r} is already implemented by {Upstream._registry[transport]}")
            cls.transport = transport
            Upstream._registry[transport] = cls

    def __init__(self, name: str, spec: UpstreamSpec, metrics: UpstreamMetrics | None = None) -> None:
        self.name = name
        self.spec = spec
        self.prefix = spec.prefix or name
        self.on_list_changed: ListChangedHandler | None = None
        """Awaited (in its own task) when the upstream announces notifications/tools/list_changed."""
        self._metrics: BoundUpstreamMetrics | None = metrics.bind(name) if metrics is not None else None
        self.breaker = CircuitBreaker(
            spec.breaker.failure_threshold, spec.breaker.reset_seconds, on_change=self._breaker_changed
        )
        self._up = False
        self._last_error: str | None = None
        self._checked_at: datetime | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._health_http: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._started = False
        if self._metrics is not None:
            self._metrics.set_up(False)
            self._metrics.set_breaker_open(False)

    # -- transport primitives ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None:
        """Acquire what the transport needs. Must not raise because the upstream is unreachable right now."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release everything ``_open`` and later requests acquired."""

    @abc.abstractmethod
    async def _send(
        self,
        method: str,
        params: dict[str, Any] | None,
        result_type: type[ResultT],
        seconds: float,
        *,
        capabilities: dict[str, Any] | None = None,
    ) -> ResultT:
        """Send one request and return its validated result within ``seconds``.

        ``capabilities`` are client capabilities this one request advertises, where the revision in use declares
        them per request (2026-07-28); a transport that declares them once per connection ignores them.

        Raises only :class:`UpstreamError` subclasses: unreachable/dropped → ``UpstreamUnavailable``, no answer in
        time → ``UpstreamTimeout``, a JSON-RPC error → ``UpstreamRPCError``, anything unusable →
        ``UpstreamProtocolError``.
        """

    @abc.abstractmethod
    async def _probe(self, seconds: float) -> None:
        """A cheap MCP liveness request (ping, or discover where ping does not exist)."""

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self._open()
        if self.spec.health.interval_seconds > 0:
            self._health_task = asyncio.create_task(self._health_loop(), name=f"upstream-health-{self.name}")

    async def close(self) -> None:
        self._started = False
        tasks = [t for t in (self._health_task, *self._background) if t is not None]
        self._health_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        if self._health_http is not None:
            await self._health_http.close()
            self._health_http = None
        await self._close()

    async def __aenter__(self) -> Upstream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- MCP operations ----------------------------------------------------------------------------------------

    async def list_tools(self) -> list[types.Tool]:
        return await self._list_all("tools/list", types.ListToolsResult, lambda page: page.tools)

    async def list_resources(self) -> list[types.Resource]:
        return await self._list_all("resources/list", types.ListResourcesResult, lambda page: page.resources)

    async def list_prompts(self) -> list[types.Prompt]:
        return await self._list_all("prompts/list", types.ListPromptsResult, lambda page: page.prompts)

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        return await self._request(
            "resources/read", {"uri": uri}, types.ReadResourceResult, self.spec.timeouts.list, retry=True
        )

    async def get_prompt(self, name: str, arguments: dict[str, str] | None = None) -> types.GetPromptResult:
        params: dict[str, Any] = {"name": name}
        if arguments:
            params["arguments"] = arguments
        return await self._request("prompts/get", params, types.GetPromptResult, self.spec.timeouts.list, retry=True)

    @overload
    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        retry: bool = False,
        client_input: None = None,
    ) -> types.CallToolResult: ...

    @overload
    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        retry: bool = False,
        client_input: ClientInput | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult: ...

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the call's deadline is part of the interface (retries share it)
        retry: bool = False,
        client_input: ClientInput | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Call a tool. A tool failure is a result with ``isError``; only failures to get an answer raise.

        ``timeout`` (default ``timeouts.call``) bounds the whole call, retries included. ``retry=True`` is for
        SAFE (read-only) tools only: transport failures and timeouts are retried with exponential backoff and
        jitter while the deadline allows; tool errors and JSON-RPC errors never are.

        An upstream that needs the user first (2026-07-28) answers an ``InputRequiredResult``; it is returned as
        it came, and never repeated here: only the caller can get the answers and call again with ``client_input``.
        Without ``client_input`` (a caller that relays nothing) such an answer is the upstream's protocol error.
        """
        params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
        capabilities: dict[str, Any] | None = None
        if client_input is not None:
            if client_input.input_responses is not None:
                params["inputResponses"] = client_input.input_responses
            if client_input.request_state is not None:
                params["requestState"] = client_input.request_state
            if client_input.elicitation:
                capabilities = FORM_ELICITATION
        started = time.perf_counter()
        outcome: CallOutcome | None = None
        try:
            answer = await self._request(
                "tools/call",
                params,
                ToolCallAnswer,
                timeout if timeout is not None else self.spec.timeouts.call,
                retry=retry,
                capabilities=capabilities,
            )
        except UpstreamError as exc:
            outcome = _outcome(exc)
            raise
        else:
            result = answer.root
            if isinstance(result, types.InputRequiredResult):
                outcome = "input-required"
            else:
                outcome = "tool-error" if result.is_error else "ok"
        finally:
            if self._metrics is not None and outcome is not None:
                self._metrics.call(outcome, time.perf_counter() - started)
        if client_input is None and isinstance(result, types.InputRequiredResult):
            raise UpstreamProtocolError(self.name, "tools/call needs client input, and this caller relays none")
        return result

    # -- health ----------------------------------------------------------------------------------------------

    def health(self) -> UpstreamHealth:
        return UpstreamHealth(
            up=self._up, breaker=self.breaker.state, last_error=self._last_error, checked_at=self._checked_at
        )

    async def check_health(self) -> UpstreamHealth:
        """Check now: GET ``health.url`` if configured, else an MCP liveness request. An open breaker is
        respected (no traffic until it half-opens); the check then serves as the half-open probe."""
        seconds = self.spec.health.timeout_seconds
        if self.breaker.allow():
            try:
                if self.spec.health.url is not None:
                    await self._get_health_url(self.spec.health.url, seconds)
                else:
                    await self._probe(seconds)
            except (UpstreamUnavailable, UpstreamTimeout) as exc:
                self._transport_failed(exc)
            except UpstreamError as exc:
                # It answered, just not as hoped (e.g. a JSON-RPC error to ping): reachable.
                self.breaker.record_success()
                self._reached()
                logger.info("upstream %s: health check answered with an error: %s", self.name, exc)
            except asyncio.CancelledError:
                self.breaker.release()
                raise
            else:
                self.breaker.record_success()
                self._reached()
        self._checked_at = datetime.now(UTC)
        return self.health()

    async def _get_health_url(self, url: str, seconds: float) -> None:
        if self._health_http is None:
            self._health_http = aiohttp.ClientSession(headers=self.spec.auth.http_headers())
        try:
            async with self._health_http.get(url, timeout=aiohttp.ClientTimeout(total=seconds)) as response:
                await response.read()
                if response.status >= 300:
                    raise UpstreamUnavailable(self.name, f"health check {url} answered HTTP {response.status}")
        except TimeoutError:
            raise UpstreamTimeout(self.name, f"GET {url}", seconds) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(self.name, f"health check {url} failed: {exc or type(exc).__name__}") from None

    async def _health_loop(self) -> None:
        interval = self.spec.health.interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_health()
            except Exception:
                logger.exception("upstream %s: health check crashed", self.name)

    # -- shared machinery --------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        params: dict[str, Any] | None,
        result_type: type[ResultT],
        seconds: float,
        *,
        retry: bool,
        capabilities: dict[str, Any] | None = None,
    ) -> ResultT:
        """One logical request: breaker, deadline over all attempts, retries of transport failures if allowed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        delays: Iterator[float] | None = None
        while True:
            try:
                return await self._attempt(method, params, result_type, deadline - loop.time(), capabilities)
            except (UpstreamUnavailable, UpstreamTimeout) as exc:
                if not retry or (isinstance(exc, UpstreamUnavailable) and exc.breaker_open):
                    raise
                if delays is None:
                    retries = self.spec.retries
                    delays = backoff_delays(retries.attempts, retries.backoff_seconds, retries.max_backoff_seconds)
                delay = next(delays, None)
                if delay is None or loop.time() + delay >= deadline:
                    raise
                logger.info("upstream %s: retrying %s in %.2fs after: %s", self.name, method, delay, exc)
                if self._metrics is not None:
                    self._metrics.retry()
                await asyncio.sleep(delay)

    async def _attempt(
        self,
        method: str,
        params: dict[str, Any] | None,
        result_type: type[ResultT],
        seconds: float,
        capabilities: dict[str, Any] | None = None,
    ) -> ResultT:
        if seconds <= 0:
            raise UpstreamTimeout(self.name, method, 0)
        breaker = self.breaker
        if not breaker.allow():
            raise UpstreamUnavailable(
                self.name, self._last_error or "too many recent failures", retry_in=breaker.retry_in()
            )
        try:
            result = await self._send(method, params, result_type, seconds, capabilities=capabilities)
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            self._transport_failed(exc)
            raise
        except UpstreamRPCError:
            breaker.record_success()
            self._reached()
            raise
        except BaseException:
            breaker.release()
            raise
        breaker.record_success()
        if not self._up:
            self._reached()
        return result

    async def _list_all(
        self, method: str, result_type: type[ResultT], items_of: Callable[[ResultT], list[Any]]
    ) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_LIST_PAGES):
            page = await self._request(
                method, {"cursor": cursor} if cursor else None, result_type, self.spec.timeouts.list, retry=True
            )
            items.extend(items_of(page))
            if len(items) > MAX_LIST_ITEMS:
                raise UpstreamProtocolError(self.name, f"{method} returned more than {MAX_LIST_ITEMS} items")
            cursor = getattr(page, "next_cursor", None)
            if not cursor:
                return items
            if cursor in seen:
                raise UpstreamProtocolError(self.name, f"{method} returned the cursor {cursor!r} twice")
            seen.add(cursor)
        raise UpstreamProtocolError(self.name, f"{method} did not end within {MAX_LIST_PAGES} pages")

    def _validate(self, method: str, raw: Any, result_type: type[ResultT]) -> ResultT:
        """Turn a raw result into its model; an unusable one is the upstream's protocol error."""
        if not isinstance(raw, dict):
            raise UpstreamProtocolError(self.name, f"{method} result is not an object")
        if raw.get("resultType") == "input_required" and not getattr(result_type, "accepts_input_required", False):
            raise UpstreamProtocolError(
                self.name, f"{method} needs client input, which the gateway relays for tools only"
            )
        try:
            return result_type.model_validate(raw, by_name=False)
        except ValidationError as exc:
            raise UpstreamProtocolError(self.name, f"invalid {method} result: {exc.errors()[0]['msg']}") from None

    def _transport_failed(self, exc: UpstreamError) -> None:
        self.breaker.record_failure()
        if isinstance(exc, UpstreamUnavailable):
            reason = exc.reason
        elif isinstance(exc, UpstreamTimeout):
            reason = f"no answer to {exc.operation} within {exc.seconds:g}s"
        else:
            reason = str(exc)
        self._mark_down(reason)

    def _mark_down(self, reason: str) -> None:
        self._last_error = reason
        if self._up:
            self._up = False
            self._checked_at = datetime.now(UTC)
            logger.warning("upstream %s is down: %s", self.name, reason)
            if self._metrics is not None:
                self._metrics.set_up(False)

    def _reached(self) -> None:
        if not self._up:
            self._up = True
            self._checked_at = datetime.now(UTC)
            logger.info("upstream %s is up", self.name)
            if self._metrics is not None:
                self._metrics.set_up(True)

    def _breaker_changed(self, state: BreakerState) -> None:
        logger.warning("upstream %s: circuit breaker %s", self.name, state)
        if self._metrics is not None:
            self._metrics.set_breaker_open(state != "closed")

    def _list_changed(self) -> None:
        """Run ``on_list_changed`` in its own task: the notification arrives on the connection's read path,
        which must not wait for the gateway to re-list (the re-list needs that same path)."""
        handler = self.on_list_changed
        if handler is None:
            return
        task = asyncio.create_task(self._run_list_changed(handler), name=f"upstream-list-changed-{self.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_list_changed(self, handler: ListChangedHandler) -> None:
        try:
            await handler()
        except Exception:
            logger.exception("upstream %s: on_list_changed failed", self.name)


def build_upstream(name: str, spec: UpstreamSpec, metrics: UpstreamMetrics | None = None) -> Upstream:
    """The upstream object for ``spec``, not yet started."""
    try:
        cls = Upstream._registry[spec.transport]
    except KeyError:
        raise ValueError(f"upstream {name}: no implementation for transport {spec.transport!r}") from None
    return cls(name, spec, metrics)


def registered_transports() -> dict[str, type[Upstream]]:
    return dict(Upstream._registry)
