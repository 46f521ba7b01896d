"""Contract 3, the aggregated tool catalog, and the risk model both its writer and its readers apply.

The operator writes the catalog (ConfigMap `mcpfleet-catalog`, key `catalog.json`); the gateway reads it
and applies the same rules to tools of upstreams it discovers itself (static upstreams in its config),
so a tool gets the same risk, permission, timeout and cache policy whichever way it arrived.

Risk inference, in order: MCP annotations (readOnlyHint → SAFE, destructiveHint → HIGH), then the verb
the name starts with, then explicit overrides. A tool whose verb is unknown is MEDIUM: unknown is not safe.
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcpfleet_contracts.mcpserver import Risk, Transport

CATALOG_VERSION = "mcpfleet.io/catalog/v1"
CATALOG_CONFIGMAP = "mcpfleet-catalog"  # the ConfigMap's default name
CATALOG_KEY = "catalog.json"  # its key
DEFAULT_SEPARATOR = ":"

SAFE_VERBS = frozenset({"get", "list", "describe", "query", "search", "show", "read", "watch", "find", "check"})
MEDIUM_VERBS = frozenset({"update", "scale", "patch", "set", "label", "annotate", "cordon", "uncordon", "expire"})
HIGH_VERBS = frozenset({"create", "delete", "restart", "rollback", "exec", "apply", "drain", "evict", "remove"})

# Reading verbs share one permission so a role says "may read k8s" once: list_pods and get_pod need k8s:get.
_PERMISSION_VERB = dict.fromkeys(SAFE_VERBS - {"query", "search"}, "get")

# How long a call may take unless the catalog or config says otherwise: changes get more time than reads.
DEFAULT_TIMEOUT_SECONDS = {Risk.SAFE: 30.0, Risk.MEDIUM: 60.0, Risk.HIGH: 120.0}

_WORD = re.compile(r"[a-z0-9]+")


def name_verb(tool_name: str) -> str:
    """The first word of a tool name: scale_deployment, scaleDeployment and scale-deployment → scale."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", tool_name).lower()
    words = _WORD.findall(spaced)
    return words[0] if words else ""


def infer_risk(
    tool_name: str, annotations: Mapping[str, Any] | None = None, overrides: Mapping[str, Risk] | None = None
) -> Risk:
    """Annotations, then the name's verb, then overrides (exact name or glob) — the last word wins."""
    risk = Risk.MEDIUM
    verb = name_verb(tool_name)
    if verb in SAFE_VERBS:
        risk = Risk.SAFE
    elif verb in HIGH_VERBS:
        risk = Risk.HIGH
    elif verb in MEDIUM_VERBS:
        risk = Risk.MEDIUM
    hints = annotations or {}
    if hints.get("destructiveHint") is True and hints.get("readOnlyHint") is not True:
        risk = Risk.HIGH
    elif hints.get("readOnlyHint") is True:
        risk = Risk.SAFE
    for pattern, override in (overrides or {}).items():
        if pattern == tool_name or fnmatch.fnmatchcase(tool_name, pattern):
            risk = override
    return risk


def required_permission(prefix: str, tool_name: str) -> str:
    """The permission a call needs besides tools:execute: `<prefix>:<verb>` (k8s:scale, k8s:get, cmdb:query)."""
    verb = name_verb(tool_name) or "call"
    return f"{prefix}:{_PERMISSION_VERB.get(verb, verb)}"


def qualified_name(prefix: str, tool_name: str, separator: str = DEFAULT_SEPARATOR) -> str:
    return f"{prefix}{separator}{tool_name}" if prefix else tool_name


