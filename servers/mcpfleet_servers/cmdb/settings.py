"""The cmdb server's settings: CMDB_* variables over the operator's config block ``config.cmdb``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcpfleet_servers.base.settings import ConfigFile

# Where the operator mounts spec.config.cmdb.tokenSecret (operator builders: SECRETS_DIR/<name>/<key>).
SECRETS_DIR = Path("/var/run/secrets/mcpfleet")
_URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"
_PATH_PATTERN = r"^/[^\s?#]*$"
_REDIS_URL_PATTERN = r"^(rediss?|unix)://[^\s]+$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


# config.cmdb keys (the operator's camelCase) and the settings they give defaults to.
_CONFIG_KEYS = {
    "backend": "backend",
    "url": "url",
    "auditRedisUrl": "audit_redis_url",
    "auditStreams": "audit_streams",
    "auditLogPath": "audit_log_path",
}


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class CmdbSettings(BaseSettings):
    """Validated once at start; a bad value stops the server naming the CMDB_* variable."""

    model_config = SettingsConfigDict(env_prefix="CMDB_", extra="ignore", frozen=True)

    backend: Literal["kubernetes", "rest", "netbox"] = Field(
        default="kubernetes", description="Where assets come from."
    )
    kubeconfig_path: str | None = Field(
        default=None, description="kubeconfig file; unset uses in-cluster credentials, then KUBECONFIG."
    )
    context: str | None = Field(default=None, description="kubeconfig context; unset uses the current one.")
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    probe_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    max_objects_per_kind: int = Field(
        default=10000, ge=1, le=100000, description="Most objects of one kind read for one answer."
    )
    max_topology_nodes: int = Field(default=300, ge=10, le=5000, description="Most nodes in one topology.")
    default_actor: str = Field(default="mcp-client", min_length=1, max_length=128)

    # rest and netbox: the CMDB's HTTP API.
    url: str | None = Field(default=None, pattern=_URL_PATTERN, max_length=2048, description="Base URL of the CMDB.")
    token: SecretStr | None = Field(default=None, description="API token (rest, netbox).")
    token_file: Path | None = Field(default=None, description="File holding the API token; read on every request.")
    auth_scheme: Literal["bearer", "token"] | None = Field(
        default=None, description="Authorization header scheme; unset: Bearer for rest, Token for netbox."
    )
    tls_verify: bool = Field(default=True, description="Verify the CMDB's TLS certificate.")
    ca_file: Path | None = Field(default=None, description="CA bundle for the CMDB's certificate.")
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="Largest answer read.")
    # rest: where the generic CMDB API keeps things; {id} and {service} are filled in, URL-quoted.
    assets_path: str = Field(default="/api/v1/assets", pattern=_PATH_PATTERN)
    asset_path: str = Field(default="/api/v1/assets/{id}", pattern=_PATH_PATTERN)
    topology_path: str = Field(default="/api/v1/topology/{service}", pattern=_PATH_PATTERN)
    changes_path: str = Field(default="/api/v1/changes", pattern=_PATH_PATTERN)
    status_path: str = Field(default="/api/v1/assets/{id}/status", pattern=_PATH_PATTERN)
    status_method: Literal["PUT", "PATCH", "POST"] = Field(default="PUT")
    # netbox: the custom field holding an object's environment (tags env-<name> are read too).
    netbox_environment_field: str = Field(default="environment", pattern=r"^[a-z0-9_]{1,50}$")
    # rest and netbox: a list tool or a topology reads at most this many pages (HTTP requests) for one answer.
    max_pages_per_call: int = Field(
        default=50, ge=1, le=1000, description="Most pages (requests) read from the CMDB for one answer."
    )

    # kubernetes: the platform's own audit (the gateway's trail) as a source of change records.
    audit_redis_url: SecretStr | None = Field(
        default=None,
        description="redis://[user:password@]host:port/db holding the gateway's audit streams; unset: none.",
    )
    audit_redis_password_file: Path | None = Field(
        default=None, description="File holding the Redis password; read at start."
    )
    audit_streams: str = Field(
        default="mcpfleet:audit:*",
        min_length=1,
        max_length=1024,
        description="Comma-separated stream names or glob patterns (one stream per gateway replica).",
    )
    audit_log_path: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="The gateway's JSON lines audit log: a path or a glob pattern; unset: no audit log.",
    )
    audit_default_namespace: str = Field(
        default="default",
        pattern=_DNS_LABEL,
        description="Namespace of audited calls that name none (the k8s-ops server's K8S_NAMESPACE).",
    )
    audit_ignore_tools: str = Field(
        default="*generate_*",
        max_length=1024,
        description="Comma-separated glob patterns of qualified tool names never counted as changes.",
    )
    audit_max_scan: int = Field(default=5000, ge=1, le=1_000_000, description="Most audit records read for one answer.")
    audit_page_size: int = Field(default=500, ge=1, le=10_000, description="Audit records read per round trip.")
    audit_max_trails: int = Field(default=32, ge=1, le=1000, description="Most audit streams and log files read.")
    audit_timeout_seconds: float = Field(default=10.0, gt=0, le=600, description="Deadline of one audit scan.")

    @field_validator("audit_redis_url", mode="after")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        try:
            valid = bool(re.match(_REDIS_URL_PATTERN, value.get_secret_value()))
            _ = urlsplit(value.get_secret_value()).port  # a port that is no number raises here
        except ValueError:
            valid = False
        if not valid:
            raise ValueError("must be a redis://, rediss:// or unix:// URL, e.g. redis://redis.mcpfleet:6379/0")
        return value

    @field_validator("url", mode="after")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _http_backends_need_a_url(self) -> Self:
        if self.backend != "kubernetes" and self.url is None:
            raise ValueError(f"backend {self.backend} needs CMDB_URL (or config.cmdb.url): the CMDB's base URL")
        if self.token is not None and self.token_file is not None:
            raise ValueError("set only one of CMDB_TOKEN and CMDB_TOKEN_FILE")
        for name in ("asset_path", "status_path"):
            if "{id}" not in getattr(self, name):
                raise ValueError(f"CMDB_{name.upper()} must contain {{id}}")
        if "{service}" not in self.topology_path:
            raise ValueError("CMDB_TOPOLOGY_PATH must contain {service}")
        if self.backend != "kubernetes" and (self.audit_redis_url or self.audit_log_path):
            raise ValueError(
                "CMDB_AUDIT_REDIS_URL and CMDB_AUDIT_LOG_PATH are read by the kubernetes backend only; unset them "
                f"for backend {self.backend}"
            )
        if not self.stream_patterns:
            raise ValueError("CMDB_AUDIT_STREAMS names no stream; e.g. mcpfleet:audit:*")
        return self

    @property
    def stream_patterns(self) -> tuple[str, ...]:
        """CMDB_AUDIT_STREAMS split at commas."""
        return _split(self.audit_streams)

    @property
    def ignored_tools(self) -> tuple[str, ...]:
        """CMDB_AUDIT_IGNORE_TOOLS split at commas."""
        return _split(self.audit_ignore_tools)

    @property
    def scheme(self) -> Literal["bearer", "token"]:
        return self.auth_scheme or ("token" if self.backend == "netbox" else "bearer")

    @classmethod
    def from_config(cls, config: ConfigFile | None) -> CmdbSettings:
        """config.cmdb (backend, url, tokenSecret, auditRedisUrl, auditStreams, auditLogPath,
        auditRedisPasswordSecret) from the operator's file gives defaults; CMDB_* set wins.

        ``tokenSecret`` (a Secret the operator mounts as a file) becomes CMDB_TOKEN_FILE unless the environment
        names a token of its own; ``auditRedisPasswordSecret`` likewise becomes CMDB_AUDIT_REDIS_PASSWORD_FILE.
        ``auditStreams`` may be a list.
        """
        block: dict[str, Any] = {}
        if config is not None:
            raw = config.config.get("cmdb")
            block = raw if isinstance(raw, dict) else {}
        set_in_env = {name.upper() for name in os.environ}
        values: dict[str, Any] = {}
        for key, name in _CONFIG_KEYS.items():
            if block.get(key) is not None:
                values[name] = block[key]
        if isinstance(values.get("audit_streams"), list):
            values["audit_streams"] = ",".join(str(pattern) for pattern in values["audit_streams"])
        for key, name in (("tokenSecret", "token_file"), ("auditRedisPasswordSecret", "audit_redis_password_file")):
            secret = block.get(key)
            if isinstance(secret, dict) and secret.get("name") and secret.get("key"):
                values[name] = SECRETS_DIR / str(secret["name"]) / str(secret["key"])
        kept = {name: value for name, value in values.items() if f"CMDB_{name}".upper() not in set_in_env}
        if "token_file" in kept and "CMDB_TOKEN" in set_in_env:
            del kept["token_file"]  # a token from the environment replaces the mounted Secret
        return cls(**kept)
