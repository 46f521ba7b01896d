"""A ServerModule turned into an MCP server: tools filtered by policy, every call governed the same way.

Each surviving tool is registered with the SDK through a wrapper whose ``__signature__`` is the tool
function's own (so its input schema is the function's) plus injected keyword parameters the SDK fills
itself through its Resolve API (which works with both protocol eras): for a tool with a ``risk_for`` hook,
the call's risk; for a tool some of whose calls need it, the user's confirmation (an elicitation, asked
only when the call's risk reaches the threshold, ``ConfirmationPolicy``). A call then goes: arguments
validated (bad → JSON-RPC -32602 naming the field), its risk assessed, confirmation, the body under a
timeout, errors classified, result redacted and measured against the output budget.

The tool list is not fixed: ``refresh_tools`` asks the module again (after ``reconfigure`` with reloaded
settings, or whenever a module's tools change), swaps the SDK's tools, tells connected clients
(``notifications/tools/list_changed``) and rewrites the Pod's tool report when the list changed.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import logging
import time
import typing
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.context import Context as _ContextClass
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool, ToolManager
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent, ToolAnnotations
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, is_version_at_least
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_contracts.report import tools_digest
from mcpfleet_servers.base.metrics import CONTENT_TYPE, ServerMetrics
from mcpfleet_servers.base.module import Reconfigurable, ServerModule
from mcpfleet_servers.base.policy import ConfirmationPolicy, raised_risk
from mcpfleet_servers.base.redact import redact_text, redact_value
from mcpfleet_servers.base.report import PodReporter, ReportOutcome
from mcpfleet_servers.base.settings import (
    SSE_MESSAGE_PATH,
    ServerSettings,
    TransportName,
    allowed_hosts,
    allowed_origins,
    dns_rebinding_disabled,
)
from mcpfleet_servers.base.toolkit import (
    BackendUnavailable,
    InvalidArgument,
    NotFound,
    Refused,
    ToolDef,
    ToolFailure,
    Toolset,
)

logger = logging.getLogger(__name__)

# The parameters the base adds to tools that may need a confirmation and to tools with a risk_for hook
# (filled by the SDK, never in the schema), and the one through which the confirmation resolver receives
# the request context.
CONFIRMATION_PARAM = "mcpfleet_confirmation"
RISK_PARAM = "mcpfleet_risk"
CONTEXT_PARAM = "mcpfleet_context"
READY_PROBE_TIMEOUT_SECONDS = 2.0
LIST_CHANGED_TIMEOUT_SECONDS = 2.0  # per connection: a stalled client must not hold up a refresh
_MODERN_PROTOCOL = "2026-07-28"
_CONFIRM_SUMMARY_CHARS = 600


class Confirmation(BaseModel):
    """What the user is asked before a call that needs confirmation (elicitation schemas hold primitives only)."""

    confirm: bool = Field(description="Run this call?")


def _version() -> str:
    try:
        return importlib.metadata.version("mcpfleet")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def invalid_params(field_name: str, message: str, **data: Any) -> MCPError:
    """The JSON-RPC error for a bad argument: message and data name the field."""
    return MCPError(
        code=INVALID_PARAMS,
        message=redact_text(f"Invalid params: {field_name}: {message}"),
        data=redact_value({"field": field_name, **data}),
    )


def invalid_params_from_validation(exc: ValidationError) -> MCPError:
    # Only locations and messages: the rejected values are the caller's data and may be secrets.
    errors = [
        {"field": ".".join(str(part) for part in err["loc"]) or "arguments", "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return invalid_params(first["field"], f"{first['message']}{more}", errors=errors)


class GovernedTool(Tool):
    """An SDK Tool whose argument validation failures are protocol errors, not tool results."""

    on_invalid: Callable[[str], None] | None = Field(default=None, exclude=True)

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        try:
            self.fn_metadata.validate_arguments(arguments)
        except ValidationError as exc:
            if self.on_invalid is not None:
                self.on_invalid(self.name)
            raise invalid_params_from_validation(exc) from exc
        return await super().run(arguments, context, convert_result=convert_result)


def can_confirm(ctx: Context[Any, Any]) -> bool:
    """Whether this client can show a confirmation (form elicitation) on this connection."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, _MODERN_PROTOCOL):
        return True  # asked through an input_required result, no back-channel needed
    # Legacy handshake: a mid-call request needs a back-channel (none on stateless HTTP).
    return bool(ctx.session.can_send_request)


