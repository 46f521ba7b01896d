"""Which of a module's tools a server exposes (read-only and no-destructive modes, allow/deny globs), and
which calls ask the user first (the confirmation threshold)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.toolkit import ToolDef, Toolset

_RISK_ORDER = (Risk.SAFE, Risk.MEDIUM, Risk.HIGH)


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


def risk_at_least(risk: Risk, threshold: Risk) -> bool:
    return _RISK_ORDER.index(risk) >= _RISK_ORDER.index(threshold)


def raised_risk(declared: Risk, assessed: Risk) -> Risk:
    """The risk of one call: what the tool's hook assessed, never below what the tool declares."""
    return assessed if risk_at_least(assessed, declared) else declared


@dataclass(frozen=True)
class ConfirmationPolicy:
    """Which calls ask the user first. Precedence: ``required`` off (MCP_REQUIRE_CONFIRMATION=false) confirms
    nothing; else a tool's own ``confirm`` trait; else the call's risk against ``threshold``."""

    required: bool = True
    # MCP_CONFIRM_FROM, else the module's Toolset(confirm_from=...), else HIGH.
    threshold: Risk = Risk.HIGH

    def confirms(self, tool: ToolDef, risk: Risk) -> bool:
        """Whether a call of ``tool`` whose risk (declared, or raised by its risk_for hook) is ``risk`` asks first."""
        if not self.required:
            return False
        if tool.traits.confirm is not None:
            return tool.traits.confirm
        return risk_at_least(risk, self.threshold)

    def may_confirm(self, tool: ToolDef) -> bool:
        """Whether some call of ``tool`` may ask first: its declared risk asks, or its hook may raise it to."""
        if tool.risk_for is not None and self.required and tool.traits.confirm is None:
            return True  # the hook may raise any call to HIGH, which every threshold reaches
        return self.confirms(tool, tool.traits.risk)
