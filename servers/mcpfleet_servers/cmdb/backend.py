"""The one interface every CMDB backend implements; the tools see nothing else."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.paging import Page
from mcpfleet_servers.cmdb.models import Asset, AssetFilters, ChangeRecord, Topology


class PageRequest:
    """Which page a list call wants: the client's limit and continuation token."""

    __slots__ = ("limit", "token")

    def __init__(self, limit: int | None = None, token: str | None = None) -> None:
        self.limit = limit
        self.token = token


class CmdbBackend(Protocol):
    """Clients are created in start() and released in close(); failures are the base's ToolFailure kinds."""

    # The asset types query_assets accepts; None: whatever the CMDB defines.
    asset_types: tuple[str, ...] | None

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def status(self) -> BackendStatus: ...

    async def query_assets(self, filters: AssetFilters, page: PageRequest) -> Page[Asset]: ...

    async def get_asset(self, asset_id: str) -> Asset: ...

    async def get_service_topology(self, service: str, namespace: str, depth: int) -> Topology: ...

    async def update_asset_status(self, asset_id: str, status: str, reason: str, actor: str) -> ChangeRecord: ...

    async def get_change_records(
        self, asset_id: str | None, since: datetime | None, until: datetime | None, page: PageRequest
    ) -> Page[ChangeRecord]: ...
