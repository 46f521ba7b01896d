"""The monitoring server's one settings object: MON_* variables, optionally under the operator's config block."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_snake
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MON_"
# Where the operator mounts spec.config.monitoring.<backend>TokenSecret (operator builders: SECRETS_DIR/<name>).
SECRETS_DIR = Path("/var/run/secrets/mcpfleet")
_URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"
# config.monitoring keys this module reads (the CRD's typed block); readOnly/requireConfirmation are the base's.
_BLOCK_FIELDS = ("prometheus_url", "alertmanager_url", "grafana_url", "grafana_org_id")
_BACKENDS = ("prometheus", "alertmanager", "grafana")


@dataclass(frozen=True)
class BackendAuth:
    """How to authenticate to one backend; at most one of token, token file or basic auth."""

    token: SecretStr | None = None
    token_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    org_id: int | None = None  # Grafana's X-Grafana-Org-Id


@dataclass(frozen=True)
class BackendConfig:
    name: str  # "Prometheus", "Alertmanager", "Grafana"
    url: str
    auth: BackendAuth


class MonitoringSettings(BaseSettings):
    """Validated once at start; a bad value stops the server naming the MON_* variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    prometheus_url: str = Field(
        pattern=_URL_PATTERN, max_length=2048, description="Base URL of the Prometheus HTTP API."
    )
    alertmanager_url: str | None = Field(
        default=None,
        pattern=_URL_PATTERN,
        max_length=2048,
        description="Base URL of Alertmanager (silences, alerts); unset: alerts come from Prometheus.",
    )
    grafana_url: str | None = Field(default=None, pattern=_URL_PATTERN, max_length=2048)

    prometheus_token: SecretStr | None = Field(default=None, description="Bearer token for Prometheus.")
    prometheus_token_file: Path | None = Field(default=None, description="File holding the Prometheus token.")
    prometheus_username: str | None = Field(default=None, description="Basic-auth user for Prometheus.")
    prometheus_password: SecretStr | None = None
    alertmanager_token: SecretStr | None = None
    alertmanager_token_file: Path | None = None
    alertmanager_username: str | None = None
    alertmanager_password: SecretStr | None = None
    grafana_token: SecretStr | None = None
    grafana_token_file: Path | None = None
    grafana_username: str | None = None
    grafana_password: SecretStr | None = None
    grafana_org_id: int | None = Field(default=None, ge=1, description="Sent as X-Grafana-Org-Id.")

    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig for health_check; unset: the Pod's ServiceAccount, else KUBECONFIG.",
    )
    kube_context: str | None = Field(default=None, max_length=253, description="kubeconfig context for health_check.")

    tls_verify: bool = Field(default=True, description="Verify the backends' TLS certificates.")
    ca_file: Path | None = Field(default=None, description="CA bundle for the backends' certificates.")
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="Deadline of one request.")
    probe_timeout_seconds: float = Field(default=3.0, gt=0, le=60, description="Deadline of the readiness probe.")
    max_response_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="A larger backend answer is refused with advice to narrow."
    )
    max_series: int = Field(default=50, ge=1, le=1000, description="Series kept in a range query's answer.")
    max_points_per_series: int = Field(
        default=250, ge=10, le=11000, description="Points per series in a range query's answer."
    )

    @field_validator("prometheus_url", "alertmanager_url", "grafana_url", mode="after")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _one_credential_per_backend(self) -> Self:
        for backend in _BACKENDS:
            given = [
                f"{ENV_PREFIX}{backend.upper()}_{kind.upper()}"
                for kind in ("token", "token_file", "username")
                if getattr(self, f"{backend}_{kind}") is not None
            ]
            if len(given) > 1:
                raise ValueError(f"set only one of {', '.join(given)}")
            if (getattr(self, f"{backend}_username") is None) != (getattr(self, f"{backend}_password") is None):
                raise ValueError(
                    f"basic auth needs both {ENV_PREFIX}{backend.upper()}_USERNAME and "
                    f"{ENV_PREFIX}{backend.upper()}_PASSWORD"
                )
        return self

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, **overrides: Any) -> MonitoringSettings:
        """Settings from the operator's config.json (``{"config": {"monitoring": {...}}}``) with MON_* on top.

        The file gives defaults; a MON_* variable that is set wins, as do explicit overrides.
        ``<backend>TokenSecret`` (a Secret the operator mounts as a file) becomes that backend's token file,
        unless the environment gives that backend a token or a user.
        """
        block: Mapping[str, Any] = {}
        if config:
            inner = config.get("config", config)
            block = (inner or {}).get("monitoring") or {}
        set_in_env = {name.upper() for name in os.environ}
        values: dict[str, Any] = {}
        for key, value in block.items():
            field = to_snake(key)
            if field in _BLOCK_FIELDS and value is not None:
                values[field] = value
        for backend in _BACKENDS:
            secret = block.get(f"{backend}TokenSecret")
            if isinstance(secret, Mapping) and secret.get("name") and secret.get("key"):
                values[f"{backend}_token_file"] = SECRETS_DIR / str(secret["name"]) / str(secret["key"])
        kept = {name: value for name, value in values.items() if f"{ENV_PREFIX}{name}".upper() not in set_in_env}
        for backend in _BACKENDS:
            from_env = {f"{ENV_PREFIX}{backend}_TOKEN".upper(), f"{ENV_PREFIX}{backend}_USERNAME".upper()}
            if from_env & set_in_env:
                kept.pop(f"{backend}_token_file", None)  # a credential from the environment replaces the Secret
        return cls(**{**kept, **overrides})

    def backends(self) -> list[BackendConfig]:
        """The configured backends, Prometheus first."""
        found = [BackendConfig("Prometheus", self.prometheus_url, self._auth("prometheus"))]
        if self.alertmanager_url:
            found.append(BackendConfig("Alertmanager", self.alertmanager_url, self._auth("alertmanager")))
        if self.grafana_url:
            found.append(BackendConfig("Grafana", self.grafana_url, self._auth("grafana")))
        return found

    def _auth(self, backend: str) -> BackendAuth:
        return BackendAuth(
            token=getattr(self, f"{backend}_token"),
            token_file=getattr(self, f"{backend}_token_file"),
            username=getattr(self, f"{backend}_username"),
            password=getattr(self, f"{backend}_password"),
            org_id=self.grafana_org_id if backend == "grafana" else None,
        )
