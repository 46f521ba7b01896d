"""Fixtures for the monitoring server against real Prometheus and Alertmanager processes (tests/prometheus_stack)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.types import CallToolResult, TextContent

from mcpfleet_servers.base.app import FleetServer
from mcpfleet_servers.monitoring.server import MonitoringServer
from mcpfleet_servers.monitoring.settings import MonitoringSettings
from tests.emulator import ApiServerEmulator, store_object
from tests.integration.conftest import eventually
from tests.integration.fleets import started_fleets
from tests.prometheus_stack import SERIES_COUNT, PrometheusStack, running_prometheus_stack

MakeFleet = Callable[..., Awaitable[FleetServer]]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusStack]:
    """One Prometheus + Alertmanager + exporter for the whole run: starting them costs seconds."""
    with running_prometheus_stack(tmp_path_factory.mktemp("prometheus-stack")) as running:
        yield running


@pytest.fixture
def session_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MCP_*/MON_* variable of the developer's shell leaks into the settings; tests set their own."""
    for name in list(os.environ):
        if name.upper().startswith(("MCP_", "MON_", "POD_", "MCPFLEET_SERVER_NAME")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
async def make_fleet(session_env: pytest.MonkeyPatch, stack: PrometheusStack) -> AsyncIterator[MakeFleet]:
    """A started MonitoringServer inside the real FleetServer, as ``mcpfleet server monitoring`` builds it.

    ``mon`` holds MonitoringSettings values on top of the stack's URLs; other keywords are ServerSettings.
    """
    async with started_fleets() as fleets:

        async def make(mon: dict[str, Any] | None = None, **overrides: Any) -> FleetServer:
            values: dict[str, Any] = {
                "prometheus_url": stack.prometheus_url,
                "alertmanager_url": stack.alertmanager_url,
            }
            settings = MonitoringSettings(**(values | (mon or {})))
            return await fleets.start(lambda budget: MonitoringServer(settings, budget), **overrides)

        yield make


@pytest.fixture
async def scraped(stack: PrometheusStack, make_fleet: MakeFleet) -> PrometheusStack:
    """The stack once Prometheus holds every exporter series (the first scrapes take a moment)."""
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:

        async def all_series() -> bool:
            result = await client.call_tool("query_metrics", {"query": "count(mcpfleet_test_series)"})
            series = (result.structured_content or {}).get("series") or []
            return bool(series) and series[0]["value"]["value"] == str(SERIES_COUNT)

        await eventually(all_series, within=60, interval=0.5)
    return stack


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


class Session:
    """Calls on one client session, with the assertions every answer must pass."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, arguments)
        assert not result.is_error, f"{tool}: {text_of(result)}"
        content: dict[str, Any] | None = result.structured_content
        assert content is not None, tool
        assert json.loads(text_of(result)) == content
        return content

    async def error(self, tool: str, **arguments: Any) -> str:
        result = await self.client.call_tool(tool, arguments)
        assert result.is_error, f"{tool} did not fail: {result.structured_content}"
        return text_of(result)

    async def invalid(self, tool: str, **arguments: Any) -> MCPError:
        try:
            await self.client.call_tool(tool, arguments)
        except MCPError as exc:
            return exc
        raise AssertionError(f"{tool} accepted {arguments}")


put = store_object


def service_with_slice(
    emulator: ApiServerEmulator, namespace: str, name: str, ready: list[bool], *, slices: bool = True
) -> None:
    """A Service and its endpoints: one EndpointSlice (or, slices=False, a core Endpoints) with one endpoint per
    entry of ``ready``, ready or not."""
    put(
        emulator,
        "services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    pods = [(f"10.0.0.{i + 10}", f"{name}-{i}", is_ready) for i, is_ready in enumerate(ready)]
    if slices:
        put(
            emulator,
            "endpointslices",
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": namespace,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [ip],
                        "conditions": {"ready": is_ready},
                        "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace},
                    }
                    for ip, pod, is_ready in pods
                ],
                "ports": [{"port": 8080, "protocol": "TCP"}],
            },
            group="discovery.k8s.io",
        )
        return
    address = {True: "addresses", False: "notReadyAddresses"}
    subset: dict[str, list[dict[str, Any]]] = {}
    for ip, pod, is_ready in pods:
        subset.setdefault(address[is_ready], []).append({"ip": ip, "targetRef": {"kind": "Pod", "name": pod}})
    put(
        emulator,
        "endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace},
            "subsets": [subset],
        },
    )
