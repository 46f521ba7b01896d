"""How the gateway reaches one upstream MCP server: transport, location, credentials and resilience settings.

These models are part of the gateway config (contract 4); its JSON Schema is published from them, so every field
carries a description. ``${ENV}`` references have already been expanded by the config loader when a spec is
validated here. A spec is checked against its transport: the fields that transport needs must be present and the
fields of the other transports absent, and every message names the field to change.
"""

from __future__ import annotations

import base64
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from mcpfleet_contracts.mcpserver import TOOL_PREFIX

Transport = Literal["streamable-http", "sse", "websocket", "stdio", "in-process"]
ProtocolRevision = Literal["auto", "2026-07-28", "handshake"]

NETWORK_TRANSPORTS: frozenset[str] = frozenset({"streamable-http", "sse", "websocket"})
_URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "streamable-http": ("http", "https"),
    "sse": ("http", "https"),
    "websocket": ("ws", "wss"),
}
# The fields that belong to one transport each; a spec for another transport must leave them out.
_TRANSPORT_FIELDS: dict[str, frozenset[str]] = {
    "url": frozenset(NETWORK_TRANSPORTS),
    "command": frozenset({"stdio"}),
    "args": frozenset({"stdio"}),
    "env": frozenset({"stdio"}),
    "cwd": frozenset({"stdio"}),
    "target": frozenset({"in-process"}),
    "auth": frozenset(NETWORK_TRANSPORTS),
    "pool": frozenset({"streamable-http"}),
    "protocol": frozenset({"streamable-http"}),
}
_REQUIRED: dict[str, str] = {
    "streamable-http": "url",
    "sse": "url",
    "websocket": "url",
    "stdio": "command",
    "in-process": "target",
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TARGET = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Headers the transports set themselves; a configured value would break the protocol or smuggle a session.
_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "accept",
        "host",
        "connection",
        "transfer-encoding",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "sec-websocket-protocol",
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str, schemes: tuple[str, ...], field: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        wanted = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ValueError(f"{field}: {value!r} is not an absolute {wanted} URL")
    return value


class BasicAuth(_Model):
    username: str = Field(min_length=1, description="User name for HTTP basic authentication.")
    password: SecretStr = Field(description="Password for HTTP basic authentication (write it as ${ENV_VAR}).")

    @field_validator("username")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("basic auth usernames cannot contain ':'")
        return value


class UpstreamAuth(_Model):
    """Credentials the gateway presents to the upstream. Client tokens are never forwarded; only these are sent."""

    bearer: SecretStr | None = Field(
        default=None, description="Sent as 'Authorization: Bearer <token>' (write it as ${ENV_VAR})."
    )
    basic: BasicAuth | None = Field(default=None, description="Sent as 'Authorization: Basic ...'.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers, e.g. an API key header; values are secrets."
    )

    @model_validator(mode="after")
    def _consistent(self) -> UpstreamAuth:
        if self.bearer is not None and self.basic is not None:
            raise ValueError("auth: set either bearer or basic, not both")
        for name in self.headers:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"auth.headers: {name!r} is not a valid HTTP header name")
            lowered = name.lower()
            if lowered in _RESERVED_HEADERS:
                raise ValueError(f"auth.headers: {name!r} is set by the transport itself and cannot be configured")
            if lowered == "authorization" and (self.bearer is not None or self.basic is not None):
                raise ValueError("auth.headers: 'Authorization' conflicts with auth.bearer/auth.basic; keep one")
        return self

    def http_headers(self) -> dict[str, str]:
        """The headers these credentials turn into (secret values revealed: for the transport only)."""
        headers = {name: value.get_secret_value() for name, value in self.headers.items()}
        if self.bearer is not None:
            headers["Authorization"] = f"Bearer {self.bearer.get_secret_value()}"
        elif self.basic is not None:
            raw = f"{self.basic.username}:{self.basic.password.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        return headers


class Timeouts(_Model):
    connect: float = Field(
        default=5.0, gt=0, le=300, description="Seconds to establish a connection (TCP, session handshake, spawn)."
    )
    call: float = Field(default=30.0, gt=0, le=3600, description="Seconds a tools/call may take unless told otherwise.")
    list: float = Field(
        default=10.0, gt=0, le=600, description="Seconds for list, read and get requests (tools, resources, prompts)."
    )


