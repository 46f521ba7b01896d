"""Which of a module's tools a server exposes: read-only and no-destructive modes, allow/deny globs."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from mcpfleet_servers.base.toolkit import ToolDef, Toolset


@dataclass(frozen=True)
class ToolPolicy:
    read_only: bool = False
    no_destructive: bool = False
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    # The catalog's prefix ("k8s"): globs may name tools bare (get_pods) or qualified (k8s:get_pods).
    prefix: str | None = None

    def hidden_reason(self, tool: ToolDef) -> str | None:
        """Why policy hides the tool, or None when it is served."""
        if self.read_only and not tool.traits.read_only:
            return "read-only mode (MCP_READ_ONLY)"
        if self.no_destructive and tool.traits.destructive:
            return "no-destructive mode (MCP_NO_DESTRUCTIVE)"
        if self.allow and not self._matches(tool.name, self.allow):
            return "not in the allow list (MCP_TOOLS_ALLOW)"
        if self._matches(tool.name, self.deny):
            return "in the deny list (MCP_TOOLS_DENY)"
        return None

    def _matches(self, name: str, patterns: tuple[str, ...]) -> bool:
        return matches_any(name, patterns) or (
            self.prefix is not None and matches_any(f"{self.prefix}:{name}", patterns)
        )

    def select(self, toolset: Toolset) -> list[ToolDef]:
        return [tool for tool in toolset if self.hidden_reason(tool) is None]


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Case-sensitive shell globs (``get_*``, ``*_pod?``), like the CRD's spec.tools lists."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
