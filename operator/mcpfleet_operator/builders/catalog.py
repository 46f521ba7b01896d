"""Pure catalog building: from the tools a server really serves to its entry in the catalog (contract 3).

Policy lives here, I/O does not: the allow/deny globs, risk overrides, and the drift defence. A tool that
keeps its name while its description or input schema changes is *drift*: it is always reported, and with
``spec.tools.requireApproval`` it stays out of the catalog (the previously approved definition keeps
serving) until ``spec.tools.approvedDigest`` names the server's current tool digest.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcpfleet_contracts.catalog import DEFAULT_SEPARATOR, CatalogServer, CatalogTool, catalog_tool
from mcpfleet_contracts.mcpserver import MCPServerSpec, Risk, ToolsPolicy, Transport
from mcpfleet_operator.builders.children import service_endpoint
from mcpfleet_operator.builders.defaults import BUILT_IN_RISK_OVERRIDES, effective_tool_prefix
from mcpfleet_operator.builders.model import Owner


def catalog_key(owner: Owner) -> str:
    """How a server is named in the catalog: namespace/name."""
    return f"{owner.namespace}/{owner.name}"


def tool_allowed(name: str, policy: ToolsPolicy | None) -> bool:
    """spec.tools.allow (when given, a tool must match one glob), then spec.tools.deny (a match removes it)."""
    if policy is None:
        return True
    if policy.allow is not None and not any(fnmatch.fnmatchcase(name, glob) for glob in policy.allow):
        return False
    return not any(fnmatch.fnmatchcase(name, glob) for glob in policy.deny or ())


def catalog_tools(
    prefix: str,
    tools: Sequence[Mapping[str, Any]],
    policy: ToolsPolicy | None,
    *,
    separator: str = DEFAULT_SEPARATOR,
    safe_cache_seconds: float = 0.0,
    default_overrides: Mapping[str, Risk] | None = None,
) -> list[CatalogTool]:
    """Entries for the allowed tools, sorted by name; ``policy.riskOverrides`` win over ``default_overrides``."""
    overrides = {**(default_overrides or {}), **((policy.risk_overrides or {}) if policy is not None else {})}
    entries = [
        catalog_tool(prefix, tool, separator=separator, risk_overrides=overrides, safe_cache_seconds=safe_cache_seconds)
        for tool in tools
        if tool_allowed(str(tool["name"]), policy)
    ]
    return sorted(entries, key=lambda entry: entry.name)


@dataclass(frozen=True)
class ServerEntry:
    """A server's catalog entry and what the drift defence found on the way."""

    server: CatalogServer | None  # None: the server cannot be reached remotely (stdio)
    drifted: tuple[str, ...] = ()  # tools whose description or input schema changed
    pending: tuple[str, ...] = ()  # new or changed tools held for approval
    pending_digest: str | None = None  # the digest to approve to release them


def _changed(entries: Sequence[CatalogTool], previous: CatalogServer | None) -> tuple[list[str], list[str]]:
    """(drifted, new): tools whose definition changed under the same name, and tools not cataloged before."""
    before = {entry.upstream_name: entry.schema_digest for entry in previous.tools} if previous else {}
    drifted = [
        e.upstream_name for e in entries if e.upstream_name in before and before[e.upstream_name] != e.schema_digest
    ]
    new = [e.upstream_name for e in entries if e.upstream_name not in before]
    return drifted, new


def build_server_entry(
    owner: Owner,
    spec: MCPServerSpec,
    tools: Sequence[Mapping[str, Any]],
    digest: str,
    previous: CatalogServer | None,
    *,
    separator: str = DEFAULT_SEPARATOR,
    safe_cache_seconds: float = 0.0,
    endpoint: str | None = None,
) -> ServerEntry:
    """The catalog entry for the tools a server serves (``digest`` is their contract-2 digest).

    ``previous`` is the server's entry in the current catalog: the reference for drift and, under
    requireApproval, the definitions that keep serving while changes wait for a person.
    """
    if spec.transport == Transport.STDIO:
        return ServerEntry(server=None)
    prefix = effective_tool_prefix(spec, owner.name)
    entries = catalog_tools(
        prefix,
        tools,
        spec.tools,
        separator=separator,
        safe_cache_seconds=safe_cache_seconds,
        default_overrides=BUILT_IN_RISK_OVERRIDES.get(spec.type),
    )
    drifted, new = _changed(entries, previous)
    pending: list[str] = []
    policy = spec.tools
    if policy is not None and policy.require_approval and policy.approved_digest != digest:
        pending = sorted(set(drifted) | set(new))
        approved = {entry.upstream_name: entry for entry in previous.tools} if previous else {}
        # Held tools drop out; a changed tool keeps serving its approved definition until the change is approved.
        entries = sorted(
            [e for e in entries if e.upstream_name not in pending]
            + [approved[name] for name in drifted if name in approved],
            key=lambda entry: entry.name,
        )
    server = CatalogServer(
        name=catalog_key(owner),
        prefix=prefix,
        endpoint=endpoint or service_endpoint(owner, spec),
        transport=spec.transport,
        tools_digest=digest,
        tools=tuple(entries),
    )
    return ServerEntry(
        server=server,
        drifted=tuple(sorted(drifted)),
        pending=tuple(pending),
        pending_digest=digest if pending else None,
    )


__all__ = ["ServerEntry", "build_server_entry", "catalog_key", "catalog_tools", "tool_allowed"]
