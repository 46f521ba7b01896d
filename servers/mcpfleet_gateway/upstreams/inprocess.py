"""In-process upstreams: an MCP server object living in the gateway process, reached over the SDK's in-memory
transport (no sockets, no serialisation to text).

``target`` is ``package.module:attribute``; the attribute is an ``mcp.server.lowlevel.Server``, an
``mcp.server.mcpserver.MCPServer``, or a zero-argument callable returning one (called once, at start).
"""

from __future__ import annotations

import asyncio
import importlib
from contextlib import AsyncExitStack
from typing import Any

from mcp.client._memory import InMemoryTransport
from mcp.client._transport import TransportStreams
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer

from mcpfleet_gateway.upstreams.errors import UpstreamUnavailable
from mcpfleet_gateway.upstreams.metrics import UpstreamMetrics
from mcpfleet_gateway.upstreams.session import SessionUpstream
from mcpfleet_gateway.upstreams.spec import UpstreamSpec

ServerObject = Server[Any] | MCPServer


def resolve_target(target: str) -> ServerObject:
    """The server object ``target`` names. Raises ``ValueError`` with a message that says what is wrong."""
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{target!r}: {module_name} has no attribute {attribute!r}") from None
    if isinstance(obj, Server | MCPServer):
        return obj
    if callable(obj):
        made = obj()
        if isinstance(made, Server | MCPServer):
            return made
        raise ValueError(f"{target!r} returned {type(made).__name__}, not an MCP Server or MCPServer")
    raise ValueError(f"{target!r} is a {type(obj).__name__}, not an MCP Server, MCPServer or a factory of one")


class InProcessUpstream(SessionUpstream, transport="in-process"):
    def __init__(self, name: str, spec: UpstreamSpec, metrics: UpstreamMetrics | None = None) -> None:
        super().__init__(name, spec, metrics)
        self._server: ServerObject | None = None

    @property
    def server(self) -> ServerObject | None:
        return self._server

    async def _open(self) -> None:
        assert self.spec.target is not None  # the spec validator requires it
        module_name = self.spec.target.partition(":")[0]
        try:
            # Importing can be slow (it runs module code); keep the event loop free meanwhile.
            await asyncio.to_thread(importlib.import_module, module_name)
            self._server = resolve_target(self.spec.target)
        except Exception as exc:  # user code runs at import: any failure means the target is unusable
            self._mark_down(str(exc))
            raise UpstreamUnavailable(self.name, f"in-process target: {exc}") from exc
        await super()._open()

    async def _connect(self, stack: AsyncExitStack) -> TransportStreams:
        assert self._server is not None
        return await stack.enter_async_context(InMemoryTransport(self._server))
