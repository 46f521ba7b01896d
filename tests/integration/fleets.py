"""Built-in server modules started inside the real FleetServer, as `mcpfleet server <type>` builds them, and
closed together when the block ends: the common part of each server type's ``make_fleet`` fixture."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from mcpfleet_servers.base.app import FleetServer, build_server
from mcpfleet_servers.base.module import ServerModule
from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.settings import ServerSettings


class StartedFleets:
    def __init__(self) -> None:
        self._modules: list[ServerModule] = []

    async def start(self, module_for: Callable[[Budget], ServerModule], **overrides: Any) -> FleetServer:
        """``overrides`` are ServerSettings values (MCP_* variables still apply beneath them)."""
        settings = ServerSettings.load(**overrides)
        module = module_for(settings.budget())
        await module.start()
        self._modules.append(module)
        fleet = build_server(module, settings)
        fleet.state.started = True
        return fleet

    async def close(self) -> None:
        for module in self._modules:
            await module.close()


@contextlib.asynccontextmanager
async def started_fleets() -> AsyncIterator[StartedFleets]:
    fleets = StartedFleets()
    try:
        yield fleets
    finally:
        await fleets.close()
