"""What a server type (k8s-ops, monitoring, cmdb) hands to the base.

The base owns the MCP server object, the transports, health/ready/metrics and the shared policy;
a server module owns its backend clients and declares its tools, resources and prompts.

A module may also take new settings while it serves (``Reconfigurable``): on SIGHUP the base reads the
settings again, hands them to the module, then asks it for its tools again (``toolset``) and tells
clients and the Pod report when the list changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mcpfleet_servers.base.toolkit import Toolset

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mcpfleet_servers.base.settings import ConfigFile, ServerSettings


@dataclass(frozen=True)
class BackendStatus:
    """Whether the module's backend answers; shown by /ready and in tool errors, never a reason not to start."""

    name: str  # e.g. "Kubernetes API at https://10.96.0.1:443"
    reachable: bool
    detail: str = ""


class ServerModule(Protocol):
    """One server type. Constructed from its own settings; clients are created in `start`, not before."""

    type_name: str  # "k8s-ops", "monitoring", "cmdb"
    instructions: str  # what the server is for, shown to clients at initialization

    async def start(self) -> None:
        """Create backend clients. Must succeed when the backend is unreachable (tools then fail clearly)."""

    async def close(self) -> None:
        """Release backend clients."""

    async def backend_status(self) -> BackendStatus:
        """A cheap probe of the backend (bounded by a short timeout)."""

    def toolset(self) -> Toolset:
        """Every tool this module offers; the base filters and wraps them by policy."""

    def register_extras(self, server: MCPServer) -> None:
        """Add MCP resources and prompts to the server (tools go through `toolset`)."""


class SettingsRejected(Exception):
    """New settings a module cannot take; each line names the variable or config key and what is wrong."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


@runtime_checkable
class Reconfigurable(Protocol):
    """Optional for a ServerModule: take new settings without a restart. A module without it keeps its own
    settings on a reload; the base's policy (read-only mode, allow/deny, confirmation) still follows."""

    async def reconfigure(self, settings: ServerSettings, config: ConfigFile | None) -> None:
        """Validate, then apply what can change while serving; afterwards ``toolset()`` reflects it.

        Raise SettingsRejected (before changing anything) for a bad value: the module and the base then
        keep their running settings. Log what needs a restart instead of applying it.
        """
