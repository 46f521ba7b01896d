"""Config files and credentials of the dev platform's processes. Pure: ports and paths in, documents out."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from mcpfleet_cli.catalog import ExportFormat, ExportOptions, client_entries
from mcpfleet_contracts.catalog import Catalog

# The gateway reads the signing secret from its environment: it never lands in a file.
TOKEN_SECRET_ENV = "MCPFLEET_DEV_TOKEN_SECRET"
TOKEN_ENV = "MCPFLEET_TOKEN"
ISSUER = "mcpfleet-dev"
TOKEN_SUBJECT = "developer"
TOKEN_ROLES = ("admin",)
TOKEN_LIFETIME = datetime.timedelta(days=30)
SCRAPE_INTERVAL = "5s"


def gateway_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def gateway_audience(port: int) -> str:
    """The gateway's resource identifier: its MCP endpoint, as a client would name it."""
    return f"{gateway_url(port)}/mcp"


def gateway_config(
    *,
    port: int,
    redis_url: str,
    audit_dir: Path,
    catalog_namespace: str,
    catalog_name: str,
    kubeconfig: Path,
) -> dict[str, Any]:
    """The gateway's config file: HS256 tokens, Redis rate limits, audit to a file and a stream, the catalog
    ConfigMap followed through the API with a reader's kubeconfig."""
    return {
        "listen": {"host": "127.0.0.1", "port": port, "public_url": gateway_url(port)},
        "auth": {
            "issuer": ISSUER,
            "audience": gateway_audience(port),
            "hs256_secret": f"${{{TOKEN_SECRET_ENV}}}",
            "algorithms": ["HS256"],
        },
        "rate_limits": {"global_limit": "6000/minute", "user_limit": "1200/minute"},
        "audit": {
            "log_path": str(audit_dir / "audit-{replica}.jsonl"),
            "spool_dir": str(audit_dir / "spool-{replica}"),
            "redis_stream": "mcpfleet:audit:{replica}",
        },
        "redis": {"url": redis_url},
        "catalog": {
            "configmap": {"namespace": catalog_namespace, "name": catalog_name},
            "kubeconfig": str(kubeconfig),
        },
    }


def mint_token(secret: str, port: int, now: datetime.datetime | None = None) -> str:
    """A bearer token the gateway accepts: the admin role, which may call every tool."""
    issued = now or datetime.datetime.now(datetime.UTC)
    claims = {
        "sub": TOKEN_SUBJECT,
        "roles": list(TOKEN_ROLES),
        "iss": ISSUER,
        "aud": gateway_audience(port),
        "iat": int(issued.timestamp()),
        "exp": int((issued + TOKEN_LIFETIME).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def client_config(catalog: Catalog, port: int) -> dict[str, Any]:
    """An `mcpServers` block for Claude Code (.mcp.json) and look-alikes: the gateway, its token by reference."""
    options = ExportOptions(ExportFormat.CLAUDE, gateway=gateway_url(port), token_env=TOKEN_ENV)
    return {"mcpServers": client_entries(catalog, options)}


@dataclass(frozen=True)
class ScrapeTarget:
    """One /metrics endpoint Prometheus scrapes."""

    job: str
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)


def prometheus_config(targets: Sequence[ScrapeTarget], own_port: int) -> dict[str, Any]:
    """Scrape the platform's own processes (and Prometheus itself), one job per component."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in targets:
        group: dict[str, Any] = {"targets": [f"127.0.0.1:{target.port}"]}
        if target.labels:
            group["labels"] = dict(target.labels)
        jobs.setdefault(target.job, []).append(group)
    jobs["prometheus"] = [{"targets": [f"127.0.0.1:{own_port}"]}]
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [{"job_name": job, "static_configs": groups} for job, groups in jobs.items()],
    }


def consul_config(http_port: int, ports: Mapping[str, int]) -> dict[str, Any]:
    """A dev agent on loopback only; serf, RPC and gRPC on free ports so it never clashes with a local Consul."""
    return {
        "ports": {"http": http_port, "dns": -1, "grpc_tls": -1, **ports},
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "advertise_addr": "127.0.0.1",
        "log_level": "warn",
        "disable_update_check": True,
    }
