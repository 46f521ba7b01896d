"""The operator's one settings object, read from MCPFLEET_OPERATOR_* variables at start."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mcpfleet_contracts.catalog import CATALOG_CONFIGMAP
from mcpfleet_contracts.mcpserver import QUANTITY
from mcpfleet_operator.builders.model import BuildDefaults


class OperatorSettings(BaseSettings):
    """Validated once at start; a bad value stops the operator with the variable's name."""

    model_config = SettingsConfigDict(env_prefix="MCPFLEET_OPERATOR_", extra="ignore", frozen=True)

    namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated namespaces to watch; empty watches the whole cluster.",
    )
    server_image: str = Field(
        default="ghcr.io/mcpfleet/mcpfleet:0.1.0",
        min_length=1,
        description="Image of the built-in servers (k8s-ops, monitoring, cmdb) unless spec.image overrides it.",
    )
    default_cpu_request: str = Field(default="50m", pattern=QUANTITY)
    default_memory_request: str = Field(default="64Mi", pattern=QUANTITY)
    default_cpu_limit: str = Field(default="500m", pattern=QUANTITY)
    default_memory_limit: str = Field(default="256Mi", pattern=QUANTITY)
    worker_limit: int = Field(
        default=20, ge=1, le=1000, description="MCPServers whose children are applied concurrently."
    )
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Port of /metrics; 0 turns it off.")
    metrics_host: str = "0.0.0.0"
    liveness_port: int = Field(default=8080, ge=0, le=65535, description="Port of kopf's /healthz; 0 turns it off.")
    field_manager: str = Field(default="mcpfleet-operator", min_length=1, max_length=128)
    peering: str | None = Field(
        default=None,
        description="Name of a kopf peering object to run several replicas (one active); unset runs standalone.",
    )
    kubeconfig: str | None = Field(default=None, description="kubeconfig file when running outside a cluster.")
    context: str | None = Field(default=None, description="kubeconfig context when running outside a cluster.")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    # ---- the catalog (contract 3)
    catalog_namespace: str = Field(
        default="mcpfleet-system",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Namespace of the catalog ConfigMap (the chart sets the operator's own namespace).",
    )
    catalog_name: str = Field(default=CATALOG_CONFIGMAP, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=200)
    catalog_keep: int = Field(default=5, ge=1, le=50, description="Earlier catalog revisions kept for rollback.")
    catalog_debounce_seconds: float = Field(
        default=0.2, ge=0, le=30, description="Changes arriving within this window become one catalog write."
    )
    tools_list_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Longest the operator waits for a server's tools/list."
    )
    safe_cache_seconds: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description=(
            "How long the gateway may reuse answers of SAFE tools (catalog cache policy). 0 keeps every answer "
            "fresh: an assistant that just scaled a Deployment must see the new pods."
        ),
    )
    external_poll_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="How often external endpoints are re-listed (with ±20% jitter)."
    )

    # ---- Consul
    consul_address: str | None = Field(
        default=None,
        description="Consul HTTP API, e.g. http://consul-server.consul:8500; unset turns registration off.",
        pattern=r"^https?://[^\s/]+(:[0-9]+)?/?$",
    )
    consul_token: SecretStr | None = Field(
        default=None, description="Consul ACL token (the chart reads it from a Secret)."
    )
    consul_token_file: Path | None = Field(
        default=None, description="File holding the Consul ACL token (a mounted Secret); read at every retry."
    )
    consul_datacenter: str | None = Field(default=None, max_length=64)
    consul_retry_seconds: float = Field(
        default=10.0, gt=0, le=600, description="Longest wait between attempts while Consul is unreachable."
    )
    consul_verify_tls: bool = True

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    def build_defaults(self) -> BuildDefaults:
        return BuildDefaults(
            server_image=self.server_image,
            requests={"cpu": self.default_cpu_request, "memory": self.default_memory_request},
            limits={"cpu": self.default_cpu_limit, "memory": self.default_memory_limit},
        )
