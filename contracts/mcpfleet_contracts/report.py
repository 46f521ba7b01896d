"""Contract 2, the tool report a server pod writes on itself: a digest and a compact, bounded list of names.

The digest is sha256 over the canonical tool list: every tool reduced to what a client relies on (name,
description, input schema, annotations), keys sorted, tools sorted by name, no whitespace. Two servers
serving the same tools report the same digest whatever order they list them in; any change a client could
notice changes it. The annotation is a trigger, not the truth: the operator confirms with MCP tools/list.

The names annotation stays within ``max_bytes`` (annotations share a 256 KiB budget per object): when the
names do not fit, the longest prefix of them that does is kept and ``truncated`` says so; ``count`` is
always the full number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TOOLS_DIGEST_ANNOTATION = "mcpfleet.io/tools-digest"
TOOLS_ANNOTATION = "mcpfleet.io/tools"
REPORT_VERSION = 1
DEFAULT_MAX_BYTES = 16_384
DIGEST_PREFIX = "sha256:"

_CANONICAL_FIELDS = ("name", "description", "inputSchema", "annotations")


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_tools(tools: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tools as dicts in their wire form (inputSchema, not input_schema), reduced and sorted by name."""
    reduced = [{key: tool[key] for key in _CANONICAL_FIELDS if tool.get(key) not in (None, {}, "")} for tool in tools]
    return sorted(reduced, key=lambda tool: str(tool.get("name", "")))


def tools_digest(tools: Iterable[Mapping[str, Any]]) -> str:
    return DIGEST_PREFIX + hashlib.sha256(_compact(canonical_tools(tools)).encode()).hexdigest()


class ToolsReport(BaseModel):
    """What the names annotation holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = Field(default=REPORT_VERSION, description="Format version.")
    count: int = Field(ge=0, le=100_000, description="How many tools the server serves.")
    names: tuple[str, ...] = Field(default=(), max_length=10_000, description="Tool names, sorted.")
    truncated: bool = Field(default=False, description="True when names holds only the first of them.")


def tools_annotation(tools: Iterable[Mapping[str, Any]], *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The names annotation: compact JSON within ``max_bytes`` (UTF-8), truncated by whole names."""
    names = sorted(str(tool["name"]) for tool in tools)
    full = ToolsReport(count=len(names), names=tuple(names))
    text = _compact(full.model_dump())
    if len(text.encode()) <= max_bytes:
        return text
    low, high = 0, len(names)
    while low < high:  # the longest prefix of names that fits
        middle = (low + high + 1) // 2
        candidate = ToolsReport(count=len(names), names=tuple(names[:middle]), truncated=True)
        if len(_compact(candidate.model_dump()).encode()) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    fitted = ToolsReport(count=len(names), names=tuple(names[:low]), truncated=True)
    text = _compact(fitted.model_dump())
    if len(text.encode()) > max_bytes:
        raise ValueError(f"max_bytes {max_bytes} cannot hold even an empty report ({len(text)} bytes)")
    return text


class ReportInvalid(ValueError):
    """An annotation that is not a tool report; the message says what is wrong."""


def parse_tools_annotation(text: str) -> ToolsReport:
    try:
        return ToolsReport.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ReportInvalid(f"{TOOLS_ANNOTATION} is not a tool report: {where}: {first['msg']}") from None


def is_digest(value: str) -> bool:
    hexpart = value.removeprefix(DIGEST_PREFIX)
    return value.startswith(DIGEST_PREFIX) and len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)