def _filled_by_sdk(annotation: Any) -> bool:
    """A Context or a Resolve(...) parameter: the SDK fills it, the client never sends it."""
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        if any(isinstance(item, Resolve) for item in metadata):
            return True
        annotation = base
    candidates = typing.get_args(annotation) or (annotation,)
    return any(isinstance(c, type) and issubclass(c, _ContextClass) for c in candidates)


def _summary(arguments: dict[str, Any]) -> str:
    text = json.dumps(redact_value(arguments), ensure_ascii=False, default=str, sort_keys=True)
    if len(text) > _CONFIRM_SUMMARY_CHARS:
        return text[:_CONFIRM_SUMMARY_CHARS] + f"… ({len(text)} characters in all)"
    return text


def _advertise_tools_list_changed(result: dict[str, Any]) -> dict[str, Any]:
    """An initialize result whose tools capability says the list may change (MCPServer leaves it false)."""
    capabilities = result.get("capabilities")
    if not isinstance(capabilities, dict) or not isinstance(capabilities.get("tools"), dict):
        return result
    return {**result, "capabilities": {**capabilities, "tools": {**capabilities["tools"], "listChanged": True}}}


class ToolListAnnouncer:
    """Tells connected clients that the tool list changed, in both protocol eras.

    Handshake era: every connection the middleware has seen (stateful streamable HTTP, legacy SSE, stdio) is
    told on its standalone channel, the GET stream; the SDK drops the notice for a connection without one.
    2026-07-28 era: the event goes to the SDK's subscription bus, which serves ``subscriptions/listen``.
    The SDK hands handlers a new ServerSession per request, each reaching its connection, so one per
    connection is kept, keyed by the connection's initialize params (one object per connection): the most
    recently active first out of a bounded table; a connection that fails a notice is dropped.
    """

    MAX_CONNECTIONS = 1024

    def __init__(self, *, track_connections: bool) -> None:
        # Stateless HTTP has no connection outlasting a request: nothing to remember, nobody to tell.
        self.track_connections = track_connections
        self.bus = InMemorySubscriptionBus()
        self._sessions: OrderedDict[int, ServerSession] = OrderedDict()

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        self._remember(ctx)
        result = await call_next(ctx)
        if ctx.method == "initialize" and isinstance(result, dict):
            return _advertise_tools_list_changed(result)
        return result

    def _remember(self, ctx: ServerRequestContext[Any, Any]) -> None:
        params = ctx.session.client_params  # set once initialize succeeded, so from notifications/initialized on
        if not self.track_connections or params is None or ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return
        key = id(params)
        self._sessions[key] = ctx.session
        self._sessions.move_to_end(key)
        while len(self._sessions) > self.MAX_CONNECTIONS:
            self._sessions.popitem(last=False)

    async def announce(self) -> int:
        """Send notifications/tools/list_changed everywhere it can go; the number of connections told."""
        sessions = list(self._sessions.items())
        async with anyio.create_task_group() as group:
            for key, session in sessions:
                group.start_soon(self._tell, key, session)
        await self.bus.publish(ToolsListChanged())
        return len(sessions)

    async def _tell(self, key: int, session: ServerSession) -> None:
        try:
            with anyio.fail_after(LIST_CHANGED_TIMEOUT_SECONDS):
                await session.send_tool_list_changed()
        except Exception as exc:  # a client that went away: forget it, the others still hear of the change
            logger.debug("tools list_changed not delivered: %s", exc)
            self._sessions.pop(key, None)


@dataclass(frozen=True)
class ToolsRefresh:
    """What one refresh of the tool list did."""

    digest: str  # contract 2's digest of the tool list now served
    changed: bool  # the list differs from what clients saw before (so they were told)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    notified: int = 0  # handshake-era connections sent notifications/tools/list_changed
    report: ReportOutcome | None = None  # None: not in a Pod, or the Pod carries this digest already


