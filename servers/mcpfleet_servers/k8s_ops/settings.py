"""The k8s-ops server's one settings object: K8S_* variables, optionally under the operator's config block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class K8sOpsSettings(BaseSettings):
    """Validated once at start; a bad value stops the server naming the K8S_* variable."""

    model_config = SettingsConfigDict(env_prefix="K8S_", extra="ignore", frozen=True)

    kubeconfig_path: str | None = Field(
        default=None, description="kubeconfig file; unset uses in-cluster credentials, then ~/.kube/config."
    )
    context: str | None = Field(default=None, description="kubeconfig context; unset uses the current context.")
    namespace: str = Field(default="default", pattern=_DNS_LABEL, description="Namespace of tools called without one.")
    protected_namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("kube-system", "kube-public", "kube-node-lease"),
        description="Comma-separated namespaces that may be read but never changed.",
    )
    denied_kinds: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("Secret",),
        description="Comma-separated kinds shown with metadata only, never their data.",
    )
    allowed_namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Comma-separated namespaces the tools may touch; empty allows every namespace."
    )
    exec_enabled: bool = Field(default=False, description="Offer exec_in_pod (a HIGH-risk tool).")
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="Deadline of one Kubernetes API request."
    )
    probe_timeout_seconds: float = Field(
        default=3.0, gt=0, le=60, description="Deadline of the readiness probe of the API server."
    )
    field_manager: str = Field(default="mcpfleet-k8s-ops", min_length=1, max_length=128)

    @field_validator("protected_namespaces", "denied_kinds", "allowed_namespaces", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split(value)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, **overrides: Any) -> K8sOpsSettings:
        """Settings from the operator's config.json (``{"config": {"k8sOps": {...}}}``) with K8S_* on top.

        The file gives defaults; an environment variable that is set wins, as do explicit overrides.
        readOnly and requireConfirmation are the base's policy (MCP_READ_ONLY, MCP_REQUIRE_CONFIRMATION),
        which reads them from the same block.
        """
        block: Mapping[str, Any] = {}
        if config:
            inner = config.get("config", config)
            block = (inner or {}).get("k8sOps") or {}
        env = cls(**overrides)
        values: dict[str, Any] = {}
        explicit = env.model_fields_set
        if block.get("namespaces") and "allowed_namespaces" not in explicit:
            # The field's own validator reads a list or a comma-separated string ("team-a" is one namespace,
            # not six letters).
            values["allowed_namespaces"] = block["namespaces"]
        if not values:
            return env
        return cls(**{**{k: getattr(env, k) for k in explicit}, **values, **overrides})

    def is_protected(self, namespace: str) -> bool:
        return namespace in self.protected_namespaces

    def is_allowed(self, namespace: str) -> bool:
        return not self.allowed_namespaces or namespace in self.allowed_namespaces

    def is_denied_kind(self, kind: str) -> bool:
        return kind.lower() in {k.lower() for k in self.denied_kinds}
