"""A ServerModule turned into an MCP server: tools filtered by policy, every call governed the same way.

Each surviving tool is registered with the SDK through a wrapper whose ``__signature__`` is the tool
function's own (so its input schema is the function's) plus two injected keyword parameters the SDK
fills itself: the request Context and, for HIGH-risk tools, the user's confirmation (an elicitation
through the SDK's Resolve/Elicit API, which works with both protocol eras). A call then goes:
arguments validated (bad → JSON-RPC -32602 naming the field), confirmation, the body under a
timeout, errors classified, result redacted and measured against the output budget.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import logging
import time
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from mcp import MCPError
from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, MCPServer, Resolve
from mcp.server.mcpserver.context import Context as _ContextClass
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent, ToolAnnotations
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.metrics import CONTENT_TYPE, ServerMetrics
from mcpfleet_servers.base.module import ServerModule
from mcpfleet_servers.base.redact import redact_text, redact_value
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
)

logger = logging.getLogger(__name__)

# The parameter the base adds to HIGH-risk tools (filled by the SDK, never in the schema), and the
# one through which the confirmation resolver receives the request context.
CONFIRMATION_PARAM = "mcpfleet_confirmation"
CONTEXT_PARAM = "mcpfleet_context"
READY_PROBE_TIMEOUT_SECONDS = 2.0
_MODERN_PROTOCOL = "2026-07-28"
_CONFIRM_SUMMARY_CHARS = 600


class Confirmation(BaseModel):
    """What the user is asked before a HIGH-risk call (elicitation schemas hold primitives only)."""

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


@dataclass
class ServerState:
    started: bool = False


@dataclass
class FleetServer:
    """The MCP server of one module with its policy, metrics and HTTP routes."""

    module: ServerModule
    settings: ServerSettings
    metrics: ServerMetrics
    tools: list[ToolDef]
    mcp: MCPServer[Any] = field(init=False)
    security: TransportSecuritySettings = field(init=False)
    state: ServerState = field(default_factory=ServerState)

    def __post_init__(self) -> None:
        # Computed here, before any event loop serves: it may read /etc/hosts for the pod's own address.
        self.security = self.transport_security()
        governed: list[Tool] = [self._governed_tool(tool) for tool in self.tools]
        self.mcp = MCPServer(
            name=self.settings.server_name or f"mcpfleet-{self.module.type_name}",
            instructions=self.module.instructions,
            version=_version(),
            tools=governed,
            debug=self.settings.debug,
            log_level=typing.cast(Any, self.settings.log_level),
        )
        self.module.register_extras(self.mcp)
        for route in self.routes():
            self.mcp.custom_route(route.path, methods=sorted(route.methods or ("GET",)))(route.endpoint)
        self.metrics.tools.set(len(self.tools))

    # ------------------------------------------------------------ registration

    def _needs_confirmation(self, tool: ToolDef) -> bool:
        return self.settings.require_confirmation and tool.traits.risk == Risk.HIGH

    def _governed_tool(self, tool: ToolDef) -> GovernedTool:
        try:
            signature = inspect.signature(tool.fn, eval_str=True)
        except NameError as exc:
            raise ValueError(
                f"tool {tool.name!r}: its annotations cannot be evaluated ({exc}); under "
                "`from __future__ import annotations` every name in an annotation must be a module global"
            ) from exc
        for reserved in (CONTEXT_PARAM, CONFIRMATION_PARAM):
            if reserved in signature.parameters:
                raise ValueError(f"tool {tool.name!r}: the parameter name {reserved!r} is reserved for the base")
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature.parameters.values()):
            raise ValueError(f"tool {tool.name!r}: *args/**kwargs have no schema; declare each parameter")
        return_type = signature.return_annotation
        if return_type is inspect.Signature.empty:
            raise ValueError(f"tool {tool.name!r} needs a return annotation: it is the output schema")
        adapter: TypeAdapter[Any] = TypeAdapter(return_type)

        injected: list[inspect.Parameter] = []
        if self._needs_confirmation(tool):
            arguments = [p.name for p in signature.parameters.values() if not _filled_by_sdk(p.annotation)]
            resolver = self._confirmation_resolver(tool, arguments)
            # First, so that on the handshake era the user confirms before any resolver of the tool's own runs.
            injected.append(
                inspect.Parameter(
                    CONFIRMATION_PARAM,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=Annotated[ElicitationResult[Confirmation], Resolve(resolver)],
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
            return await self._call(tool, adapter, kwargs, answer)

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
        self.metrics.calls.labels(tool=tool_name, outcome="invalid").inc()
        self.metrics.errors.labels(tool=tool_name, kind="invalid_argument").inc()

    def _confirmation_resolver(self, tool: ToolDef, argument_names: list[str]) -> Callable[..., Awaitable[Any]]:
        settings, metrics = self.settings, self.metrics

        async def confirm_call(**kwargs: Any) -> Elicit[Confirmation] | Confirmation:
            ctx = kwargs.pop(CONTEXT_PARAM)
            if tool.precheck is not None:
                try:
                    await tool.precheck(**kwargs)
                except InvalidArgument as exc:
                    raise invalid_params(exc.field, exc.message, **exc.details) from None
                except ToolFailure as exc:
                    metrics.refusals.labels(tool=tool.name, reason="policy").inc()
                    metrics.calls.labels(tool=tool.name, outcome="refused").inc()
                    raise ToolError(redact_text(str(exc))) from None
            if can_confirm(ctx):
                return Elicit(
                    f"Confirm the HIGH-risk call {tool.name} ({tool.title}) with {_summary(kwargs)}. "
                    "Nothing happens unless you confirm.",
                    Confirmation,
                )
            if settings.allow_unconfirmed:
                logger.warning(
                    "running HIGH-risk %s unconfirmed: the client cannot confirm (MCP_ALLOW_UNCONFIRMED)", tool.name
                )
                return Confirmation(confirm=True)
            metrics.refusals.labels(tool=tool.name, reason="unconfirmable").inc()
            metrics.calls.labels(tool=tool.name, outcome="refused").inc()
            raise ToolError(
                f"{tool.name} is HIGH risk and needs the user's confirmation, but this client cannot show one "
                "(no MCP elicitation support on this connection); nothing was done. Use a client that supports "
                "elicitation, or have the operator set MCP_ALLOW_UNCONFIRMED=true on the server."
            )

        parameters = [inspect.Parameter(CONTEXT_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=_ContextClass)]
        parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in argument_names]
        confirm_call.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        confirm_call.__annotations__ = {CONTEXT_PARAM: _ContextClass}
        confirm_call.__qualname__ = f"confirm_{tool.name}"
        return confirm_call

    # -------------------------------------------------------------------- calls

    async def _call(
        self, tool: ToolDef, adapter: TypeAdapter[Any], arguments: dict[str, Any], answer: Any
    ) -> CallToolResult:
        name, metrics = tool.name, self.metrics
        if answer is not None and not (isinstance(answer, AcceptedElicitation) and answer.data.confirm):
            action = getattr(answer, "action", "decline")
            metrics.refusals.labels(tool=name, reason="declined").inc()
            metrics.calls.labels(tool=name, outcome="refused").inc()
            verb = "cancelled" if action == "cancel" else "declined"
            raise ToolError(f"The user {verb} the confirmation: {name} was not run and nothing changed.")

        started = time.monotonic()
        try:
            payload = await self._run_body(tool, adapter, arguments)
        finally:
            metrics.latency.labels(tool=name).observe(time.monotonic() - started)

        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode())
        limit = self.settings.max_output_bytes
        if size > limit:
            metrics.refusals.labels(tool=name, reason="output_budget").inc()
            metrics.calls.labels(tool=name, outcome="refused").inc()
            hint = " or pass a smaller limit and follow continue_token" if "limit" in _parameters(tool) else ""
            raise ToolError(
                f"The result of {name} is {size} bytes, more than this server returns at once "
                f"({limit} bytes, MCP_MAX_OUTPUT_BYTES), so it was not returned. Narrow the query "
                f"(a namespace, a name, a selector, a shorter time range){hint}."
            )
        metrics.calls.labels(tool=name, outcome="ok").inc()
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload)

    async def _run_body(self, tool: ToolDef, adapter: TypeAdapter[Any], arguments: dict[str, Any]) -> Any:
        name, metrics, timeout = tool.name, self.metrics, self.settings.call_timeout_seconds

        def failed(kind: str, outcome: str = "error") -> None:
            metrics.errors.labels(tool=name, kind=kind).inc()
            metrics.calls.labels(tool=name, outcome=outcome).inc()

        payload: Any = None
        try:
            with anyio.move_on_after(timeout) as scope:
                result = await tool.fn(**arguments)
            if not scope.cancelled_caught:
                payload = adapter.dump_python(adapter.validate_python(result), mode="json", by_alias=True)
        except ToolError as exc:
            failed("tool_failure")
            raise ToolError(redact_text(str(exc))) from exc
        except InvalidArgument as exc:
            failed("invalid_argument", "invalid")
            raise invalid_params(exc.field, exc.message, **exc.details) from exc
        except BackendUnavailable as exc:
            failed("backend_unavailable")
            raise ToolError(redact_text(str(exc))) from exc
        except NotFound as exc:
            failed("not_found")
            raise ToolError(redact_text(str(exc))) from exc
        except Refused as exc:
            failed("refused", "refused")
            metrics.refusals.labels(tool=name, reason="policy").inc()
            raise ToolError(redact_text(str(exc))) from exc
        except ToolFailure as exc:
            failed("tool_failure")
            raise ToolError(redact_text(str(exc))) from exc
        except MCPError:
            failed("protocol")
            raise
        except Exception as exc:
            failed("internal")
            correlation = uuid.uuid4().hex[:12]
            logger.exception("tool %s failed unexpectedly (correlation id %s)", name, correlation)
            raise ToolError(
                f"{name} failed with an internal error (correlation id {correlation}; the server log has the "
                "details). Retrying will probably not help; report it with the correlation id."
            ) from exc
        if scope.cancelled_caught:
            failed("timeout")
            raise ToolError(
                f"{name} did not finish within {timeout:g} s (MCP_CALL_TIMEOUT_SECONDS) and was stopped; "
                "its effect, if any, is unknown. Narrow the request or try again later."
            )
        return redact_value(payload)

    # -------------------------------------------------------------------- HTTP

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


def build_server(module: ServerModule, settings: ServerSettings, metrics: ServerMetrics | None = None) -> FleetServer:
    """The module's tools, filtered by the settings' policy, on a new MCPServer with probes and metrics."""
    policy = settings.tool_policy()
    toolset = module.toolset()
    tools = policy.select(toolset)
    for tool in toolset:
        reason = policy.hidden_reason(tool)
        if reason is not None:
            logger.info("tool %s hidden: %s", tool.name, reason)
    return FleetServer(
        module=module, settings=settings, metrics=metrics or ServerMetrics(module.type_name), tools=tools
    )
