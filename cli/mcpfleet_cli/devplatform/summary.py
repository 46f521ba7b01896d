"""What `mcpfleet dev` prints once the platform is ready. Pure: the ready info in, lines out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mcpfleet_cli.devplatform.configs import TOKEN_ENV, TOKEN_LIFETIME, TOKEN_ROLES, client_config
from mcpfleet_cli.devplatform.manifests import LocalServer
from mcpfleet_cli.devplatform.ready import ReadyInfo
from mcpfleet_contracts.catalog import Catalog


def _tool_counts(catalog: Catalog) -> dict[str, int]:
    return {server.prefix: len(server.tools) for server in catalog.servers}


def summary_lines(
    info: ReadyInfo,
    servers: Sequence[LocalServer],
    catalog: Catalog,
    *,
    port: int,
    ready_file: Path,
    elapsed_seconds: float,
) -> list[str]:
    """The URLs, the token (its only appearance), a client configuration and how to stop."""
    counts = _tool_counts(catalog)
    served = ", ".join(f"{s.name} {s.endpoint} ({s.prefix}:*, {counts.get(s.prefix, 0)} tools)" for s in servers)
    roles = ", ".join(TOKEN_ROLES)
    return [
        "",
        f"mcpfleet dev is ready ({elapsed_seconds:.0f} s).",
        "",
        f"  gateway     {info.mcp_url}  (REST {info.url}/api/v1/tools; {info.url}/ready, {info.url}/metrics)",
        f"  token       export {TOKEN_ENV}={info.token}",
        f"              (role {roles}, valid {TOKEN_LIFETIME.days} days; also in {ready_file}, mode 0600)",
        f"  kubernetes  export KUBECONFIG={info.kubeconfig}",
        f"  servers     {served}",
        f"  operator    {info.operator_metrics}",
        f"  redis       {info.redis}",
        f"  consul      {info.consul or 'not running (build it with `make consul` to have one)'}",
        f"  prometheus  {info.prometheus or 'not running'}",
        f"  logs        {info.logs}",
        "",
        f"MCP client configuration (Claude Code .mcp.json; the token comes from ${TOKEN_ENV}):",
        "",
        *json.dumps(client_config(catalog, port), indent=2).splitlines(),
        "",
        "Cursor (with the KUBECONFIG above): "
        f"mcpfleet catalog export --format cursor --gateway {info.url} --output ~/.cursor/mcp.json",
        "Check everything: mcpfleet doctor",
        "",
        "Ctrl-C stops everything.",
    ]
