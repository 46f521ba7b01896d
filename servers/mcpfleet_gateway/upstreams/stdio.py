"""stdio upstreams: the server is a subprocess speaking newline-delimited JSON-RPC on stdin/stdout.

The subprocess belongs to the session's owner task; when it dies its stdout ends, the session is torn down and
the next request (or the reconnect backoff) starts a new process. Its stderr is passed through to the gateway's
stderr. The environment is the SDK's minimal inherited one (PATH, HOME, ...) plus ``env`` from the spec.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from mcp.client._transport import TransportStreams
from mcp.client.stdio import StdioServerParameters, stdio_client

from mcpfleet_gateway.upstreams.session import SessionUpstream


class StdioUpstream(SessionUpstream, transport="stdio"):
    async def _connect(self, stack: AsyncExitStack) -> TransportStreams:
        assert self.spec.command is not None  # the spec validator requires it
        parameters = StdioServerParameters(
            command=self.spec.command, args=list(self.spec.args), env=dict(self.spec.env), cwd=self.spec.cwd
        )
        return await stack.enter_async_context(stdio_client(parameters))
