"""What clients connect to: MCP over streamable HTTP (both protocol eras), legacy SSE and stdio, a REST
facade with an OpenAPI document for bots, and the probes.

Every HTTP request passes the hardening layer (client address allowlist, Host and Origin checks, body
limit, CORS for the REST facade) and, except the probes and the OAuth metadata, authentication; the
caller then rides in the ASGI scope to the MCP handlers, which hand it to the gateway core.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import mcp_types as types
import orjson
from mcp.server.context import CallNext, ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from mcpfleet_gateway.auth import Principal, Unauthenticated
from mcpfleet_gateway.errors import UNAUTHENTICATED, GatewayError
from mcpfleet_gateway.gateway import Caller, Gateway
from mcpfleet_gateway.metrics import CONTENT_TYPE
from mcpfleet_gateway.relay import REST_DOWNSTREAM, Asker, Downstream, Mode

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

T = TypeVar("T")
CALLER_KEY = "mcpfleet.caller"
PUBLIC_PATHS = ("/health", "/ready", "/metrics", "/.well-known/")
SERVER_NAME = "mcpfleet-gateway"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("mcpfleet")
    except PackageNotFoundError:
        return "0"


# -- the MCP server -----------------------------------------------------------------------------------------


def _caller(gateway: Gateway, ctx: ServerRequestContext[Any, Any]) -> Caller:
    request = ctx.request
    found = request.scope.get(CALLER_KEY) if isinstance(request, Request) else None
    if isinstance(found, Caller):
        return found.with_request(str(ctx.request_id) if ctx.request_id is not None else None)
    stdio = gateway.config.stdio
    return Caller(Principal(stdio.subject, stdio.roles, "anonymous"), None, "stdio").with_request(
        str(ctx.request_id) if ctx.request_id is not None else None
    )


async def _answered(answer: Awaitable[T]) -> T:
    """The gateway's refusals as JSON-RPC errors (code, message, data) for MCP clients."""
    try:
        return await answer
    except GatewayError as error:
        raise MCPError(error.code, error.message, error.data or None) from None


