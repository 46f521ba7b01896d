"""A real MCP server (the SDK's MCPServer over streamable HTTP) whose tools a test sets directly.

It runs uvicorn on a loop and thread of its own, so neither the test's loop (which serves the Kubernetes
emulator) nor the operator's (kopf in its runner thread) is involved. ``set_tools`` replaces the tool list and
returns its contract-2 digest, computed the way a fleet server computes its pod report; ``report`` gives the
annotations the server base would write, for tests that drive many changes faster than a server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_contracts.report import TOOLS_ANNOTATION, TOOLS_DIGEST_ANNOTATION, tools_annotation, tools_digest

PATH = "/mcp"


class ToolServer:
    def __init__(self, name: str = "catalog-app", *, stateless: bool = True) -> None:
        self.port = free_port()
        self.mcp = MCPServer(name)
        self._stateless = stateless
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._names: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def start(self) -> None:
        app = self.mcp.streamable_http_app(
            streamable_http_path=PATH, stateless_http=self._stateless, json_response=self._stateless
        )
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            started.set()
            self._loop.run_until_complete(self._server.serve())  # type: ignore[union-attr]

        self._thread = threading.Thread(target=serve, name=f"tool-server:{self.port}", daemon=True)
        self._thread.start()
        started.wait(10)
        deadline = threading.Event()
        for _ in range(200):
            if self._server.started:
                return
            deadline.wait(0.05)
        raise RuntimeError(f"the tool server on port {self.port} did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def set_tools(self, tools: Mapping[str, str]) -> str:
        """Serve exactly these tools (name → description); returns the digest of what is now served."""

        def answer() -> str:
            return "ok"

        for name in self._names - set(tools):
            self.mcp.remove_tool(name)
        for name, description in tools.items():
            if name in self._names:
                self.mcp.remove_tool(name)
            self.mcp.add_tool(answer, name=name, description=description)
        self._names = set(tools)
        return tools_digest(self.listed())

    def listed(self) -> list[dict[str, Any]]:
        """The tools as a client (and a pod report) sees them."""
        assert self._loop is not None

        async def listing() -> list[dict[str, Any]]:
            return [
                tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in await self.mcp.list_tools()
            ]

        return asyncio.run_coroutine_threadsafe(listing(), self._loop).result(10)

    def report(self) -> dict[str, str]:
        """The two Pod annotations a fleet server writes for its current tools (contract 2)."""
        tools = self.listed()
        return {TOOLS_DIGEST_ANNOTATION: tools_digest(tools), TOOLS_ANNOTATION: tools_annotation(tools)}


@contextlib.contextmanager
def tool_server(tools: Mapping[str, str], **options: Any) -> Iterator[ToolServer]:
    server = ToolServer(**options)
    server.start()
    try:
        server.set_tools(tools)
        yield server
    finally:
        server.stop()
