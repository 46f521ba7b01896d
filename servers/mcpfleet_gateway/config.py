"""Contract 4, the gateway's config file (JSON or YAML), and the process settings that locate it.

Strings may name environment variables as ``${NAME}`` or ``${NAME:-default}``; they are expanded before
validation, so secrets stay out of the file. A variable that is unset and has no default is an error that
names the field, not an empty string: a missing token must not quietly become "no token".
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcpfleet_contracts.catalog import CATALOG_CONFIGMAP, CATALOG_KEY, DEFAULT_SEPARATOR
from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_gateway.audit_sink import AuditSettings
from mcpfleet_gateway.auth import AuthSettings
from mcpfleet_gateway.config_store import ConfigInvalid, ConfigStore
from mcpfleet_gateway.consul_source import ConsulSettings
from mcpfleet_gateway.ratelimit import RateLimitSettings
from mcpfleet_gateway.rbac import RBACSettings
from mcpfleet_gateway.upstreams.spec import UpstreamSpec

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
PREFIX_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenSettings(_Strict):
    host: str = Field(default="127.0.0.1", description="Address to listen on; 0.0.0.0 in a container.")
    port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    mcp_path: str = Field(default="/mcp", pattern=r"^/", description="Streamable HTTP endpoint.")
    sse_path: str = Field(default="/sse", pattern=r"^/", description="Legacy SSE stream endpoint.")
    messages_path: str = Field(default="/messages/", pattern=r"^/.*/$", description="Legacy SSE message posts.")
    rest_prefix: str = Field(default="/api/v1", pattern=r"^/", description="REST facade for bots.")
    stateless: bool = Field(
        default=False,
        description="Serve streamable HTTP without sessions (every replica answers every request; no "
        "server-initiated notifications). The 2026-07-28 revision is stateless either way.",
    )
    public_url: str | None = Field(
        default=None, description="How clients reach the gateway (for OAuth metadata and printed client configs)."
    )


class HardeningSettings(_Strict):
    allowed_hosts: tuple[str, ...] = Field(
        default=("127.0.0.1:*", "localhost:*", "[::1]:*"),
        description="Host header values accepted (host:port, `*` port wildcard); DNS-rebinding defence. "
        "Use ('*',) only behind a proxy that checks Host.",
    )
    allowed_origins: tuple[str, ...] = Field(
        default=("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"),
        description="Origin header values accepted when a browser sends one.",
    )
    cors_origins: tuple[str, ...] = Field(default=(), description="Origins allowed to call the REST facade via CORS.")
    ip_allowlist: tuple[str, ...] = Field(
        default=(), description="Client networks (CIDR) allowed in; empty allows every address."
    )
    trusted_proxies: tuple[str, ...] = Field(
        default=(), description="Networks whose X-Forwarded-For is believed for the client address."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576, description="Largest request body.")

    @field_validator("ip_allowlist", "trusted_proxies")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP network; write it as CIDR, e.g. 10.0.0.0/8") from None
        return value


class ConfigMapRef(_Strict):
    """The catalog ConfigMap the operator writes, read through the Kubernetes API and followed by a watch."""

    namespace: str = Field(pattern=_DNS_LABEL, description="Namespace of the ConfigMap (where the operator runs).")
    name: str = Field(
        default=CATALOG_CONFIGMAP, max_length=253, pattern=_DNS_SUBDOMAIN, description="Name of the ConfigMap."
    )
    key: str = Field(default=CATALOG_KEY, pattern=r"^[-._a-zA-Z0-9]{1,253}$", description="Data key of the JSON.")


class CatalogSource(_Strict):
    path: Path | None = Field(
        default=None, description="catalog.json written by the operator (a mounted ConfigMap or a local file)."
    )
    configmap: ConfigMapRef | None = Field(
        default=None,
        description="Read the catalog ConfigMap through the Kubernetes API instead of a file; exclusive with path.",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="configmap: kubeconfig used outside a cluster (default: in-cluster credentials, else "
        "$KUBECONFIG, else ~/.kube/config).",
    )
    context: str | None = Field(default=None, min_length=1, description="configmap: kubeconfig context to use.")
    poll_seconds: float = Field(
        default=1.0, ge=0.01, le=300, description="How often the file is checked for changes (path only)."
    )
    endpoint_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Where to reach catalog servers instead of their cataloged endpoint, by server name "
        "(namespace/name) or tool prefix, e.g. {'team-a/k8s-ops': 'http://127.0.0.1:18080/mcp'} for a gateway "
        "outside the cluster.",
    )

    @field_validator("endpoint_overrides")
    @classmethod
    def _override_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for server, url in value.items():
            if not server or len(server) > 253:
                raise ValueError(f"endpoint_overrides: {server!r} is not a server name (namespace/name) or prefix")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"endpoint_overrides.{server}: {url!r} is not an absolute http:// or https:// URL "
                    "(write the full endpoint, e.g. http://127.0.0.1:18080/mcp)"
                )
            try:
                parts.port  # noqa: B018 - parsing is the check
            except ValueError:
                raise ValueError(f"endpoint_overrides.{server}: {url!r} has an invalid port") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CatalogSource:
        if self.path is not None and self.configmap is not None:
            raise ValueError(
                "catalog.path and catalog.configmap are exclusive: read the mounted file (path) or the "
                "ConfigMap through the API (configmap), not both"
            )
        if self.configmap is None:
            for field in ("kubeconfig", "context"):
                if getattr(self, field) is not None:
                    raise ValueError(f"catalog.{field} applies only with catalog.configmap; remove it or add configmap")
        return self


class ToolOverride(_Strict):
    risk: Risk | None = Field(default=None, description="Risk instead of the inferred one.")
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    cache_ttl_seconds: float | None = Field(default=None, ge=0, le=86400, description="SAFE tools only.")
    permissions: tuple[str, ...] | None = Field(default=None, description="Permissions instead of <prefix>:<verb>.")


class CacheSettings(_Strict):
    max_entries: int = Field(default=10_000, ge=0, le=1_000_000, description="Result cache size (SAFE tools).")
    max_entry_bytes: int = Field(default=262_144, ge=0, description="Larger results are not cached.")


class RedisSettings(_Strict):
    url: SecretStr | None = Field(
        default=None, description="redis://[user:password@]host:port/db for rate limits and the audit stream."
    )
    timeout_seconds: float = Field(default=0.5, gt=0, le=30)


class StdioSettings(_Strict):
    subject: str = Field(default="local", description="Who a stdio client is (it has no credentials).")
    roles: tuple[str, ...] = Field(default=("viewer",), description="Roles of the stdio client.")


class ConfirmationSettings(_Strict):
    state_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description=(
            "Key that signs the state of a call waiting for the user's confirmation, so that the client's retry "
            "is known as the same call (no second rate-limit token). Give every replica the same value "
            "(e.g. ${MCPFLEET_GATEWAY_STATE_SECRET}); unset: a random key per process, and a retry that lands on "
            "another replica counts as a new call."
        ),
    )
    state_ttl_seconds: int = Field(
        default=600, ge=10, le=86_400, description="How long the user may take to answer a confirmation."
    )


class SelfConfigSettings(_Strict):
    enabled: bool = Field(default=True, description="Offer the admin-only config tools (validate/show/set).")
    prefix: str = Field(default="gateway", pattern=PREFIX_PATTERN, description="Prefix of the config tools.")


class GatewayConfig(_Strict):
    """The whole gateway config file."""

    listen: ListenSettings = Field(default_factory=ListenSettings)
    hardening: HardeningSettings = Field(default_factory=HardeningSettings)
    auth: AuthSettings = Field(
        default_factory=AuthSettings,
        description="Without jwks_url or hs256_secret no token is accepted; anonymous access only when set.",
    )
    rbac: RBACSettings = Field(default_factory=RBACSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    catalog: CatalogSource = Field(default_factory=CatalogSource)
    consul: ConsulSettings | None = Field(
        default=None, description="Consul as a source of upstreams: services carrying a tag; none turns it off."
    )
    upstreams: dict[str, UpstreamSpec] = Field(
        default_factory=dict, description="Static upstreams by name (the name is the default prefix)."
    )
    separator: str = Field(default=DEFAULT_SEPARATOR, min_length=1, max_length=3, description="prefix<sep>tool.")
    tools: dict[str, ToolOverride] = Field(
        default_factory=dict, description="Per qualified tool name (or glob): risk, timeout, cache, permissions."
    )
    cache: CacheSettings = Field(default_factory=CacheSettings)
    confirmations: ConfirmationSettings = Field(default_factory=ConfirmationSettings)
    stdio: StdioSettings = Field(default_factory=StdioSettings)
    self_config: SelfConfigSettings = Field(default_factory=SelfConfigSettings)

    @field_validator("upstreams")
    @classmethod
    def _upstream_names(cls, value: dict[str, UpstreamSpec]) -> dict[str, UpstreamSpec]:
        for name in value:
            if not re.match(PREFIX_PATTERN, name):
                raise ValueError(f"upstream name {name!r}: lowercase letters, digits and '-', at most 63")
        return value

    @model_validator(mode="after")
    def _audit_has_a_sink(self) -> GatewayConfig:
        if (
            self.audit.enabled
            and self.audit.log_path is None
            and (self.redis.url is None or not self.audit.redis_stream)
        ):
            raise ValueError(
                "audit is on but has nowhere to write: set audit.log_path (JSON lines) and/or redis.url with "
                "audit.redis_stream, or audit.enabled: false"
            )
        return self

    @model_validator(mode="after")
    def _prefixes_are_unique(self) -> GatewayConfig:
        prefixes: dict[str, str] = {}
        for name, spec in self.upstreams.items():
            prefix = spec.prefix or name
            if prefix in prefixes:
                raise ValueError(f"upstreams {prefixes[prefix]} and {name} both use prefix {prefix!r}")
            prefixes[prefix] = name
        return self


def expand_env(document: Any, environ: Mapping[str, str] | None = None, path: str = "") -> Any:
    """Replace ${NAME} / ${NAME:-default} in every string; unset without default raises naming the field."""
    env = os.environ if environ is None else environ
    if isinstance(document, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigInvalid(
                [f"{path or '(top level)'}: environment variable {name} is not set (or write ${{{name}:-default}})"]
            )

        return _ENV_REF.sub(substitute, document)
    if isinstance(document, dict):
        return {key: expand_env(value, env, f"{path}.{key}" if path else str(key)) for key, value in document.items()}
    if isinstance(document, list):
        return [expand_env(value, env, f"{path}.{index}") for index, value in enumerate(document)]
    return document


def config_store(path: Path) -> ConfigStore[GatewayConfig]:
    return ConfigStore(path, GatewayConfig, prepare=expand_env)


def config_schema() -> dict[str, Any]:
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mcpfleet gateway config"
    return schema


class GatewaySettings(BaseSettings):
    """The process: where the config is and who this replica is. Everything else lives in the config file."""

    model_config = SettingsConfigDict(env_prefix="MCPFLEET_GATEWAY_", extra="ignore", frozen=True)

    config: Path | None = Field(default=None, description="The config file; none means the built-in defaults.")
    replica: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    port: int | None = Field(default=None, ge=0, le=65535, description="Overrides listen.port.")
    host: str | None = Field(default=None, description="Overrides listen.host.")


def load_config(settings: GatewaySettings) -> GatewayConfig:
    """The config file, validated and ${VAR} expanded; ConfigInvalid names each problem."""
    if settings.config is None:
        missing = "no config file: pass --config FILE or set MCPFLEET_GATEWAY_CONFIG (`mcpfleet config schema`)"
        raise ConfigInvalid([missing])
    config = config_store(settings.config).load()
    listen = config.listen.model_copy(
        update={k: v for k, v in (("port", settings.port), ("host", settings.host)) if v is not None}
    )
    return config.model_copy(update={"listen": listen})
