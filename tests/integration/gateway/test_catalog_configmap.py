"""The gateway follows the catalog ConfigMap through the Kubernetes API (kmock's emulator), and a mounted one by
its ``..data`` symlink swap; real upstream servers answer the calls, reached through endpoint overrides."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import kmock
import mcp_types as types
import pytest
from mcp import Client

from mcpfleet_contracts.catalog import Catalog, CatalogServer, CatalogTool
from mcpfleet_contracts.mcpserver import Risk, Transport
from mcpfleet_gateway.run import GatewayRunner
from tests.emulator import ApiServerEmulator
from tests.integration.conftest import eventually
from tests.integration.gateway.harness import (
    base_url,
    config_document,
    gateway_at,
    listening_client,
    token,
    write_config,
)
from tests.integration.gateway.upstreams.conftest import AppProcess, TcpProxy, running_apps
from tests.integration.gateway.upstreams.upstream_app import TOOLS

pytestmark = pytest.mark.integration

NAMESPACE = "mcpfleet"
CONFIGMAP = "mcpfleet-catalog"
CONFIGMAPS = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
VIEWER = token("vera", ("viewer",))
# Cluster-internal endpoints as the operator catalogs them; the overrides point the gateway at loopback.
ECHO_ENDPOINT = "http://echo.team-a.svc.cluster.local:8000/mcp"
SLOW_ENDPOINT = "http://slow.team-a.svc.cluster.local:8000/mcp"
_SCHEMAS = {tool.name: tool.input_schema for tool in TOOLS}


def catalog_text(revision: int, servers: dict[str, tuple[str, list[str]]]) -> str:
    """A catalog of servers ``name -> (prefix, tools)``, every tool SAFE and readable by a viewer."""
    entries = []
    for name, (prefix, tools) in servers.items():
        cataloged = tuple(
            CatalogTool(
                name=f"{prefix}:{tool}",
                upstream_name=tool,
                description=f"{tool} from the catalog",
                input_schema=_SCHEMAS[tool],
                risk=Risk.SAFE,
                timeout_seconds=30,
                permissions=(f"{prefix}:get",),
            )
            for tool in tools
        )
        endpoint = SLOW_ENDPOINT if prefix == "slow" else ECHO_ENDPOINT
        entries.append(
            CatalogServer(
                name=name, prefix=prefix, endpoint=endpoint, transport=Transport.STREAMABLE_HTTP, tools=cataloged
            )
        )
    return Catalog(revision=revision, generated_at=datetime.datetime.now(datetime.UTC), servers=tuple(entries)).dump()


def echo_catalog(revision: int, tools: list[str]) -> str:
    return catalog_text(revision, {"team-a/echo": ("cat", tools)})


class ApiServer(TcpProxy):
    """The emulator behind a proxy on a port of its own: stopping it cuts every connection and refuses new ones,
    as an API server that went away does; starting it again listens on the same port (same objects behind)."""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def apiserver(emulator: ApiServerEmulator) -> AsyncIterator[ApiServer]:
    server = ApiServer(emulator.servers[0].port)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def upstream_apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, AppProcess]]:
    logs = tmp_path_factory.mktemp("catalog-configmap-apps")
    echo = AppProcess("streamable-http", logs, ("--stateless", "--json"))
    slow = AppProcess("streamable-http", logs, ("--stateless", "--json"))
    with running_apps(echo, slow):
        yield echo, slow


def gateway_config(tmp_path: Path, apiserver: ApiServer, apps: tuple[AppProcess, AppProcess]) -> Path:
    kubeconfig = tmp_path / "gateway-kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": apiserver.url}}],
                "users": [{"name": "gateway", "user": {"token": "gateway-token"}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "gateway"}}],
                "current-context": "emulator",
            }
        )
    )
    echo, slow = apps
    catalog = {
        "configmap": {"namespace": NAMESPACE},
        "kubeconfig": str(kubeconfig),
        # One by server name, one by prefix: both forms are accepted.
        "endpoint_overrides": {"team-a/echo": echo.url, "slow": slow.url},
    }
    document = config_document(tmp_path, upstreams={}, catalog=catalog, self_config={"enabled": False})
    return write_config(tmp_path / "gateway.json", document)


async def put_configmap(emulator: ApiServerEmulator, data: dict[str, str]) -> None:
    """Create or replace the ConfigMap through the emulator's own port (up while the gateway's is down)."""
    client = emulator.servers[0].client
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP, "namespace": NAMESPACE}}
    async with client.get(f"{CONFIGMAPS}/{CONFIGMAP}") as found:
        exists = found.status == 200
    if exists:
        async with client.patch(f"{CONFIGMAPS}/{CONFIGMAP}", json={"data": data}) as response:
            assert response.status == 200, await response.text()
    else:
        async with client.post(CONFIGMAPS, json={**body, "data": data}) as response:
            assert response.status in (200, 201), await response.text()


async def delete_configmap(emulator: ApiServerEmulator) -> None:
    async with emulator.servers[0].client.delete(f"{CONFIGMAPS}/{CONFIGMAP}") as response:
        assert response.status == 200, await response.text()


async def ready(runner: GatewayRunner) -> dict[str, Any]:
    async with httpx2.AsyncClient(base_url=base_url(runner)) as http:
        report: dict[str, Any] = (await http.get("/ready")).json()
        return report


def tool_names(runner: GatewayRunner) -> set[str]:
    return {name for name in runner.gateway.table.tools if not name.startswith("gateway:")}


async def names_become(runner: GatewayRunner, expected: set[str]) -> None:
    async def check() -> bool:
        assert tool_names(runner) == expected
        return True

    await eventually(check, within=20)


async def a_problem_mentions(runner: GatewayRunner, *words: str) -> list[str]:
    async def check() -> list[str]:
        problems: list[str] = (await ready(runner))["problems"]
        assert any(all(word in problem for word in words) for problem in problems), problems
        return problems

    found: list[str] = await eventually(check, within=20)
    return found


async def no_catalog_problem(runner: GatewayRunner) -> None:
    async def check() -> bool:
        problems = (await ready(runner))["problems"]
        assert not [p for p in problems if "catalog" in p], problems
        return True

    await eventually(check, within=20)


async def echo(client: Any, text: str) -> str:
    result = await client.call_tool("cat:echo", {"text": text})
    assert not result.is_error, result.content
    return str(result.content[0].text)


def session(runner: GatewayRunner) -> contextlib.AbstractAsyncContextManager[tuple[Client, asyncio.Event]]:
    return listening_client(runner, VIEWER)


async def test_the_catalog_configmap_is_followed_through_the_api(
    emulator: ApiServerEmulator, apiserver: ApiServer, upstream_apps: tuple[AppProcess, AppProcess], tmp_path: Path
) -> None:
    config = gateway_config(tmp_path, apiserver, upstream_apps)
    async with gateway_at(config) as runner:
        # No ConfigMap yet: the gateway serves, says why it has no catalog, and waits for one.
        await a_problem_mentions(runner, f"configmap {NAMESPACE}/{CONFIGMAP}", "does not exist")
        assert tool_names(runner) == set()

        await put_configmap(emulator, {"catalog.json": echo_catalog(1, ["echo"])})
        await names_become(runner, {"cat:echo"})
        await no_catalog_problem(runner)
        async with session(runner) as (client, changed):
            assert await echo(client, "through the override") == "through the override"

            await put_configmap(emulator, {"catalog.json": echo_catalog(2, ["echo", "pid"])})
            await asyncio.wait_for(changed.wait(), timeout=20)
            names = {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}
            assert names == {"cat:echo", "cat:pid"}
            assert runner.gateway.catalog is not None
            assert runner.gateway.catalog.revision == 2
            pid = await client.call_tool("cat:pid", {})
            assert pid.content[0].text == str(upstream_apps[0].process.pid)  # type: ignore[union-attr]

            # Invalid content: the last good catalog keeps serving, /ready and the metrics say why.
            await put_configmap(emulator, {"catalog.json": '{"revision": "not a catalog"'})
            await a_problem_mentions(runner, f"configmap {NAMESPACE}/{CONFIGMAP}")
            assert tool_names(runner) == {"cat:echo", "cat:pid"}
            assert await echo(client, "still the last good one") == "still the last good one"
            async with httpx2.AsyncClient(base_url=base_url(runner)) as http:
                metrics = (await http.get("/metrics")).text
            assert 'mcpfleet_gateway_reloads_total{outcome="invalid",source="catalog"}' in metrics
            assert "mcpfleet_gateway_table_problems 1.0" in metrics

            # The key missing is a problem of its own, and the last good catalog still serves.
            await put_configmap(emulator, {"catalog.json": echo_catalog(3, ["echo"]), "other": "x"})
            await names_become(runner, {"cat:echo"})
            await no_catalog_problem(runner)

            await delete_configmap(emulator)
            await a_problem_mentions(runner, f"configmap {NAMESPACE}/{CONFIGMAP}", "was deleted")
            assert tool_names(runner) == {"cat:echo"}
            assert await echo(client, "after the delete") == "after the delete"

            await put_configmap(emulator, {"catalog.json": echo_catalog(4, ["echo", "add"])})
            await names_become(runner, {"cat:echo", "cat:add"})
            await no_catalog_problem(runner)


async def test_an_unreachable_api_server_keeps_the_catalog_and_the_watch_resumes(
    emulator: ApiServerEmulator, apiserver: ApiServer, upstream_apps: tuple[AppProcess, AppProcess], tmp_path: Path
) -> None:
    await put_configmap(emulator, {"catalog.json": echo_catalog(1, ["echo"])})
    config = gateway_config(tmp_path, apiserver, upstream_apps)
    async with gateway_at(config) as runner:
        # The start waited for the first read: the catalog serves from the first request.
        assert tool_names(runner) == {"cat:echo"}
        async with session(runner) as (client, changed):
            await apiserver.stop()
            await a_problem_mentions(runner, f"configmap {NAMESPACE}/{CONFIGMAP}", "unreachable")
            assert await echo(client, "api server down") == "api server down"
            async with httpx2.AsyncClient(base_url=base_url(runner)) as http:
                metrics = (await http.get("/metrics")).text
            assert "mcpfleet_gateway_catalog_source_up 0.0" in metrics

            # Changed while the gateway could not see it; picked up once the API server is back.
            await put_configmap(emulator, {"catalog.json": echo_catalog(2, ["echo", "pid"])})
            await apiserver.start()
            await asyncio.wait_for(changed.wait(), timeout=40)
            await names_become(runner, {"cat:echo", "cat:pid"})
            await no_catalog_problem(runner)

            # And the watch after the restart follows further changes.
            changed.clear()
            await put_configmap(emulator, {"catalog.json": echo_catalog(3, ["echo", "pid", "add"])})
            await asyncio.wait_for(changed.wait(), timeout=20)
            assert tool_names(runner) == {"cat:echo", "cat:pid", "cat:add"}


async def test_a_catalog_update_does_not_drop_calls_in_flight(
    emulator: ApiServerEmulator, apiserver: ApiServer, upstream_apps: tuple[AppProcess, AppProcess], tmp_path: Path
) -> None:
    both = {"team-a/echo": ("cat", ["echo"]), "team-a/slow": ("slow", ["slow"])}
    await put_configmap(emulator, {"catalog.json": catalog_text(1, both)})
    config = gateway_config(tmp_path, apiserver, upstream_apps)
    async with gateway_at(config) as runner, session(runner) as (client, _):
        await names_become(runner, {"cat:echo", "slow:slow"})
        running = asyncio.create_task(client.call_tool("slow:slow", {"seconds": 1.5}))
        await eventually(lambda: _in_flight(runner, "catalog/team-a/slow"))
        await put_configmap(emulator, {"catalog.json": catalog_text(2, {"team-a/echo": ("cat", ["echo"])})})
        await names_become(runner, {"cat:echo"})
        answer = await running
        assert not answer.is_error, answer.content
        assert isinstance(answer.content[0], types.TextContent)
        assert answer.content[0].text == "slept 1.5"


async def _in_flight(runner: GatewayRunner, source: str) -> bool:
    return runner.gateway._in_flight.get(source, 0) > 0


def _publish(directory: Path, version: int, text: str) -> None:
    """What the kubelet does to a mounted ConfigMap: a new timestamped dir, then an atomic ``..data`` swap."""
    target = directory / f"..2026_01_01_00_00_{version:02d}"
    target.mkdir()
    (target / "catalog.json").write_text(text)
    link = directory / "..data_tmp"
    link.symlink_to(target.name)
    os.replace(link, directory / "..data")
    if not (directory / "catalog.json").is_symlink():
        (directory / "catalog.json").symlink_to("..data/catalog.json")


async def test_a_mounted_configmap_swap_is_seen_with_a_fast_poll(
    upstream_apps: tuple[AppProcess, AppProcess], tmp_path: Path
) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    # Same size, same second: only the inode of the resolved file tells the versions apart.
    _publish(mount, 1, echo_catalog(1, ["echo"]))
    catalog = {
        "path": str(mount / "catalog.json"),
        "poll_seconds": 0.05,
        "endpoint_overrides": {"cat": upstream_apps[0].url},
    }
    document = config_document(tmp_path, upstreams={}, catalog=catalog, self_config={"enabled": False})
    config = write_config(tmp_path / "gateway.json", document)
    async with gateway_at(config) as runner, session(runner) as (client, changed):
        assert tool_names(runner) == {"cat:echo"}
        # A round trip first, so the session's notification stream is open before anything changes.
        assert await echo(client, "before the swap") == "before the swap"
        _publish(mount, 2, echo_catalog(2, ["pid"]))
        await asyncio.wait_for(changed.wait(), timeout=20)
        assert tool_names(runner) == {"cat:pid"}
        pid = await client.call_tool("cat:pid", {})
        assert pid.content[0].text == str(upstream_apps[0].process.pid)  # type: ignore[union-attr]


async def test_an_expired_watch_version_reads_the_configmap_again(
    emulator: ApiServerEmulator, apiserver: ApiServer, upstream_apps: tuple[AppProcess, AppProcess], tmp_path: Path
) -> None:
    # The first watch is told its version was compacted away, as an API server does after a long disconnect.
    gone = {
        "kind": "Status",
        "apiVersion": "v1",
        "code": 410,
        "reason": "Expired",
        "message": "too old resource version",
    }
    emulator[kmock.action.WATCH, kmock.resource("v1/configmaps")][:1] << {"type": "ERROR", "object": gone}
    await put_configmap(emulator, {"catalog.json": echo_catalog(1, ["echo"])})
    config = gateway_config(tmp_path, apiserver, upstream_apps)
    async with gateway_at(config) as runner:
        assert tool_names(runner) == {"cat:echo"}

        async def restarted() -> bool:
            async with httpx2.AsyncClient(base_url=base_url(runner)) as http:
                metrics = (await http.get("/metrics")).text
            assert 'mcpfleet_gateway_catalog_watch_restarts_total{reason="expired"} 1.0' in metrics
            return True

        await eventually(restarted)
        await put_configmap(emulator, {"catalog.json": echo_catalog(2, ["echo", "pid"])})
        await names_become(runner, {"cat:echo", "cat:pid"})
        await no_catalog_problem(runner)