class Retries(_Model):
    """Retries apply only to calls the gateway marks as safe (read-only tools) and only to transport failures."""

    attempts: int = Field(default=2, ge=0, le=10, description="Extra attempts after the first one fails.")
    backoff_seconds: float = Field(
        default=0.1, ge=0, le=60, description="Wait before the first retry; doubled each time, with jitter."
    )
    max_backoff_seconds: float = Field(default=2.0, ge=0, le=300, description="Upper bound of one wait.")

    @model_validator(mode="after")
    def _ordered(self) -> Retries:
        if self.max_backoff_seconds < self.backoff_seconds:
            raise ValueError("retries.max_backoff_seconds must be at least retries.backoff_seconds")
        return self


class Pool(_Model):
    max_connections: int = Field(
        default=100, ge=1, le=10_000, description="Most simultaneous HTTP connections to this upstream."
    )


class HealthCheck(_Model):
    interval_seconds: float = Field(
        default=15.0, ge=0, le=3600, description="Seconds between health checks; 0 turns periodic checks off."
    )
    timeout_seconds: float = Field(default=3.0, gt=0, le=300, description="Seconds one health check may take.")
    url: str | None = Field(
        default=None,
        description="An http(s) URL to GET (any 2xx is healthy) instead of an MCP liveness request.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, ("http", "https"), "health.url")


class BreakerSpec(_Model):
    failure_threshold: int = Field(
        default=5, ge=1, le=1000, description="Consecutive transport failures that open the circuit breaker."
    )
    reset_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds an open breaker waits before letting one probe through."
    )


class UpstreamSpec(_Model):
    """One upstream MCP server, as the gateway connects to it."""

    transport: Transport = Field(
        description="streamable-http, sse (legacy HTTP+SSE), websocket, stdio (a subprocess) or in-process "
        "(a server object imported into the gateway)."
    )
    url: str | None = Field(
        default=None,
        description="Endpoint: http(s):// for streamable-http (e.g. http://host:8000/mcp) and sse "
        "(e.g. http://host:8000/sse), ws(s):// for websocket.",
    )
    command: str | None = Field(default=None, min_length=1, description="stdio: the executable to start.")
    args: list[str] = Field(default_factory=list, description="stdio: arguments of the command.")
    env: dict[str, str] = Field(
        default_factory=dict, description="stdio: environment variables added to a minimal inherited environment."
    )
    cwd: str | None = Field(default=None, min_length=1, description="stdio: working directory of the subprocess.")
    target: str | None = Field(
        default=None,
        description="in-process: 'package.module:attribute' naming an mcp lowlevel Server, an MCPServer, or a "
        "zero-argument callable returning one.",
    )
    prefix: str | None = Field(
        default=None, pattern=TOOL_PREFIX, description="Tool name prefix at the gateway; default: the upstream name."
    )
    auth: UpstreamAuth = Field(default_factory=UpstreamAuth, description="Credentials sent to a network upstream.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Deadlines of connects and requests.")
    retries: Retries = Field(default_factory=Retries, description="Retries of safe calls after transport failures.")
    pool: Pool = Field(default_factory=Pool, description="streamable-http: the pool of keep-alive connections.")
    health: HealthCheck = Field(default_factory=HealthCheck, description="Periodic health checks.")
    breaker: BreakerSpec = Field(default_factory=BreakerSpec, description="Circuit breaker over transport failures.")
    protocol: ProtocolRevision = Field(
        default="auto",
        description="streamable-http: protocol revision to speak. auto tries the stateless 2026-07-28 revision and "
        "falls back to the initialize handshake; handshake forces the session-based revisions.",
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"env: {name!r} is not a valid environment variable name")
        return value

    @field_validator("target")
    @classmethod
    def _target_form(cls, value: str | None) -> str | None:
        if value is not None and not _TARGET.match(value):
            raise ValueError(f"target: {value!r} is not of the form 'package.module:attribute'")
        return value

    @model_validator(mode="after")
    def _fits_transport(self) -> UpstreamSpec:
        transport = self.transport
        required = _REQUIRED[transport]
        if getattr(self, required) is None:
            raise ValueError(f"transport {transport} needs {required}")
        for field, transports in _TRANSPORT_FIELDS.items():
            if transport not in transports and field in self.model_fields_set:
                users = ", ".join(sorted(transports))
                raise ValueError(f"{field} does not apply to transport {transport} (only to {users}); remove it")
        if self.url is not None:
            _http_url(self.url, _URL_SCHEMES[transport], "url")
        return self

    @property
    def is_network(self) -> bool:
        return self.transport in NETWORK_TRANSPORTS
