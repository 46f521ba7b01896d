"""A small MCP server whose tool list changes at runtime, for the operator's tool-source tests.

    python -m tests.integration.toolsource_app --transport streamable-http|sse --port 8123 \
        [--stateless] [--handshake-only]

Built on the SDK's ``MCPServer``; MCP is served at ``/mcp`` (streamable HTTP) or ``/sse`` (HTTP+SSE). Tools:

- ``echo``: answers its text.
- ``grow``: adds a tool named by its argument; with ``announce`` (the default) it tells every connected client,
  2026-07-28 listeners through the subscription bus and handshake-era sessions with
  ``notifications/tools/list_changed`` on their own stream; without it the change is silent.
- ``digest``: the server's own tools digest, computed the way a fleet server computes its pod report, so a test
  compares a client's listing with what the server itself serves.

``--handshake-only`` refuses 2026-07-28 like a server from before that revision (streamable HTTP), so clients
fall back to the initialize handshake and hear changes on the session's GET stream.

``--endless-pages N`` serves instead a tools/list that never ends (streamable HTTP, on the SDK's lowlevel
``Server``): pages of N new tools, each with a cursor to the next; with ``--repeat-cursor`` every page hands out
the same cursor again.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.session import ServerSession
from starlette.types import ASGIApp

from mcpfleet_contracts.report import tools_digest
from tests.integration.gateway.upstreams.upstream_app import HandshakeOnly

MCP_PATHS = {"streamable-http": "/mcp", "sse": "/sse"}
logger = logging.getLogger(__name__)


class HandshakeSessions:
    """Remembers the handshake-era sessions (they completed initialize) to announce changes to all of them; a
    session that cannot be reached any more is forgotten at the next announcement."""

    def __init__(self) -> None:
        self.sessions: set[ServerSession] = set()

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "notifications/initialized":
            self.sessions.add(ctx.session)
        return await call_next(ctx)

    async def announce(self) -> None:
        for session in list(self.sessions):
            try:
                await session.send_tool_list_changed()
            except Exception as exc:  # a client that went away; the others still hear it
                logger.debug("list_changed not delivered: %r", exc)
                self.sessions.discard(session)


def build_server() -> MCPServer:
    sessions = HandshakeSessions()
    server = MCPServer("toolsource-app", middleware=[sessions])

    @server.tool()
    def echo(text: str) -> str:
        """Answer the text."""
        return text

    @server.tool()
    async def grow(name: str, ctx: Context, announce: bool = True) -> str:
        """Add a tool with this name; announce the changed list unless told not to."""

        def added() -> str:
            return name

        server.add_tool(added, name=name, description=f"Added at runtime: {name}.")
        if announce:
            await ctx.notify_tools_changed()
            await sessions.announce()
        return f"added {name}"

    @server.tool()
    async def digest() -> str:
        """The digest of the tools this server serves (as a fleet server reports it on its pod)."""
        tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in await server.list_tools()]
        return tools_digest(tools)

    return server


def build_app(transport: str, *, stateless: bool = False, handshake_only: bool = False) -> ASGIApp:
    server = build_server()
    if transport == "sse":
        return server.sse_app(sse_path=MCP_PATHS["sse"])
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATHS["streamable-http"], stateless_http=stateless, json_response=stateless
    )
    return HandshakeOnly(app) if handshake_only else app


def endless_pages_app(page_size: int, *, repeat_cursor: bool) -> ASGIApp:
    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        page = int(params.cursor) if params is not None and params.cursor else 0
        tools = [types.Tool(name=f"tool_{page}_{i}", input_schema={"type": "object"}) for i in range(page_size)]
        return types.ListToolsResult(tools=tools, next_cursor="1" if repeat_cursor else str(page + 1))

    server: Server[Any] = Server("endless-pages", on_list_tools=list_tools)
    return server.streamable_http_app(stateless_http=True, json_response=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transport", choices=tuple(MCP_PATHS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stateless", action="store_true", help="streamable-http without sessions (JSON answers)")
    parser.add_argument("--handshake-only", action="store_true", help="streamable-http: refuse 2026-07-28")
    parser.add_argument("--endless-pages", type=int, metavar="N", help="streamable-http: a tools/list without end")
    parser.add_argument("--repeat-cursor", action="store_true", help="with --endless-pages: one cursor, forever")
    args = parser.parse_args(argv)
    if args.endless_pages:
        app = endless_pages_app(args.endless_pages, repeat_cursor=args.repeat_cursor)
    else:
        app = build_app(args.transport, stateless=args.stateless, handshake_only=args.handshake_only)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
