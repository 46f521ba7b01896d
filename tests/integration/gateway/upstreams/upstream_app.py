"""A small MCP server for the upstream tests, servable over every transport the gateway speaks.

    python -m tests.integration.gateway.upstreams.upstream_app --transport streamable-http --port 8123 \
        [--stateless] [--json] [--handshake-only]
    python -m tests.integration.gateway.upstreams.upstream_app --transport sse|websocket --port 8123
    python -m tests.integration.gateway.upstreams.upstream_app --transport stdio

Built on the SDK's lowlevel ``Server``. Tools: ``echo``, ``add``, ``fail`` (a tool error), ``slow``, ``headers``
(the HTTP request headers it received), ``counter`` (increments per process), ``pid``, ``progress_echo`` (emits a
notification before answering, which turns a 2026-07-28 response into an event stream), ``routed`` (a tenant
argument mirrored into an ``Mcp-Param-Tenant`` header), ``change_tools`` (adds the tool ``extra`` and announces
``notifications/tools/list_changed``). Tools are listed in pages of four. One resource, one prompt.

The SDK has no WebSocket server; ``/ws`` bridges a Starlette WebSocket (subprotocol ``mcp``, one JSON-RPC
message per text frame) to the lowlevel server's streams. ``build_server`` is also the in-process target, and
``build_mcpserver`` a high-level ``MCPServer`` one.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.mcpserver import MCPServer
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

PAGE_SIZE = 4
RESOURCE_URI = "resource://upstream-app/greeting"

_TEXT = {"type": "string", "description": "Text."}
TOOLS: list[types.Tool] = [
    types.Tool(
        name="echo",
        description="Answer the text.",
        input_schema={"type": "object", "properties": {"text": _TEXT}, "required": ["text"]},
    ),
    types.Tool(
        name="add",
        description="Add two integers.",
        input_schema={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    ),
    types.Tool(
        name="fail",
        description="Fail as a tool (isError).",
        input_schema={"type": "object", "properties": {"message": _TEXT}, "required": ["message"]},
    ),
    types.Tool(
        name="slow",
        description="Sleep, then answer; with count=true it first increments the counter.",
        input_schema={
            "type": "object",
            "properties": {"seconds": {"type": "number"}, "count": {"type": "boolean"}},
            "required": ["seconds"],
        },
    ),
    types.Tool(
        name="headers",
        description="The HTTP request headers this call arrived with.",
        input_schema={"type": "object", "properties": {}},
    ),
    types.Tool(
        name="counter",
        description="Increment (unless peek) and answer a per-server counter.",
        input_schema={"type": "object", "properties": {"peek": {"type": "boolean"}}},
    ),
    types.Tool(name="pid", description="The server's process id.", input_schema={"type": "object", "properties": {}}),
    types.Tool(
        name="progress_echo",
        description="Send a progress notification, then answer the text.",
        input_schema={"type": "object", "properties": {"text": _TEXT}, "required": ["text"]},
    ),
    types.Tool(
        name="routed",
        description="Answer the tenant and the Mcp-Param-Tenant header it was routed by.",
        input_schema={
            "type": "object",
            "properties": {"tenant": {"type": "string", "x-mcp-header": "Tenant"}},
            "required": ["tenant"],
        },
    ),
    types.Tool(
        name="change_tools",
        description="Add the tool 'extra' and announce the changed list.",
        input_schema={"type": "object", "properties": {}},
    ),
]
EXTRA_TOOL = types.Tool(name="extra", description="Appears after change_tools.", input_schema={"type": "object"})


def _text(value: str) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=value)]


def _headers_of(ctx: ServerRequestContext[Any, Any]) -> dict[str, str]:
    request = ctx.request
    headers = getattr(request, "headers", None)
    if headers is None:
        return {}
    return {key.lower(): value for key, value in headers.items()}


def _argument(arguments: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = arguments.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MCPError(
            code=types.INVALID_PARAMS, message=f"arguments.{name}: expected {getattr(kind, '__name__', kind)}"
        )
    return value


def build_server() -> Server[Any]:
    """A fresh server with its own counter and tool list."""
    state: dict[str, Any] = {"counter": 0, "extra": False}

    def tool_list() -> list[types.Tool]:
        return [*TOOLS, EXTRA_TOOL] if state["extra"] else list(TOOLS)

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = tool_list()
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + PAGE_SIZE
        return types.ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = params.arguments or {}
        name = params.name
        if name == "echo":
            return types.CallToolResult(content=_text(_argument(arguments, "text", str)))
        if name == "add":
            total = _argument(arguments, "a", int) + _argument(arguments, "b", int)
            return types.CallToolResult(content=_text(str(total)), structured_content={"sum": total})
        if name == "fail":
            return types.CallToolResult(content=_text(_argument(arguments, "message", str)), is_error=True)
        if name == "slow":
            seconds = float(_argument(arguments, "seconds", (int, float)))
            if arguments.get("count"):
                state["counter"] += 1
            await anyio.sleep(seconds)
            return types.CallToolResult(content=_text(f"slept {seconds}"))
        if name == "headers":
            headers = _headers_of(ctx)
            return types.CallToolResult(content=_text(json.dumps(headers)), structured_content={"headers": headers})
        if name == "counter":
            if not arguments.get("peek"):
                state["counter"] += 1
            return types.CallToolResult(
                content=_text(str(state["counter"])), structured_content={"count": state["counter"]}
            )
        if name == "pid":
            return types.CallToolResult(content=_text(str(os.getpid())))
        if name == "progress_echo":
            await ctx.session.send_progress_notification(
                progress_token="progress-echo", progress=1, total=1, related_request_id=str(ctx.request_id)
            )
            return types.CallToolResult(content=_text(_argument(arguments, "text", str)))
        if name == "routed":
            tenant = _argument(arguments, "tenant", str)
            header = _headers_of(ctx).get("mcp-param-tenant")
            return types.CallToolResult(content=_text(tenant), structured_content={"header": header})
        if name == "change_tools":
            state["extra"] = True
            await ctx.session.send_tool_list_changed()
            return types.CallToolResult(content=_text("changed"))
        if name == "extra" and state["extra"]:
            return types.CallToolResult(content=_text("extra"))
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")

    def input_schema(name: str) -> dict[str, Any] | None:
        return next((tool.input_schema for tool in tool_list() if tool.name == name), None)

    async def list_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[types.Resource(uri=RESOURCE_URI, name="greeting", mime_type="text/plain")]
        )

    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if str(params.uri) != RESOURCE_URI:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown resource: {params.uri}")
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=RESOURCE_URI, mime_type="text/plain", text="hello from upstream")]
        )

    async def list_prompts(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[
                types.Prompt(
                    name="greet",
                    description="Greet someone.",
                    arguments=[types.PromptArgument(name="name", required=True)],
                )
            ]
        )

    async def get_prompt(
        ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        if params.name != "greet":
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
        who = (params.arguments or {}).get("name", "world")
        return types.GetPromptResult(
            messages=[types.PromptMessage(role="user", content=types.TextContent(type="text", text=f"Hello, {who}!"))]
        )

    return Server(
        "upstream-app",
        version="1.0.0",
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )


def build_mcpserver() -> MCPServer:
    """The high-level flavour, for the in-process target that names an MCPServer."""
    server = MCPServer("upstream-app-mcpserver")

    @server.tool()
    def echo(text: str) -> str:
        """Answer the text."""
        return text

    return server


def _init_options(server: Server[Any]) -> Any:
    return server.create_initialization_options(NotificationOptions(tools_changed=True))


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _maintenance(request: Request) -> Response:
    """What a proxy in front of a restarting server answers."""
    return PlainTextResponse("down for maintenance", status_code=503)


class HandshakeOnly:
    """Answers a 2026-07-28 request as a server from before that revision does: 400, unsupported version."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            version = dict(scope["headers"]).get(b"mcp-protocol-version", b"").decode()
            if version and version not in HANDSHAKE_PROTOCOL_VERSIONS:
                body = {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": types.INVALID_REQUEST, "message": f"Unsupported protocol version: {version}"},
                }
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def streamable_http_app(*, stateless: bool, json_response: bool, handshake_only: bool = False) -> ASGIApp:
    server = build_server()
    app = server.streamable_http_app(stateless_http=stateless, json_response=json_response)
    app.router.routes.append(Route("/healthz", _healthz))
    app.router.routes.append(Route("/maintenance", _maintenance, methods=["GET", "POST"]))
    return HandshakeOnly(app) if handshake_only else app


