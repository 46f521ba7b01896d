"""Legacy HTTP+SSE upstreams (protocol 2024-11-05): a GET event stream for answers, POSTs for requests."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Final

from mcp.client._transport import TransportStreams
from mcp.client.sse import sse_client

from mcpfleet_gateway.upstreams.session import SessionUpstream

SSE_READ_TIMEOUT_SECONDS: Final = 300.0
"""A stream silent for this long counts as dropped and is reconnected (servers send keep-alive comments)."""


class SSEUpstream(SessionUpstream, transport="sse"):
    async def _connect(self, stack: AsyncExitStack) -> TransportStreams:
        assert self.spec.url is not None  # the spec validator requires it
        return await stack.enter_async_context(
            sse_client(
                self.spec.url,
                headers=self.spec.auth.http_headers(),
                timeout=self.spec.timeouts.connect,
                sse_read_timeout=SSE_READ_TIMEOUT_SECONDS,
            )
        )
