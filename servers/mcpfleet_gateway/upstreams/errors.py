"""How a request to an upstream can fail, classified at the boundary.

- :class:`UpstreamUnavailable`: the upstream could not be reached or dropped the connection (refused connect,
  reset, DNS, a dead subprocess, an HTTP 502/503/504) or its circuit breaker is open. A transport failure: it
  counts towards the breaker and a safe call may be retried.
- :class:`UpstreamTimeout`: no answer within the deadline. Also a transport failure.
- :class:`UpstreamProtocolError`: the upstream answered, but not in MCP (bad JSON, a wrong content type, HTTP
  401/403, an answer that needs client interaction). Not retried.
- :class:`UpstreamRPCError`: the upstream answered with a JSON-RPC error; code, message and data are kept
  unchanged so the gateway can hand them to its client as they are (an invalid-params error stays one).

A tool that fails is none of these: it answers a ``CallToolResult`` with ``isError`` set.
"""

from __future__ import annotations

from typing import Any

from mcp_types import ErrorData


class UpstreamError(Exception):
    """Base of every upstream failure; ``upstream`` names the upstream."""

    def __init__(self, upstream: str, message: str) -> None:
        super().__init__(message)
        self.upstream = upstream


class UpstreamUnavailable(UpstreamError):
    """The upstream cannot be reached now. ``retry_in`` is set when its circuit breaker is open."""

    def __init__(self, upstream: str, reason: str, *, retry_in: float | None = None) -> None:
        message = f"upstream {upstream!r} is unavailable: {reason}"
        if retry_in is not None:
            message += f" (circuit breaker open; the next attempt is let through in {max(retry_in, 0.0):.1f}s)"
        super().__init__(upstream, message)
        self.reason = reason
        self.retry_in = retry_in

    @property
    def breaker_open(self) -> bool:
        return self.retry_in is not None


class UpstreamTimeout(UpstreamError):
    """No answer to ``operation`` within ``seconds``."""

    def __init__(self, upstream: str, operation: str, seconds: float) -> None:
        super().__init__(upstream, f"upstream {upstream!r} did not answer {operation} within {seconds:g}s")
        self.operation = operation
        self.seconds = seconds


class UpstreamProtocolError(UpstreamError):
    """The upstream answered something that is not a usable MCP response."""

    def __init__(self, upstream: str, detail: str) -> None:
        super().__init__(upstream, f"upstream {upstream!r} answered outside the protocol: {detail}")
        self.detail = detail


class UpstreamRPCError(UpstreamError):
    """A JSON-RPC error answered by the upstream, carried unchanged."""

    def __init__(self, code: int, message: str, data: Any = None, *, upstream: str = "") -> None:
        super().__init__(upstream, message)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        where = f"upstream {self.upstream!r}: " if self.upstream else ""
        return f"{where}JSON-RPC error {self.code}: {self.message}"

    def error_data(self) -> ErrorData:
        """The error as the upstream sent it, ready to be answered to a client."""
        return ErrorData(code=self.code, message=self.message, data=self.data)
