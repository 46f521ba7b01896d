"""The cmdb server's settings: CMDB_* variables over the operator's config block ``config.cmdb``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcpfleet_servers.base.settings import ConfigFile

# Where the operator mounts spec.config.cmdb.tokenSecret (operator builders: SECRETS_DIR/<name>/<key>).
SECRETS_DIR = Path("/var/run/secrets/mcpfleet")
_URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"
_PATH_PATTERN = r"^/[^\s?#]*$"


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
        return self

    @property
    def scheme(self) -> Literal["bearer", "token"]:
        return self.auth_scheme or ("token" if self.backend == "netbox" else "bearer")

    @classmethod
    def from_config(cls, config: ConfigFile | None) -> CmdbSettings:
        """config.cmdb (backend, url, tokenSecret) from the operator's file gives defaults; CMDB_* set wins.

        ``tokenSecret`` (a Secret the operator mounts as a file) becomes CMDB_TOKEN_FILE unless the environment
        names a token of its own.
        """
        block: dict[str, Any] = {}
        if config is not None:
            raw = config.config.get("cmdb")
            block = raw if isinstance(raw, dict) else {}
        set_in_env = {name.upper() for name in os.environ}
        values: dict[str, Any] = {}
        for key in ("backend", "url"):
            if block.get(key) is not None:
                values[key] = block[key]
        secret = block.get("tokenSecret")
        if isinstance(secret, dict) and secret.get("name") and secret.get("key"):
            values["token_file"] = SECRETS_DIR / str(secret["name"]) / str(secret["key"])
        kept = {name: value for name, value in values.items() if f"CMDB_{name}".upper() not in set_in_env}
        if "token_file" in kept and "CMDB_TOKEN" in set_in_env:
            del kept["token_file"]  # a token from the environment replaces the mounted Secret
        return cls(**kept)
