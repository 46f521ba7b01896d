"""Connections from the gateway to its upstream MCP servers.

``build_upstream(name, spec)`` returns the :class:`Upstream` for a spec's transport; every transport module is
imported here so that its class is registered before anyone builds one.
"""

from mcpfleet_gateway.upstreams import http, inprocess, sse, stdio, websocket
from mcpfleet_gateway.upstreams.base import Upstream, UpstreamHealth, build_upstream, registered_transports
from mcpfleet_gateway.upstreams.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRPCError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcpfleet_gateway.upstreams.metrics import UpstreamMetrics
from mcpfleet_gateway.upstreams.resilience import CircuitBreaker
from mcpfleet_gateway.upstreams.spec import UpstreamSpec

__all__ = [
    "CircuitBreaker",
    "Upstream",
    "UpstreamError",
    "UpstreamHealth",
    "UpstreamMetrics",
    "UpstreamProtocolError",
    "UpstreamRPCError",
    "UpstreamSpec",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "build_upstream",
    "http",
    "inprocess",
    "registered_transports",
    "sse",
    "stdio",
    "websocket",
]
