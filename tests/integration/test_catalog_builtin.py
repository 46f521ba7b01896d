"""The built-in monitoring and cmdb servers, deployed through MCPServers, reach the catalog with their prefixes
and risks.

Each server runs as its Pod would run it: the config file is the one the operator wrote into the server's
ConfigMap, the module comes from the same registry `mcpfleet server <type>` uses, and the server writes its
own tool report on a Pod in the emulator whose IP is loopback, where the operator then lists its tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_contracts.catalog import CatalogServer
from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_operator.builders.model import CONFIG_MAP
from mcpfleet_operator.kube import KubeClient
from mcpfleet_servers.base.app import build_server
from mcpfleet_servers.base.run import running
from mcpfleet_servers.base.settings import ConfigFile, ServerSettings
from mcpfleet_servers.registry import create_module
from tests.integration.conftest import NAMESPACE, create_mcpserver, eventually, running_operator
from tests.integration.test_catalog_sync import CATALOG_NAMESPACE, POD, cataloged, server_pod

pytestmark = pytest.mark.integration

CASES: dict[str, tuple[dict[str, Any], dict[str, Risk]]] = {
    "cmdb": (
        {"type": "cmdb", "config": {"cmdb": {"backend": "kubernetes"}}},
        {
            "cmdb:query_assets": Risk.SAFE,
            "cmdb:get_asset": Risk.SAFE,
            "cmdb:get_service_topology": Risk.SAFE,
            "cmdb:get_change_records": Risk.SAFE,
            "cmdb:update_asset_status": Risk.MEDIUM,
        },
    ),
    "monitoring": (
        {
            "type": "monitoring",
            # Nothing has to answer there: listing tools asks no backend.
            "config": {"monitoring": {"prometheusUrl": "http://127.0.0.1:9", "alertmanagerUrl": "http://127.0.0.1:9"}},
        },
        {
            "monitoring:query_metrics": Risk.SAFE,
            "monitoring:query_range": Risk.SAFE,
            "monitoring:get_alerts": Risk.SAFE,
            "monitoring:list_silences": Risk.SAFE,
            "monitoring:create_silence": Risk.MEDIUM,
            "monitoring:expire_silence": Risk.MEDIUM,
        },
    ),
}


@pytest.fixture
def pod_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MCP_PORT", "MCP_HOST", "MCP_TRANSPORT", "MCP_PATH", "CMDB_BACKEND", "MON_PROMETHEUS_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def config_json(api: KubeClient, name: str) -> str:
    found = await api.get(CONFIG_MAP, NAMESPACE, f"{name}-config")
    assert found is not None, "the operator has not written the server's ConfigMap yet"
    return str(found["data"]["config.json"])


@pytest.mark.parametrize("server_type", sorted(CASES))
async def test_a_built_in_server_reaches_the_catalog_with_its_prefix_and_risks(
    server_type: str, api: KubeClient, kubeconfig: Path, pod_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec, expected = CASES[server_type]
    port = free_port()
    settings = {"catalog_namespace": CATALOG_NAMESPACE, "catalog_debounce_seconds": 0.1}
    async with running_operator(kubeconfig, **settings):
        await create_mcpserver(api, server_type, {**spec, "port": port})
        await api.create(POD, server_pod(server_type, f"{server_type}-1", {}))
        config = tmp_path / "config.json"
        config.write_text(await eventually(lambda: config_json(api, server_type)))

        pod_env.setenv("POD_NAME", f"{server_type}-1")
        pod_env.setenv("POD_NAMESPACE", NAMESPACE)
        config_file = ConfigFile.read(config)
        server_settings = ServerSettings.load(config_file, host="127.0.0.1", port=port)
        module = create_module(server_type, server_settings, config_file)
        async with running(build_server(module, server_settings)):

            async def in_catalog() -> CatalogServer:
                entry = await cataloged(api, server_type)
                assert entry is not None
                assert set(expected) <= {tool.name for tool in entry.tools}, entry
                return entry

            entry = await eventually(in_catalog, within=30)

    assert entry.prefix == server_type
    assert all(tool.name.startswith(f"{server_type}:") for tool in entry.tools)
    risks = {tool.name: tool.risk for tool in entry.tools if tool.name in expected}
    assert risks == expected
    writes = {tool.name: tool.permissions for tool in entry.tools if tool.risk is not Risk.SAFE}
    assert all(permissions == (f"{name.split('_')[0]}",) for name, permissions in writes.items()), writes