def schema_digest(description: str | None, input_schema: Mapping[str, Any]) -> str:
    """sha256 over what a client relies on: the description and the canonical input schema."""
    canonical = json.dumps(
        {"description": description or "", "inputSchema": input_schema}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class CatalogTool(BaseModel):
    """One tool as clients see it through the gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=256, description="Qualified name, e.g. k8s:get_pods.")
    upstream_name: str = Field(
        alias="upstreamName", min_length=1, max_length=128, description="The name the server itself uses."
    )
    title: str | None = Field(default=None, description="Human-readable title.")
    description: str = Field(default="", max_length=16384, description="What the tool does.")
    input_schema: dict[str, Any] = Field(
        alias="inputSchema", default_factory=lambda: {"type": "object"}, description="JSON Schema of the arguments."
    )
    output_schema: dict[str, Any] | None = Field(
        alias="outputSchema", default=None, description="JSON Schema of structured results."
    )
    risk: Risk = Field(description="SAFE, MEDIUM or HIGH.")
    timeout_seconds: float = Field(alias="timeoutSeconds", gt=0, le=3600, description="Longest a call may take.")
    cache_ttl_seconds: float = Field(
        alias="cacheTtlSeconds", default=0.0, ge=0, le=86400, description="Reuse of SAFE answers; 0 disables."
    )
    permissions: tuple[str, ...] = Field(default=(), description="Permissions a caller needs, e.g. k8s:scale.")
    annotations: dict[str, Any] = Field(default_factory=dict, description="MCP tool annotations.")
    schema_digest: str = Field(alias="schemaDigest", default="", description="sha256 of description + schema.")

    @model_validator(mode="after")
    def _only_safe_is_cached(self) -> CatalogTool:
        if self.cache_ttl_seconds > 0 and self.risk is not Risk.SAFE:
            raise ValueError(f"{self.name}: only SAFE tools may be cached (risk is {self.risk.value})")
        return self


class CatalogServer(BaseModel):
    """One MCP server: where it is and what it offers."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=253, description="namespace/name of the MCPServer.")
    prefix: str = Field(max_length=63, description="Tool prefix, e.g. k8s.")
    endpoint: str = Field(description="URL the gateway connects to.")
    transport: Transport = Field(description="streamable-http or sse (stdio servers are not reachable remotely).")
    tools_digest: str = Field(alias="toolsDigest", default="", description="Digest of the server's tool list.")
    tools: tuple[CatalogTool, ...] = Field(default=(), max_length=2048)


class Catalog(BaseModel):
    """The whole catalog: one revision, every server."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["mcpfleet.io/catalog/v1"] = Field(alias="apiVersion", default="mcpfleet.io/catalog/v1")
    revision: int = Field(ge=0, description="Increases with every change.")
    generated_at: datetime.datetime = Field(alias="generatedAt", description="When this revision was written.")
    separator: str = Field(default=DEFAULT_SEPARATOR, min_length=1, max_length=3)
    servers: tuple[CatalogServer, ...] = Field(default=(), max_length=1024)

    def dump(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


def catalog_tool(
    prefix: str,
    tool: Mapping[str, Any],
    *,
    separator: str = DEFAULT_SEPARATOR,
    risk_overrides: Mapping[str, Risk] | None = None,
    safe_cache_seconds: float = 0.0,
) -> CatalogTool:
    """The catalog entry of one tool in its wire form (``inputSchema``, ``annotations``, ...), risk rules applied."""
    name = str(tool["name"])
    annotations = dict(tool.get("annotations") or {})
    risk = infer_risk(name, annotations, risk_overrides)
    input_schema = dict(tool.get("inputSchema") or {"type": "object"})
    output_schema = tool.get("outputSchema")
    description = str(tool.get("description") or "")
    return CatalogTool(
        name=qualified_name(prefix, name, separator),
        upstream_name=name,
        title=tool.get("title") or annotations.get("title"),
        description=description,
        input_schema=input_schema,
        output_schema=dict(output_schema) if output_schema else None,
        risk=risk,
        timeout_seconds=DEFAULT_TIMEOUT_SECONDS[risk],
        cache_ttl_seconds=safe_cache_seconds if risk is Risk.SAFE else 0.0,
        permissions=(required_permission(prefix, name),),
        annotations=annotations,
        schema_digest=schema_digest(description, input_schema),
    )


def catalog_schema() -> dict[str, Any]:
    return Catalog.model_json_schema(by_alias=True)