def _downstream(
    gateway: Gateway, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> Downstream:
    """How this client can answer an upstream's questions (form elicitation), and the answers a retry carries."""
    responses = None
    if params.input_responses is not None:
        responses = {
            key: answer.model_dump(mode="json", by_alias=True, exclude_none=True)
            for key, answer in params.input_responses.items()
        }
    session = ctx.session
    capabilities = session.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # An elicitation capability naming neither mode means form mode (the 2025-06-18 shape).
    form = elicitation is not None and (elicitation.form is not None or elicitation.url is None)
    mode: Mode = "none"
    if form and ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        mode = "pass-through"
    elif form and (session.can_send_request or not gateway.config.listen.stateless):
        # A JSON-response call cannot carry a request, but a stateful connection's standing GET stream can.
        mode = "ask"
    return Downstream(
        mode=mode,
        ask=_asker(ctx) if mode == "ask" else None,
        elicitation_url=elicitation is not None and elicitation.url is not None,
        input_responses=responses,
        request_state=params.request_state,
    )


def _asker(ctx: ServerRequestContext[Any, Any]) -> Asker:
    session = ctx.session

    async def ask(request: types.ElicitRequest) -> types.ElicitResult:
        related = ctx.request_id if session.can_send_request else None
        return await session.send_request(
            request, types.ElicitResult, metadata=ServerMessageMetadata(related_request_id=related)
        )

    return ask


class SessionRegistry:
    """Connections of the handshake era, which can be told that the lists changed.

    The SDK hands handlers a new ServerSession per request; any of them reaches its connection's standalone
    channel, so one per connection is kept, keyed by the connection's initialize params (one object per
    connection). Most recently active first out of a bounded table; a connection that fails a notice is dropped.
    """

    MAX_CONNECTIONS = 10_000

    def __init__(self) -> None:
        self._sessions: OrderedDict[int, ServerSession] = OrderedDict()

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        params = ctx.session.client_params
        if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS and params is not None:
            key = id(params)
            self._sessions[key] = ctx.session
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.MAX_CONNECTIONS:
                self._sessions.popitem(last=False)
        return await call_next(ctx)

    async def notify(self) -> None:
        for key, session in list(self._sessions.items()):
            try:
                await session.send_tool_list_changed()
                await session.send_resource_list_changed()
                await session.send_prompt_list_changed()
            except Exception as exc:
                log.debug("list_changed not delivered: %s", exc)
                self._sessions.pop(key, None)

    def __len__(self) -> int:
        return len(self._sessions)


def build_mcp_server(gateway: Gateway, sessions: SessionRegistry) -> Server[Any]:
    async def list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=gateway.visible_tools(_caller(gateway, ctx).principal))

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        downstream = _downstream(gateway, ctx, params)
        return await _answered(gateway.call_tool(_caller(gateway, ctx), params.name, params.arguments, downstream))

    async def list_resources(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=gateway.visible_resources(_caller(gateway, ctx).principal))

    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        return await _answered(gateway.read_resource(_caller(gateway, ctx), str(params.uri)))

    async def list_prompts(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=gateway.visible_prompts(_caller(gateway, ctx).principal))

    async def get_prompt(
        ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        return await _answered(gateway.get_prompt(_caller(gateway, ctx), params.name, params.arguments))

    def input_schema(name: str) -> dict[str, Any] | None:
        # The SDK checks Mcp-Param headers against the tool's schema; without this it re-runs tools/list per call.
        route = gateway.table.tools.get(name)
        return route.entry.input_schema if route is not None else None

    server: Server[Any] = Server(
        SERVER_NAME,
        get_tool_input_schema=input_schema,
        version=_version(),
        instructions="One governed endpoint for the fleet's MCP servers: tools are named <server>:<tool>.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )
    # Replaces the SDK's default (an OpenTelemetry span per request, with no exporter configured here).
    server.middleware = [sessions.middleware]
    return server


def initialization_options(server: Server[Any]) -> Any:
    return server.create_initialization_options(
        NotificationOptions(tools_changed=True, resources_changed=True, prompts_changed=True)
    )


# -- hardening and authentication (pure ASGI: no per-request middleware objects) ---------------------------


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _respond(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(pattern == "*" or fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


class Hardening:
    """Client address allowlist, Host/Origin validation, request body limit and CORS for the REST facade."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hardening = self.gateway.config.hardening
        denials = self.gateway.metrics.denials
        client = self.client_address(scope)
        scope["mcpfleet.client"] = client
        if hardening.ip_allowlist and not _in_networks(client, hardening.ip_allowlist):
            denials.labels(reason="ip-not-allowed").inc()
            await _respond(send, 403, {"error": f"client address {client} is not in the gateway's ip_allowlist"})
            return
        host = _header(scope, b"host") or ""
        if not _matches(host, hardening.allowed_hosts):
            denials.labels(reason="bad-host").inc()
            await _respond(send, 421, {"error": f"Host {host!r} is not served here (hardening.allowed_hosts)"})
            return
        origin = _header(scope, b"origin")
        path: str = scope["path"]
        cors = self.gateway.config.hardening.cors_origins
        rest = path.startswith(self.gateway.config.listen.rest_prefix)
        if (
            origin is not None
            and not _matches(origin, hardening.allowed_origins)
            and not (rest and _matches(origin, cors))
        ):
            denials.labels(reason="bad-origin").inc()
            await _respond(send, 403, {"error": f"Origin {origin!r} is not allowed (hardening.allowed_origins)"})
            return
        if rest and origin is not None and _matches(origin, cors):
            if scope["method"] == "OPTIONS":
                await self._preflight(send, origin)
                return
            send = self._with_cors(send, origin)
        length = _header(scope, b"content-length")
        limit = hardening.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            denials.labels(reason="body-too-large").inc()
            await _respond(send, 413, {"error": f"request body over {limit} bytes (hardening.max_body_bytes)"})
            return
        await self.app(scope, self._limited(receive, limit, send), send)

    def client_address(self, scope: Scope) -> str:
        peer = scope.get("client")
        address = str(peer[0]) if peer else "unknown"
        trusted = self.gateway.config.hardening.trusted_proxies
        forwarded = _header(scope, b"x-forwarded-for") if trusted else None
        if forwarded and _in_networks(address, trusted):
            # The right-most address not belonging to a trusted proxy is the real client.
            for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
                if not _in_networks(hop, trusted):
                    return hop
        return address

    @staticmethod
    def _limited(receive: Receive, limit: int, send: Send) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return limited

    async def _preflight(self, send: Send, origin: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                    (b"access-control-allow-headers", b"authorization, content-type, x-api-key"),
                    (b"access-control-max-age", b"600"),
                    (b"vary", b"Origin"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _with_cors(send: Send, origin: str) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", origin.encode()),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        return sending


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


class Authentication:
    """Puts the Caller in the scope, or answers 401 with the RFC 6750/9728 challenge."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC_PATHS) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        authenticator = self.gateway.authenticator
        try:
            principal = await authenticator.authenticate(_header(scope, b"authorization"), _header(scope, b"x-api-key"))
        except Unauthenticated as exc:
            self.gateway.metrics.denials.labels(reason="unauthenticated").inc()
            self.gateway.refuse_unauthenticated(scope.get("mcpfleet.client"), scope["path"], exc.reason)
            await _respond(
                send,
                401,
                {"jsonrpc": "2.0", "id": None, "error": {"code": UNAUTHENTICATED, "message": exc.reason}},
                [(b"www-authenticate", exc.www_authenticate.encode())],
            )
            return
        scope[CALLER_KEY] = Caller(principal, scope.get("mcpfleet.client"), "http")
        await self.app(scope, receive, send)


class BodyLimitErrors:
    """Turns a body that grew past the limit mid-stream into a 413 (when nothing was sent yet)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except BodyTooLarge as exc:
            if not started:
                await _respond(send, 413, {"error": f"{exc} (hardening.max_body_bytes)"})


# -- the REST facade ---------------------------------------------------------------------------------------


def _request_caller(request: Request) -> Caller:
    caller = request.scope.get(CALLER_KEY)
    assert isinstance(caller, Caller)  # Authentication runs before every REST route
    return caller.with_request(request.headers.get("x-request-id"))


def _rest_error(error: GatewayError) -> JSONResponse:
    headers = {}
    retry_after = error.data.get("retryAfterSeconds")
    if isinstance(retry_after, int | float):
        headers["Retry-After"] = str(max(1, round(retry_after)))
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message, "data": error.data}}, error.http_status, headers
    )


def _tool_json(tool: types.Tool) -> dict[str, Any]:
    return tool.model_dump(mode="json", by_alias=True, exclude_none=True)


def rest_routes(gateway: Gateway) -> list[Route]:
    async def list_tools(request: Request) -> Response:
        tools = gateway.visible_tools(_request_caller(request).principal)
        return JSONResponse({"tools": [_tool_json(tool) for tool in tools]})

    async def call_tool(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError as exc:
            return JSONResponse({"error": {"code": -32700, "message": f"the body is not JSON: {exc}"}}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("arguments", {}), dict):
            return JSONResponse(
                {
                    "error": {
                        "code": -32602,
                        "message": 'send {"arguments": {...}} (an object of the tool\'s arguments)',
                    }
                },
                400,
            )
        try:
            result = await gateway.call_tool(
                _request_caller(request), name, body.get("arguments") or {}, REST_DOWNSTREAM
            )
        except GatewayError as exc:
            return _rest_error(exc)
        # REST callers are never handed questions (REST_DOWNSTREAM refuses them with 409).
        assert isinstance(result, types.CallToolResult)
        return JSONResponse(result.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def list_resources(request: Request) -> Response:
        resources = gateway.visible_resources(_request_caller(request).principal)
        return JSONResponse(
            {"resources": [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in resources]}
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(gateway, _request_caller(request).principal))

    prefix = gateway.config.listen.rest_prefix.rstrip("/")
    return [
        Route(f"{prefix}/tools", list_tools, methods=["GET"]),
        Route(f"{prefix}/tools/{{name:path}}/call", call_tool, methods=["POST"]),
        Route(f"{prefix}/resources", list_resources, methods=["GET"]),
        Route(f"{prefix}/openapi.json", openapi, methods=["GET"]),
    ]


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {"type": "object"}},
            "required": ["code", "message"],
        }
    },
}
_RESULT_SCHEMA = {
    "type": "object",
    "properties": {
        "content": {"type": "array", "items": {"type": "object"}},
        "structuredContent": {"type": "object"},
        "isError": {"type": "boolean"},
    },
    "required": ["content"],
}


def openapi_document(gateway: Gateway, principal: Principal) -> dict[str, Any]:
    """OpenAPI 3.1 for the REST facade: one operation per tool the caller may call, its schema as the body."""
    prefix = gateway.config.listen.rest_prefix.rstrip("/")
    errors = {
        str(status): {"description": text, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        for status, text in (
            (400, "Invalid arguments (the message names the field)"),
            (401, "No or bad credentials"),
            (403, "Not allowed for the caller's roles"),
            (404, "Unknown tool"),
            (409, "The tool needs the user's confirmation, which only an MCP client with elicitation can give"),
            (429, "Rate limited (see Retry-After)"),
        )
    }
    paths: dict[str, Any] = {
        f"{prefix}/tools": {
            "get": {
                "operationId": "listTools",
                "summary": "The tools the caller may call",
                "responses": {
                    "200": {"description": "Tools", "content": {"application/json": {"schema": {"type": "object"}}}}
                },
            }
        },
        f"{prefix}/resources": {
            "get": {
                "operationId": "listResources",
                "summary": "Resources of every server",
                "responses": {
                    "200": {"description": "Resources", "content": {"application/json": {"schema": {"type": "object"}}}}
                },
            }
        },
    }
    for tool in gateway.visible_tools(principal):
        paths[f"{prefix}/tools/{tool.name}/call"] = {
            "post": {
                "operationId": f"call_{tool.name.replace(':', '_').replace('-', '_')}",
                "summary": (tool.description or tool.name).splitlines()[0][:200],
                "description": tool.description or "",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"arguments": tool.input_schema},
                                "required": ["arguments"],
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The tool's result",
                        "content": {"application/json": {"schema": _RESULT_SCHEMA}},
                    },
                    **errors,
                },
                "x-mcpfleet-risk": (tool.meta or {}).get("mcpfleet.io/risk"),
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mcpfleet gateway REST facade", "version": _version()},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
    }


# -- the application ----------------------------------------------------------------------------------------


def build_app(gateway: Gateway) -> tuple[ASGIApp, Server[Any], SessionRegistry]:
    config = gateway.config
    sessions = SessionRegistry()
    server = build_mcp_server(gateway, sessions)
    gateway.subscribe(sessions.notify)
    # Host/Origin checks are the Hardening layer's, from the gateway config: the SDK's copy stays off.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    manager = StreamableHTTPSessionManager(
        app=server,
        json_response=True,
        stateless=config.listen.stateless,
        security_settings=security,
        max_request_body_size=config.hardening.max_body_bytes,
    )
    sse = SseServerTransport(
        config.listen.messages_path, security_settings=security, max_request_body_size=config.hardening.max_body_bytes
    )

    async def handle_sse(scope: Scope, receive: Receive, send: Send) -> None:
        async with sse.connect_sse(scope, receive, send) as (read_stream, write_stream):
            await server.run(read_stream, write_stream, initialization_options(server))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        report = gateway.readiness()
        return JSONResponse(report, 200 if report["ready"] else 503)

    async def metrics(request: Request) -> Response:
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE)

    async def resource_metadata(request: Request) -> Response:
        auth = gateway.config.auth
        base = config.listen.public_url or str(request.base_url).rstrip("/")
        document: dict[str, Any] = {
            "resource": auth.audience or f"{base}{config.listen.mcp_path}",
            "bearer_methods_supported": ["header"],
            "resource_name": "mcpfleet gateway",
        }
        if auth.issuer:
            document["authorization_servers"] = [auth.issuer]
        return JSONResponse(document)

    mcp_app = StreamableHTTPASGI(manager)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    routes: list[Route | Mount] = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/.well-known/oauth-protected-resource", resource_metadata, methods=["GET"]),
        Route(f"/.well-known/oauth-protected-resource{config.listen.mcp_path}", resource_metadata, methods=["GET"]),
        *rest_routes(gateway),
        Route(config.listen.sse_path, _Endpoint(handle_sse), methods=["GET"]),
        Mount(config.listen.messages_path.rstrip("/"), app=sse.handle_post_message),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    # The MCP endpoint skips Starlette's routing and exception layers: it is the hot path, and the session
    # manager answers its own errors. Everything else goes through the Starlette app.
    routed = _FastPath(config.listen.mcp_path, mcp_app, app)
    return Hardening(BodyLimitErrors(Authentication(routed, gateway)), gateway), server, sessions


class StreamableHTTPASGI:
    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


class _Endpoint:
    """A raw ASGI endpoint for a Route (Starlette treats class instances as ASGI apps)."""

    def __init__(self, handler: ASGIApp) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


class _FastPath:
    def __init__(self, path: str, endpoint: ASGIApp, app: ASGIApp) -> None:
        self.path = path
        self.endpoint = endpoint
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)