@dataclass
class ServerState:
    started: bool = False


@dataclass
class FleetServer:
    """The MCP server of one module with its policy, metrics and HTTP routes."""

    module: ServerModule
    settings: ServerSettings
    metrics: ServerMetrics
    tools: list[ToolDef]  # served now, in the module's order
    # The module's confirmation threshold (its Toolset's confirm_from); MCP_CONFIRM_FROM overrides it.
    module_confirm_from: Risk | None = None
    mcp: MCPServer[Any] = field(init=False)
    security: TransportSecuritySettings = field(init=False)
    state: ServerState = field(default_factory=ServerState)
    announcer: ToolListAnnouncer = field(init=False)
    reporter: PodReporter | None = field(init=False)
    # Each served tool's definition, the confirmation policy and its SDK registration, reused while all stay the same.
    _governed: dict[str, tuple[ToolDef, ConfirmationPolicy, GovernedTool]] = field(init=False, default_factory=dict)
    _refresh_lock: anyio.Lock = field(init=False, default_factory=anyio.Lock)
    _listed_digest: str | None = field(init=False, default=None)  # what clients were last shown
    _reported_digest: str | None = field(init=False, default=None)  # what the Pod is known to carry

    def __post_init__(self) -> None:
        # Computed here, before any event loop serves: it may read /etc/hosts for the pod's own address.
        self.security = self.transport_security()
        settings = self.settings
        stateless = settings.stateless and settings.transport == TransportName.STREAMABLE_HTTP
        self.announcer = ToolListAnnouncer(track_connections=not stateless)
        self.reporter = (
            PodReporter(settings.pod_namespace, settings.pod_name)
            if settings.pod_name and settings.pod_namespace
            else None
        )
        confirmation = self.confirmation
        governed: list[Tool] = [self._governed_for(tool, confirmation) for tool in self.tools]
        self.mcp = MCPServer(
            name=settings.server_name or f"mcpfleet-{self.module.type_name}",
            instructions=self.module.instructions,
            version=_version(),
            tools=governed,
            debug=settings.debug,
            log_level=typing.cast(Any, settings.log_level),
            subscriptions=self.announcer.bus,
        )
        self.mcp.middleware.append(self.announcer.middleware)
        self.module.register_extras(self.mcp)
        for route in self.routes():
            self.mcp.custom_route(route.path, methods=sorted(route.methods or ("GET",)))(route.endpoint)
        self.metrics.tools.set(len(self.tools))

    # ------------------------------------------------------------ the tool list

    async def refresh_tools(self) -> ToolsRefresh:
        """Serve what ``module.toolset()`` and the policy give now; tell clients and the Pod when it changed.

        New tools are registered through the same governed wrapper, gone ones removed. When the listed tools'
        digest differs from what clients saw: notifications/tools/list_changed to every connection that can
        receive one. In a Pod, the report is written when the Pod does not carry this digest yet (a failed
        report is logged and tried again on the next refresh). Refreshes run one at a time. The first one
        (at start) tells no client: none has seen a list yet.
        """
        async with self._refresh_lock:
            return await self._refresh()

    async def reconfigure(self, settings: ServerSettings) -> ToolsRefresh:
        """Serve with reloaded settings: the module takes its part first, then the policy applies, then a refresh.

        The module may refuse (SettingsRejected, or any error): then nothing changes. RESTART_ONLY_FIELDS (the
        listener, the Pod identity, page budgets) keep their running values; a change there is logged.
        """
        async with self._refresh_lock:
            running = self.settings
            needs_restart = running.restart_only_changes(settings)
            if needs_restart:
                logger.warning(
                    "reloaded settings change %s: that needs a restart; running with the previous values of those",
                    ", ".join(f"{name} ({ServerSettings.env_name(name)})" for name in needs_restart),
                )
            effective = settings.keeping_restart_only(running)
            if isinstance(self.module, Reconfigurable):
                await self.module.reconfigure(effective, effective.config_file)
            old, new = running.model_dump(), effective.model_dump()
            changed = sorted(name for name in new if new[name] != old[name])
            self.settings = effective
            if changed:
                logger.info("settings reloaded; changed: %s", ", ".join(changed))
                self._governed.clear()  # wrappers read the policy (confirmation) when they are built
            return await self._refresh()

    async def listed_tools(self) -> list[dict[str, Any]]:
        """The tools as clients list them (wire form): what the report's digest is computed over."""
        return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in await self.mcp.list_tools()]

    async def _refresh(self) -> ToolsRefresh:
        toolset = self.module.toolset()
        wanted = served_tools(toolset, self.settings)
        confirmation = self.settings.confirmation_policy(toolset.confirm_from)
        # May raise: then nothing has changed yet.
        governed = [self._governed_for(tool, confirmation) for tool in wanted]
        before, names = {tool.name for tool in self.tools}, {tool.name for tool in wanted}
        self._install(governed)
        self.tools = wanted
        self.module_confirm_from = toolset.confirm_from
        self._governed = {name: entry for name, entry in self._governed.items() if name in names}
        self.metrics.tools.set(len(wanted))

        listed = await self.listed_tools()
        digest = tools_digest(listed)
        previous, self._listed_digest = self._listed_digest, digest
        changed = previous is not None and previous != digest
        added = tuple(tool.name for tool in wanted if tool.name not in before)
        removed = tuple(sorted(before - names))
        notified = 0
        if changed:
            notified = await self.announcer.announce()
            logger.info(
                "tool list changed (%d tools, %s): added %s, removed %s; told %d sessions and every listen stream",
                len(wanted),
                digest,
                ", ".join(added) or "none",
                ", ".join(removed) or "none",
                notified,
            )
        report = await self._report(listed, digest)
        return ToolsRefresh(digest, changed, added, removed, notified, report)

    def _install(self, governed: list[GovernedTool]) -> None:
        # MCPServer.add_tool builds a plain Tool from a function, which would lose GovernedTool's protocol
        # errors for bad arguments; its constructor takes Tool objects into a ToolManager. A new manager
        # swapped in whole is that same registration, and no request ever sees half a list.
        self.mcp._tool_manager = ToolManager(tools=list(governed))

    async def _report(self, listed: list[dict[str, Any]], digest: str) -> ReportOutcome | None:
        """Contract 2: in a Pod, its digest and names on it (the operator's trigger); never fatal."""
        if self.reporter is None or digest == self._reported_digest:
            return None
        try:
            outcome = await self.reporter.report(listed)
        except Exception:  # the report is a trigger for the operator, never a reason to stop serving
            logger.exception("tool report failed; it is tried again on the next change or reload (SIGHUP)")
            outcome = ReportOutcome.FAILED
        if outcome != ReportOutcome.FAILED:
            self._reported_digest = digest
        return outcome

    # ------------------------------------------------------------ registration

    @property
    def confirmation(self) -> ConfirmationPolicy:
        """Which calls ask the user first: MCP_REQUIRE_CONFIRMATION, MCP_CONFIRM_FROM, the module's threshold."""
        return self.settings.confirmation_policy(self.module_confirm_from)

    def _governed_for(self, tool: ToolDef, confirmation: ConfirmationPolicy) -> GovernedTool:
        """The registration of ``tool``: the one made before while definition and policy are the same, else new."""
        known = self._governed.get(tool.name)
        if known is not None and known[0] == tool and known[1] == confirmation:
            return known[2]
        governed = self._governed_tool(tool, confirmation)
        self._governed[tool.name] = (tool, confirmation, governed)
        return governed

    def _governed_tool(self, tool: ToolDef, confirmation: ConfirmationPolicy) -> GovernedTool:
        try:
            signature = inspect.signature(tool.fn, eval_str=True)
        except NameError as exc:
            raise ValueError(
                f"tool {tool.name!r}: its annotations cannot be evaluated ({exc}); under "
                "`from __future__ import annotations` every name in an annotation must be a module global"
            ) from exc
        for reserved in (CONTEXT_PARAM, CONFIRMATION_PARAM, RISK_PARAM):
            if reserved in signature.parameters:
                raise ValueError(f"tool {tool.name!r}: the parameter name {reserved!r} is reserved for the base")
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()):
            raise ValueError(f"tool {tool.name!r}: *args/**kwargs have no schema; declare each parameter")
        return_type = signature.return_annotation
        if return_type is inspect.Signature.empty:
            raise ValueError(f"tool {tool.name!r} needs a return annotation: it is the output schema")
        adapter: TypeAdapter[Any] = TypeAdapter(return_type)

        arguments = [p.name for p in signature.parameters.values() if not _filled_by_sdk(p.annotation)]
        assess = self._risk_resolver(tool, arguments) if tool.risk_for is not None else None
        injected: list[inspect.Parameter] = []
        if confirmation.may_confirm(tool):
            resolver = self._confirmation_resolver(tool, arguments, confirmation, assess)
            # First, so that on the handshake era the user confirms before any resolver of the tool's own runs
            # (the risk assessment, which the confirmation depends on, runs just before it).
            injected.append(
                inspect.Parameter(
                    CONFIRMATION_PARAM,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=Annotated[ElicitationResult[Confirmation], Resolve(resolver)],
                )
            )
        if assess is not None:
            # Also when nothing is confirmed: the call's risk is what its log records. The SDK runs a resolver
            # once per call, so the confirmation and the body see the same assessment.
            injected.append(
                inspect.Parameter(
                    RISK_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[Risk, Resolve(assess)]
                )
            )
        # All keyword-only (the SDK passes keywords): the injected ones can then lead without defaults.
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]
        published = signature.replace(
            parameters=[*injected, *own],
            return_annotation=Annotated[CallToolResult, return_type],
        )

        async def governed(**kwargs: Any) -> CallToolResult:
            answer = kwargs.pop(CONFIRMATION_PARAM, None)
            risk = kwargs.pop(RISK_PARAM, tool.traits.risk)
            return await self._call(tool, adapter, kwargs, answer, risk)

        # The SDK reads the schema from __signature__ and the injected parameters from the annotations.
        governed.__signature__ = published  # type: ignore[attr-defined]
        governed.__annotations__ = {p.name: p.annotation for p in published.parameters.values()} | {
            "return": published.return_annotation
        }
        governed.__name__ = tool.fn.__name__
        governed.__qualname__ = tool.fn.__qualname__
        governed.__module__ = tool.fn.__module__
        governed.__doc__ = tool.description

        traits = tool.traits
        governed_tool = GovernedTool.from_function(
            governed,
            name=tool.name,
            title=tool.title,
            description=tool.description,
            annotations=ToolAnnotations(
                title=tool.title,
                read_only_hint=traits.read_only,
                destructive_hint=traits.destructive,
                idempotent_hint=traits.idempotent,
                open_world_hint=traits.open_world,
            ),
            structured_output=True,
        )
        if not isinstance(governed_tool, GovernedTool):  # from_function builds cls(...)
            raise TypeError("the SDK did not build a GovernedTool")
        governed_tool.on_invalid = self._count_invalid
        return governed_tool

    def _count_invalid(self, tool_name: str) -> None:
        self._count_call(tool_name, "invalid")
        self.metrics.errors.labels(tool=tool_name, kind="invalid_argument").inc()

    def _risk_resolver(self, tool: ToolDef, argument_names: list[str]) -> Callable[..., Awaitable[Risk]]:
        """The SDK resolver that runs the tool's risk_for hook: the call's risk, never below the declared one."""
        risk_for, declared = tool.risk_for, tool.traits.risk
        if risk_for is None:
            raise ValueError(f"tool {tool.name!r} has no risk_for hook")
        timeout = self.settings.call_timeout_seconds

        async def risk_of_call(**kwargs: Any) -> Risk:
            try:
                with anyio.fail_after(timeout):
                    assessed = risk_for(dict(kwargs))
                    if inspect.isawaitable(assessed):
                        assessed = await assessed
                risk = raised_risk(declared, Risk(assessed))
            except TimeoutError:
                self._count_failure(tool.name, "timeout")
                raise ToolError(
                    f"The risk of this {tool.name} call could not be assessed within {timeout:g} s "
                    "(MCP_CALL_TIMEOUT_SECONDS); nothing was done. Try again later."
                ) from None
            except Exception as exc:
                error = self._classified(tool.name, exc)
                if error is exc:
                    raise
                raise error from exc
            if risk != declared:
                logger.info("call of %s is %s risk (declared %s) for its arguments", tool.name, risk, declared)
            return risk

        risk_of_call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in argument_names]
        )
        risk_of_call.__annotations__ = {"return": Risk}
        risk_of_call.__qualname__ = f"risk_of_{tool.name}"
        return risk_of_call

    def _confirmation_resolver(
        self,
        tool: ToolDef,
        argument_names: list[str],
        confirmation: ConfirmationPolicy,
        assess: Callable[..., Awaitable[Risk]] | None,
    ) -> Callable[..., Awaitable[Any]]:
        settings, metrics = self.settings, self.metrics

        async def confirm_call(**kwargs: Any) -> Elicit[Confirmation] | Confirmation:
            ctx = kwargs.pop(CONTEXT_PARAM)
            risk: Risk = kwargs.pop(RISK_PARAM, tool.traits.risk)
            if not confirmation.confirms(tool, risk):
                return Confirmation(confirm=True)  # this call's risk stays under the threshold: nobody is asked
            if tool.precheck is not None:
                try:
                    await tool.precheck(**kwargs)
                except InvalidArgument as exc:
                    raise invalid_params(exc.field, exc.message, **exc.details) from None
                except ToolFailure as exc:
                    metrics.refusals.labels(tool=tool.name, reason="policy").inc()
                    self._count_call(tool.name, "refused", risk)
                    raise ToolError(redact_text(str(exc))) from None
            if can_confirm(ctx):
                return Elicit(
                    f"Confirm the {risk}-risk call {tool.name} ({tool.title}) with {_summary(kwargs)}. "
                    "Nothing happens unless you confirm.",
                    Confirmation,
                )
            if settings.allow_unconfirmed:
                logger.warning(
                    "running %s-risk %s unconfirmed: the client cannot confirm (MCP_ALLOW_UNCONFIRMED)",
                    risk,
                    tool.name,
                )
                return Confirmation(confirm=True)
            metrics.refusals.labels(tool=tool.name, reason="unconfirmable").inc()
            self._count_call(tool.name, "refused", risk)
            raise ToolError(
                f"{tool.name} is {risk} risk and needs the user's confirmation, but this client cannot show one "
                "(no MCP elicitation support on this connection); nothing was done. Use a client that supports "
                "elicitation, or have the operator set MCP_ALLOW_UNCONFIRMED=true on the server."
            )

        parameters = [inspect.Parameter(CONTEXT_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=_ContextClass)]
        annotations: dict[str, Any] = {CONTEXT_PARAM: _ContextClass}
        if assess is not None:
            annotations[RISK_PARAM] = Annotated[Risk, Resolve(assess)]
            parameters.append(
                inspect.Parameter(RISK_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=annotations[RISK_PARAM])
            )
        parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in argument_names]
        confirm_call.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        confirm_call.__annotations__ = annotations
        confirm_call.__qualname__ = f"confirm_{tool.name}"
        return confirm_call

    # -------------------------------------------------------------------- calls

    async def _call(
        self, tool: ToolDef, adapter: TypeAdapter[Any], arguments: dict[str, Any], answer: Any, risk: Risk
    ) -> CallToolResult:
        name, metrics = tool.name, self.metrics
        if answer is not None and not (isinstance(answer, AcceptedElicitation) and answer.data.confirm):
            action = getattr(answer, "action", "decline")
            metrics.refusals.labels(tool=name, reason="declined").inc()
            self._count_call(name, "refused", risk)
            verb = "cancelled" if action == "cancel" else "declined"
            raise ToolError(f"The user {verb} the confirmation: {name} was not run and nothing changed.")

        started = time.monotonic()
        try:
            payload = await self._run_body(tool, adapter, arguments, risk)
        finally:
            metrics.latency.labels(tool=name).observe(time.monotonic() - started)

        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode())
        limit = self.settings.max_output_bytes
        if size > limit:
            metrics.refusals.labels(tool=name, reason="output_budget").inc()
            self._count_call(name, "refused", risk)
            hint = " or pass a smaller limit and follow continue_token" if "limit" in _parameters(tool) else ""
            raise ToolError(
                f"The result of {name} is {size} bytes, more than this server returns at once "
                f"({limit} bytes, MCP_MAX_OUTPUT_BYTES), so it was not returned. Narrow the query "
                f"(a namespace, a name, a selector, a shorter time range){hint}."
            )
        self._count_call(name, "ok", risk)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload)

    async def _run_body(self, tool: ToolDef, adapter: TypeAdapter[Any], arguments: dict[str, Any], risk: Risk) -> Any:
        name, timeout = tool.name, self.settings.call_timeout_seconds
        payload: Any = None
        try:
            with anyio.move_on_after(timeout) as scope:
                result = await tool.fn(**arguments)
            if not scope.cancelled_caught:
                payload = adapter.dump_python(adapter.validate_python(result), mode="json", by_alias=True)
        except Exception as exc:
            error = self._classified(name, exc, risk)
            if error is exc:
                raise
            raise error from exc
        if scope.cancelled_caught:
            self._count_failure(name, "timeout", risk=risk)
            raise ToolError(
                f"{name} did not finish within {timeout:g} s (MCP_CALL_TIMEOUT_SECONDS) and was stopped; "
                "its effect, if any, is unknown. Narrow the request or try again later."
            )
        return redact_value(payload)

    def _count_call(self, name: str, outcome: str, risk: Risk | None = None) -> None:
        """Count one call; without the call's own risk (it failed before it was assessed), the declared one."""
        if risk is None:
            entry = self._governed.get(name)
            risk = entry[0].traits.risk if entry else None
        self.metrics.calls.labels(tool=name, risk=risk.value if risk else "unknown", outcome=outcome).inc()

    def _count_failure(self, name: str, kind: str, outcome: str = "error", risk: Risk | None = None) -> None:
        self.metrics.errors.labels(tool=name, kind=kind).inc()
        self._count_call(name, outcome, risk)

    def _classified(self, name: str, exc: Exception, risk: Risk | None = None) -> Exception:
        """What the client is told of ``exc`` from a tool's body or risk_for hook (counted; messages redacted)."""
        if isinstance(exc, InvalidArgument):
            self._count_failure(name, "invalid_argument", "invalid", risk=risk)
            return invalid_params(exc.field, exc.message, **exc.details)
        if isinstance(exc, MCPError):
            self._count_failure(name, "protocol", risk=risk)
            return exc
        if isinstance(exc, Refused):
            self._count_failure(name, "refused", "refused", risk=risk)
            self.metrics.refusals.labels(tool=name, reason="policy").inc()
        elif isinstance(exc, BackendUnavailable):
            self._count_failure(name, "backend_unavailable", risk=risk)
        elif isinstance(exc, NotFound):
            self._count_failure(name, "not_found", risk=risk)
        elif isinstance(exc, ToolFailure | ToolError):
            self._count_failure(name, "tool_failure", risk=risk)
        else:
            self._count_failure(name, "internal", risk=risk)
            correlation = uuid.uuid4().hex[:12]
            at_risk = f" ({risk} risk)" if risk is not None else ""
            logger.error("tool %s%s failed unexpectedly (correlation id %s)", name, at_risk, correlation, exc_info=exc)
            return ToolError(
                f"{name} failed with an internal error (correlation id {correlation}; the server log has the "
                "details). Retrying will probably not help; report it with the correlation id."
            )
        return ToolError(redact_text(str(exc)))

    # -------------------------------------------------------------------- HTTP

    @property
    def listen_handler(self) -> ListenHandler | None:
        """The SDK's ``subscriptions/listen`` handler: its close() ends those streams gracefully when stopping."""
        # MCPServer builds it over our bus and offers no accessor; the low-level server's registry has it.
        entry = self.mcp._lowlevel_server.get_request_handler("subscriptions/listen")
        handler = entry.handler if entry is not None else None
        return handler if isinstance(handler, ListenHandler) else None

    def routes(self) -> list[Route]:
        return [
            Route("/health", self._health, methods=["GET"]),
            Route("/ready", self._ready, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]

    async def _health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def _ready(self, request: Request) -> Response:
        if not self.state.started:
            return JSONResponse({"ready": False, "reason": "the module has not started (or is stopping)"}, 503)
        backend = await self.backend_report()
        body = {
            "ready": True,
            "server": self.mcp.name,
            "type": self.module.type_name,
            "transport": self.settings.transport.value,
            "tools": len(self.tools),
            "backend": backend,
        }
        return JSONResponse(redact_value(body))

    async def backend_report(self) -> dict[str, Any]:
        """The module's backend status, bounded in time; an unreachable backend is reported, not fatal."""
        try:
            with anyio.fail_after(READY_PROBE_TIMEOUT_SECONDS):
                status = await self.module.backend_status()
            report = {"name": status.name, "reachable": status.reachable, "detail": status.detail}
        except TimeoutError:
            report = {
                "name": self.module.type_name,
                "reachable": False,
                "detail": f"the backend probe did not answer within {READY_PROBE_TIMEOUT_SECONDS:g} s",
            }
        except Exception as exc:
            logger.warning("backend probe of %s failed: %s", self.module.type_name, exc)
            report = {
                "name": self.module.type_name,
                "reachable": False,
                "detail": f"probe failed: {type(exc).__name__}",
            }
        self.metrics.backend_up.set(1 if report["reachable"] else 0)
        return report

    async def _metrics(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    def transport_security(self) -> TransportSecuritySettings:
        """Always explicit: the SDK would switch the Host check off for a 0.0.0.0 listener otherwise."""
        if dns_rebinding_disabled(self.settings):
            logger.warning("DNS-rebinding protection is off: MCP_ALLOWED_HOSTS=* accepts any Host header")
            return TransportSecuritySettings(enable_dns_rebinding_protection=False)
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=allowed_hosts(self.settings),
            allowed_origins=allowed_origins(self.settings),
        )

    def http_app(self) -> Starlette:
        """The ASGI app for the configured transport: MCP plus probes, or (stdio) the probes alone."""
        settings = self.settings
        if settings.transport == TransportName.STREAMABLE_HTTP:
            return self.mcp.streamable_http_app(
                streamable_http_path=settings.mcp_path,
                json_response=settings.json_responses,
                stateless_http=settings.stateless,
                transport_security=self.security,
                host=settings.host,
            )
        if settings.transport == TransportName.SSE:
            return self.mcp.sse_app(
                sse_path=settings.mcp_path,
                message_path=SSE_MESSAGE_PATH,
                transport_security=self.security,
                host=settings.host,
            )
        return Starlette(routes=self.routes())


def _parameters(tool: ToolDef) -> set[str]:
    return set(inspect.signature(tool.fn).parameters)


def served_tools(toolset: Toolset, settings: ServerSettings, *, log_hidden: bool = False) -> list[ToolDef]:
    """A module's tools that the settings' policy lets through, in the module's order."""
    policy = settings.tool_policy()
    if log_hidden:
        for tool in toolset:
            reason = policy.hidden_reason(tool)
            if reason is not None:
                logger.info("tool %s hidden: %s", tool.name, reason)
    return policy.select(toolset)


def build_server(module: ServerModule, settings: ServerSettings, metrics: ServerMetrics | None = None) -> FleetServer:
    """The module's tools, filtered by the settings' policy, on a new MCPServer with probes and metrics."""
    toolset = module.toolset()
    return FleetServer(
        module=module,
        settings=settings,
        metrics=metrics or ServerMetrics(module.type_name),
        tools=served_tools(toolset, settings, log_hidden=True),
        module_confirm_from=toolset.confirm_from,
    )
