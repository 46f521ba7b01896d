"""The cmdb server's settings: CMDB_* variables over the operator's config block ``config.cmdb``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcpfleet_servers.base.settings import ConfigFile


class CmdbSettings(BaseSettings):
    """Validated once at start; a bad value stops the server naming the CMDB_* variable."""

    model_config = SettingsConfigDict(env_prefix="CMDB_", extra="ignore", frozen=True)

    # rest and netbox are CRD values this version cannot serve yet; asking for them fails at start.
    backend: Literal["kubernetes"] = Field(default="kubernetes", description="Where assets come from.")
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

    @classmethod
    def from_config(cls, config: ConfigFile | None) -> CmdbSettings:
        """config.cmdb.backend from the operator's file gives the default; CMDB_BACKEND wins when set."""
        env = cls()
        block: dict[str, Any] = {}
        if config is not None:
            raw = config.config.get("cmdb")
            block = raw if isinstance(raw, dict) else {}
        if "backend" in block and "backend" not in env.model_fields_set:
            return cls(**{name: getattr(env, name) for name in env.model_fields_set}, backend=block["backend"])
        return env