def sse_app() -> Starlette:
    server = build_server()
    transport = SseServerTransport("/messages/")

    async def handle_sse(request: Request) -> Response:
        async with transport.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await server.run(read, write, _init_options(server))
        return Response()

    return Starlette(
        routes=[
            Route("/sse", handle_sse, methods=["GET"]),
            Mount("/messages/", app=transport.handle_post_message),
            Route("/healthz", _healthz),
        ]
    )


def websocket_app() -> Starlette:
    server = build_server()

    async def handle_ws(websocket: WebSocket) -> None:
        if "mcp" not in websocket.scope.get("subprotocols", []):
            await websocket.close(code=1002)
            return
        await websocket.accept(subprotocol="mcp")
        to_server: MemoryObjectSendStream[SessionMessage | Exception]
        server_read: MemoryObjectReceiveStream[SessionMessage | Exception]
        to_server, server_read = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        server_write: MemoryObjectSendStream[SessionMessage]
        from_server: MemoryObjectReceiveStream[SessionMessage]
        server_write, from_server = anyio.create_memory_object_stream[SessionMessage](16)
        metadata = ServerMessageMetadata(request_context=websocket)

        async def receive_frames() -> None:
            async with to_server:
                try:
                    while True:
                        text = await websocket.receive_text()
                        try:
                            message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
                        except ValidationError as exc:
                            await to_server.send(exc)
                            continue
                        await to_server.send(SessionMessage(message, metadata=metadata))
                except WebSocketDisconnect:
                    pass

        async def send_frames() -> None:
            async with from_server:
                async for session_message in from_server:
                    await websocket.send_text(
                        session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    )

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive_frames)
            tg.start_soon(send_frames)
            await server.run(server_read, server_write, _init_options(server))
            tg.cancel_scope.cancel()

    return Starlette(routes=[WebSocketRoute("/ws", handle_ws), Route("/healthz", _healthz)])


async def _serve_stdio() -> None:
    server = build_server()
    async with stdio_server() as (read, write):
        await server.run(read, write, _init_options(server))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transport", choices=("streamable-http", "sse", "websocket", "stdio"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stateless", action="store_true", help="streamable-http without sessions")
    parser.add_argument("--json", action="store_true", help="streamable-http: JSON responses instead of SSE")
    parser.add_argument(
        "--handshake-only", action="store_true", help="streamable-http: refuse 2026-07-28 like an older server"
    )
    args = parser.parse_args(argv)
    if args.transport == "stdio":
        anyio.run(_serve_stdio)
        return
    builders: dict[str, Callable[[], ASGIApp]] = {
        "streamable-http": lambda: streamable_http_app(
            stateless=args.stateless, json_response=args.json, handshake_only=args.handshake_only
        ),
        "sse": sse_app,
        "websocket": websocket_app,
    }
    uvicorn.run(builders[args.transport](), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
