"""Fixtures for the cmdb server (kubernetes backend) against kmock's Kubernetes emulator."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest

from mcpfleet_servers.base.app import FleetServer
from mcpfleet_servers.cmdb.server import CmdbServer
from mcpfleet_servers.cmdb.settings import CmdbSettings
from tests.emulator import ApiServerEmulator, declare_resources, serve_namespace_objects, store_object
from tests.integration.fleets import started_fleets
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator(kmock: ApiServerEmulator, monkeypatch: pytest.MonkeyPatch) -> ApiServerEmulator:
    serve_namespace_objects(monkeypatch)
    declare_resources(kmock)
    return kmock


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server holding the gateway's audit streams (killable mid-test)."""
    with running_redis(tmp_path / "redis") as server:
        yield server


put = store_object


def stored(emulator: ApiServerEmulator, plural: str, namespace: str | None, name: str, group: str = "") -> Any:
    key = (kmock.resource(group=group, version="v1", plural=plural), namespace, name)
    obj = emulator.objects[key] if key in emulator.objects else None  # noqa: SIM401 - no .get() there
    return None if obj is None or obj.deleted else obj.raw


MakeFleet = Callable[..., Awaitable[FleetServer]]


@pytest.fixture
async def make_fleet(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeFleet]:
    """A started CmdbServer inside the real FleetServer, as ``mcpfleet server cmdb`` builds it."""
    for name in list(os.environ):
        if name.upper().startswith(("MCP_", "CMDB_", "POD_")):
            monkeypatch.delenv(name)
    async with started_fleets() as fleets:

        async def make(cmdb: dict[str, Any] | None = None, **overrides: Any) -> FleetServer:
            settings = CmdbSettings(**({"kubeconfig_path": str(kubeconfig)} | (cmdb or {})))
            return await fleets.start(lambda budget: CmdbServer(settings, budget), **overrides)

        yield make
