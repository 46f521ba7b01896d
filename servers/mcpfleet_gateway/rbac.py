"""What a caller may see and call: roles grant permissions and a risk ceiling; namespaces may demand roles.

A call is allowed when the caller holds `tools:execute`, every permission the catalog requires for the
tool (e.g. `k8s:scale`; patterns like `k8s:*` and `*` match), a role whose risk ceiling reaches the tool's
risk, and, for every argument that names a namespace, one of the roles that namespace demands (e.g.
production → admin). `all_namespaces=true` reaches every namespace, so it needs a role every scoped
namespace accepts. `tools/list` shows exactly the tools the caller could call with some arguments.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mcpfleet_contracts.mcpserver import Risk

_RISK_ORDER = {Risk.SAFE: 0, Risk.MEDIUM: 1, Risk.HIGH: 2}
LIST = "tools:list"
EXECUTE = "tools:execute"


class RoleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    permissions: tuple[str, ...] = Field(description="Permissions, patterns allowed: tools:list, k8s:*, *.")
    max_risk: Risk = Field(default=Risk.SAFE, description="The riskiest tool this role may call.")


# The seed's three roles, generalised from k8s to every server prefix: permissions are <prefix>:<verb>
# (mcpfleet_contracts.catalog.required_permission), and the risk ceiling is the backstop for any verb.
READ_PERMISSIONS = ("*:get", "*:query")
CHANGE_PERMISSIONS = (
    "*:scale",
    "*:update",
    "*:patch",
    "*:set",
    "*:label",
    "*:annotate",
    "*:cordon",
    "*:uncordon",
    "*:expire",
    "*:create",
)
DEFAULT_ROLES: dict[str, RoleSpec] = {
    "viewer": RoleSpec(permissions=(LIST, EXECUTE, *READ_PERMISSIONS), max_risk=Risk.SAFE),
    "operator": RoleSpec(permissions=(LIST, EXECUTE, *READ_PERMISSIONS, *CHANGE_PERMISSIONS), max_risk=Risk.MEDIUM),
    "admin": RoleSpec(permissions=("*",), max_risk=Risk.HIGH),
}


class RBACSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: dict[str, RoleSpec] = Field(default_factory=lambda: dict(DEFAULT_ROLES))
    namespace_roles: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Namespace (or glob, e.g. prod-*) → roles that may act there; unlisted namespaces demand none.",
    )
    namespace_arguments: tuple[str, ...] = Field(default=("namespace",), description="Arguments naming a namespace.")
    all_namespaces_argument: str = "all_namespaces"


@dataclass(frozen=True)
class ToolGrant:
    """What the catalog says a call needs."""

    name: str
    risk: Risk
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


def _held(permission: str, granted: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(permission, pattern) for pattern in granted)


class Authorizer:
    def __init__(self, settings: RBACSettings) -> None:
        self.settings = settings

    def _roles(self, names: Iterable[str]) -> dict[str, RoleSpec]:
        return {name: self.settings.roles[name] for name in names if name in self.settings.roles}

    def _permissions(self, roles: Mapping[str, RoleSpec]) -> set[str]:
        return {p for role in roles.values() for p in role.permissions}

    def _ceiling(self, roles: Mapping[str, RoleSpec]) -> Risk | None:
        ranked = [role.max_risk for role in roles.values()]
        return max(ranked, key=_RISK_ORDER.__getitem__) if ranked else None

    def may_list(self, role_names: Iterable[str]) -> bool:
        return _held(LIST, self._permissions(self._roles(role_names)))

    def visible(self, role_names: Iterable[str], tools: Iterable[ToolGrant]) -> list[ToolGrant]:
        """The tools `tools/list` shows this caller: nothing without tools:list, else what it may call."""
        names = tuple(role_names)
        if not self.may_list(names):
            return []
        return [tool for tool in tools if self._tool_allowed(names, tool).allowed]

    def authorize(self, role_names: Iterable[str], tool: ToolGrant, arguments: Mapping[str, Any]) -> Decision:
        names = tuple(role_names)
        decision = self._tool_allowed(names, tool)
        if not decision.allowed:
            return decision
        return self._namespaces_allowed(names, tool, arguments)

    def _tool_allowed(self, names: tuple[str, ...], tool: ToolGrant) -> Decision:
        roles = self._roles(names)
        if not roles:
            known = ", ".join(sorted(self.settings.roles))
            return Decision(False, f"none of the caller's roles ({', '.join(names) or 'none'}) is defined ({known})")
        granted = self._permissions(roles)
        if not _held(EXECUTE, granted):
            return Decision(False, f"the caller's roles ({', '.join(roles)}) lack {EXECUTE}")
        ceiling = self._ceiling(roles)
        assert ceiling is not None
        if _RISK_ORDER[tool.risk] > _RISK_ORDER[ceiling]:
            return Decision(
                False, f"{tool.name} is {tool.risk.value} risk; the caller's roles allow up to {ceiling.value}"
            )
        missing = [p for p in tool.permissions if not _held(p, granted)]
        if missing:
            return Decision(False, f"{tool.name} needs permission {', '.join(missing)}, which no caller role grants")
        return ALLOW

    def _demanded(self, namespace: str) -> tuple[str, ...] | None:
        for pattern, roles in self.settings.namespace_roles.items():
            if fnmatch.fnmatchcase(namespace, pattern):
                return roles
        return None

    def _namespaces_allowed(self, names: tuple[str, ...], tool: ToolGrant, arguments: Mapping[str, Any]) -> Decision:
        if arguments.get(self.settings.all_namespaces_argument) is True:
            for pattern, demanded in self.settings.namespace_roles.items():
                if not set(names) & set(demanded):
                    return Decision(
                        False,
                        f"{tool.name} across all namespaces reaches {pattern}, which needs role "
                        f"{' or '.join(demanded)}; name a namespace instead",
                    )
        for argument in self.settings.namespace_arguments:
            namespace = arguments.get(argument)
            if not isinstance(namespace, str):
                continue
            needed = self._demanded(namespace)
            if needed is not None and not set(names) & set(needed):
                return Decision(False, f"namespace {namespace} needs role {' or '.join(needed)} for {tool.name}")
        return ALLOW
