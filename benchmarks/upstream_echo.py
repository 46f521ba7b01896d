"""The upstream MCP server of the gateway benchmarks: one tool, ``echo(text)``, as cheap as an MCP server gets.

Built on the SDK's lowlevel ``mcp.server.lowlevel.Server`` (no MCPServer decorators, no output schema, no
validation beyond the SDK's own), served stateless with JSON responses by uvicorn with httptools and uvloop,
so that what a gateway adds in front of it stands out: on a 2-core machine it answers about 1,800 to 2,700
``tools/call`` per second over the 2026-07-28 revision on its own.

It speaks both protocol eras on ``/mcp``: the stateless 2026-07-28 revision (no ``initialize``) and the
handshake revisions (``initialize`` first; stateless, so no ``mcp-session-id``). DNS-rebinding protection
allows ``127.0.0.1:*`` and ``localhost:*``, which is what it listens on.

Run: ``.venv/bin/python benchmarks/upstream_echo.py --port 9100`` (the MCP endpoint is
``http://127.0.0.1:9100/mcp``; ``GET /health`` answers 200 once it listens).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

SERVER_NAME = "bench-upstream-echo"
TOOL_NAME = "echo"
MCP_PATH = "/mcp"

ECHO_TOOL = types.Tool(
    name=TOOL_NAME,
    description="Return the text it was given, unchanged.",
    input_schema={
        "type": "object",
        "properties": {"text": {"type": "string", "description": "the text to return"}},
        "required": ["text"],
        "additionalProperties": False,
    },
)


async def list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[ECHO_TOOL])


async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name != TOOL_NAME:
        return types.CallToolResult(content=[types.TextContent(text=f"unknown tool: {params.name}")], is_error=True)
    text = (params.arguments or {}).get("text")
    if not isinstance(text, str):
        return types.CallToolResult(content=[types.TextContent(text="'text' must be a string")], is_error=True)
    return types.CallToolResult(content=[types.TextContent(text=text)])


def build_server() -> Server[Any]:
    return Server(SERVER_NAME, version="1", on_list_tools=list_tools, on_call_tool=call_tool)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def build_app(host: str = "127.0.0.1") -> Starlette:
    """The ASGI app: MCP on /mcp (stateless, JSON responses) and GET /health."""
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", f"{host}:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", f"http://{host}:*"],
    )
    app = build_server().streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=security,
        host=host,
    )
    app.router.routes.append(Route("/health", health, methods=["GET"]))
    return app


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100, help="port to listen on (default 9100)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    uvicorn.run(
        build_app(args.host),
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
