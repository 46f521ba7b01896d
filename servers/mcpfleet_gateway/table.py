"""The gateway's routing table: every tool, resource and prompt clients can reach, and where each one goes.

A table is built whole from the catalog, the static upstreams' own listings and the config's overrides,
then swapped in one assignment: a call already running keeps the route it started with, so a reload never
disturbs it. Two sources claiming the same qualified name is a collision: the first keeps the name, the
second is left out and named in ``problems`` (shown by /ready and logged at load).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import jsonschema
import mcp_types as types

from mcpfleet_contracts.catalog import (
    DEFAULT_TIMEOUT_SECONDS,
    CatalogTool,
    infer_risk,
    qualified_name,
    required_permission,
    schema_digest,
)
from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_gateway.config import ToolOverride
from mcpfleet_gateway.rbac import ToolGrant
from mcpfleet_gateway.upstreams.base import ClientInput

MAX_TOOLS = 10_000


class ToolBackend(Protocol):
    """What a route calls: an upstream connection, or one of the gateway's own tool sets."""

    name: str

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the backend enforces the deadline (retries share it)
        retry: bool = False,
        client_input: ClientInput | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult: ...


class ResourceBackend(Protocol):
    name: str

    async def read_resource(self, uri: str) -> types.ReadResourceResult: ...

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult: ...


class ArgumentError(ValueError):
    """Arguments that do not match the tool's input schema; ``field`` is the JSON path of the first problem."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, eq=False)
class Route:
    entry: CatalogTool
    backend: ToolBackend
    source: str  # upstream name, catalog server name, or the gateway itself

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def risk(self) -> Risk:
        return self.entry.risk

    @cached_property
    def grant(self) -> ToolGrant:
        return ToolGrant(self.entry.name, self.entry.risk, self.entry.permissions)

    @cached_property
    def listed(self) -> types.Tool:
        entry = self.entry
        annotations = types.ToolAnnotations.model_validate(entry.annotations) if entry.annotations else None
        return types.Tool(
            name=entry.name,
            title=entry.title,
            description=entry.description,
            input_schema=entry.input_schema,
            output_schema=entry.output_schema,
            annotations=annotations,
            _meta={"mcpfleet.io/risk": entry.risk.value, "mcpfleet.io/source": self.source},
        )

    @cached_property
    def _validator(self) -> Any:
        schema = self.entry.input_schema
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        return cls(schema, format_checker=cls.FORMAT_CHECKER)

    def validate(self, arguments: Mapping[str, Any]) -> None:
        if self._validator.is_valid(arguments):  # the common case stops at the first pass, no error ranking
            return
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
        if error is None:
            return
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.validator_value, list):
            missing = [name for name in error.validator_value if name not in (error.instance or {})]
            path.append(missing[0] if missing else "")
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            extra = sorted(set(error.instance) - allowed)
            path.append(extra[0] if extra else "")
        field_path = ".".join(str(part) for part in path) or "(arguments)"
        raise ArgumentError(field_path, error.message)


@dataclass(frozen=True)
class ResourceRoute:
    resource: types.Resource
    backend: ResourceBackend
    source: str


@dataclass(frozen=True)
class PromptRoute:
    prompt: types.Prompt
    upstream_name: str
    backend: ResourceBackend
    source: str


@dataclass
class ToolTable:
    tools: dict[str, Route] = field(default_factory=dict)
    resources: dict[str, ResourceRoute] = field(default_factory=dict)
    prompts: dict[str, PromptRoute] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add_tool(self, route: Route) -> None:
        existing = self.tools.get(route.name)
        if existing is not None:
            self.problems.append(f"tool {route.name} of {route.source} collides with {existing.source}'s; left out")
            return
        if len(self.tools) >= MAX_TOOLS:
            self.problems.append(f"more than {MAX_TOOLS} tools: {route.name} of {route.source} left out")
            return
        self.tools[route.name] = route

    def add_resource(self, route: ResourceRoute) -> None:
        uri = str(route.resource.uri)
        existing = self.resources.get(uri)
        if existing is not None:
            self.problems.append(f"resource {uri} of {route.source} collides with {existing.source}'s; left out")
            return
        self.resources[uri] = route

    def add_prompt(self, route: PromptRoute) -> None:
        existing = self.prompts.get(route.prompt.name)
        if existing is not None:
            self.problems.append(
                f"prompt {route.prompt.name} of {route.source} collides with {existing.source}'s; left out"
            )
            return
        self.prompts[route.prompt.name] = route


def _matching(overrides: Mapping[str, ToolOverride], name: str) -> ToolOverride:
    """Exact names beat globs; among globs the last listed wins (config order is the author's order)."""
    if name in overrides:
        return overrides[name]
    found = ToolOverride()
    for pattern, override in overrides.items():
        if fnmatch.fnmatchcase(name, pattern):
            found = override
    return found


def entry_for(prefix: str, tool: types.Tool, *, separator: str, overrides: Mapping[str, ToolOverride]) -> CatalogTool:
    """A catalog entry for a tool discovered from a static upstream: the same rules the operator applies."""
    name = qualified_name(prefix, tool.name, separator)
    annotations = tool.annotations.model_dump(exclude_none=True, by_alias=True) if tool.annotations else {}
    override = _matching(overrides, name)
    risk = override.risk or infer_risk(tool.name, annotations)
    cache_ttl = override.cache_ttl_seconds or 0.0
    return CatalogTool(
        name=name,
        upstream_name=tool.name,
        title=tool.title,
        description=tool.description or "",
        input_schema=dict(tool.input_schema),
        output_schema=dict(tool.output_schema) if tool.output_schema else None,
        risk=risk,
        timeout_seconds=override.timeout_seconds or DEFAULT_TIMEOUT_SECONDS[risk],
        cache_ttl_seconds=cache_ttl if risk is Risk.SAFE else 0.0,
        permissions=override.permissions
        if override.permissions is not None
        else (required_permission(prefix, tool.name),),
        annotations=annotations,
        schema_digest=schema_digest(tool.description, tool.input_schema),
    )


def with_overrides(entry: CatalogTool, overrides: Mapping[str, ToolOverride]) -> CatalogTool:
    """The gateway's config has the last word over a catalog entry (e.g. a stricter risk)."""
    override = _matching(overrides, entry.name)
    if override == ToolOverride():
        return entry
    risk = override.risk or entry.risk
    changes: dict[str, Any] = {"risk": risk}
    if override.timeout_seconds is not None:
        changes["timeout_seconds"] = override.timeout_seconds
    if override.permissions is not None:
        changes["permissions"] = override.permissions
    ttl = override.cache_ttl_seconds if override.cache_ttl_seconds is not None else entry.cache_ttl_seconds
    changes["cache_ttl_seconds"] = ttl if risk is Risk.SAFE else 0.0
    return entry.model_copy(update=changes)


def prefixed_prompt(prefix: str, prompt: types.Prompt, separator: str) -> types.Prompt:
    return prompt.model_copy(update={"name": qualified_name(prefix, prompt.name, separator)})


def prefixed_resource(prefix: str, resource: types.Resource, separator: str) -> types.Resource:
    return resource.model_copy(update={"name": qualified_name(prefix, resource.name, separator)})


def names(routes: Iterable[Route]) -> Sequence[str]:
    return sorted(route.name for route in routes)
