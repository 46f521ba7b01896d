"""The cmdb server module for the common base, and the factory ``mcpfleet server cmdb`` calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.module import BackendStatus, ServerModule
from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.toolkit import Toolset
from mcpfleet_servers.cmdb.backend import CmdbBackend
from mcpfleet_servers.cmdb.kube_backend import KubernetesCmdb
from mcpfleet_servers.cmdb.netbox_backend import NetboxCmdb
from mcpfleet_servers.cmdb.rest_backend import RestCmdb
from mcpfleet_servers.cmdb.settings import CmdbSettings
from mcpfleet_servers.cmdb.tools import register

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mcpfleet_servers.base.settings import ConfigFile, ServerSettings

INSTRUCTIONS = """\
A CMDB: assets (servers, workloads, services, devices, addresses...) with environment, owner and status;
service topologies; change records. Read first: query_assets, get_asset, get_service_topology,
get_change_records. Lists are paged: pass continue_token back for more. update_asset_status changes an
asset's recorded status and writes a change record; it asks for confirmation.
"""


def make_backend(settings: CmdbSettings, budget: Budget) -> CmdbBackend:
    """The backend CMDB_BACKEND (or config.cmdb.backend) names; no network until start()."""
    if settings.backend == "rest":
        return RestCmdb(settings, budget)
    if settings.backend == "netbox":
        return NetboxCmdb(settings, budget)
    return KubernetesCmdb(settings, budget)


class CmdbServer:
    """``mcpfleet server cmdb``: implements mcpfleet_servers.base.module.ServerModule."""

    type_name = "cmdb"
    instructions = INSTRUCTIONS

    def __init__(self, settings: CmdbSettings, budget: Budget, backend: CmdbBackend | None = None) -> None:
        self.settings = settings
        self.backend: CmdbBackend = backend or make_backend(settings, budget)
        self._toolset: Toolset | None = None

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()

    async def backend_status(self) -> BackendStatus:
        return await self.backend.status()

    def toolset(self) -> Toolset:
        if self._toolset is None:
            # MEDIUM and HIGH calls are confirmed: a status change is what an incident's timeline is built on.
            toolset = Toolset(confirm_from=Risk.MEDIUM)
            register(toolset, self.backend, self.settings)
            self._toolset = toolset
        return self._toolset

    def register_extras(self, server: MCPServer) -> None:
        @server.resource("cmdb://assets", mime_type="application/json", title="Assets")
        async def assets() -> str:
            """The first page of assets (bounded by the server's page budget)."""
            result = await self.toolset()["query_assets"].fn(limit=50)
            return result.model_dump_json()


def create_cmdb(settings: ServerSettings, config: ConfigFile | None) -> ServerModule:
    """The factory for registry.SERVER_TYPES["cmdb"]; raises pydantic.ValidationError for bad CMDB_* values."""
    module: ServerModule = CmdbServer(CmdbSettings.from_config(config), settings.budget())
    return module
