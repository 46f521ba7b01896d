"""The gateway's config tools over real MCP sessions: validation, masking, path restriction, hot reload with
list_changed, and 50 concurrent writers that never leave a partial file."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from mcpfleet_gateway.config import config_store
from mcpfleet_gateway.config_store import ConfigInvalid
from tests.integration.gateway.harness import (
    base_url,
    config_document,
    gateway_at,
    headers,
    listening_client,
    mcp_client,
    token,
    write_config,
)

pytestmark = pytest.mark.integration

ADMIN = token("ada", ("admin",))
OPERATOR = token("otto", ("operator",))


def _payload(result: types.CallToolResult) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict), result.content
    return dict(result.structured_content)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "gateway.json", config_document(tmp_path))


async def test_only_admins_see_the_config_tools_and_secrets_stay_masked(config: Path) -> None:
    async with gateway_at(config) as runner:
        url = f"{base_url(runner)}/mcp"
        async with mcp_client(url, OPERATOR) as operator:
            with pytest.raises(MCPError) as refused:
                await operator.call_tool("gateway:show-mcp-config", {})
            assert refused.value.error.code == -32003
        async with mcp_client(url, ADMIN) as admin:
            shown = _payload(await admin.call_tool("gateway:show-mcp-config", {}))
            text = json.dumps(shown)
            assert "gateway-test-secret" not in text
            assert shown["config"]["auth"]["audience"] == "https://gateway.test/mcp"
            schema = _payload(await admin.call_tool("gateway:show-mcp-config-schema", {}))
            assert schema["title"] == "mcpfleet gateway config"
            valid = _payload(await admin.call_tool("gateway:validate-mcp-config", {}))
            assert valid["valid"] is True


@pytest.mark.parametrize(
    "requested",
    ["/etc/passwd", "../../etc/passwd", "gateway.json/../../../etc/hosts", "other.json", "~/.ssh/id_rsa"],
)
async def test_config_file_argument_cannot_leave_the_gateways_own_file(config: Path, requested: str) -> None:
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN) as admin:
        for tool, arguments in (
            ("gateway:show-mcp-config", {"config-file": requested}),
            ("gateway:validate-mcp-config", {"config-file": requested}),
            ("gateway:set-mcp-config", {"config-file": requested, "config-content": "{}"}),
        ):
            result = await admin.call_tool(tool, arguments)
            assert result.is_error, tool
            assert "is not this gateway's config file" in _payload(result)["error"]


async def test_symlink_out_of_the_config_directory_is_refused(config: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (config.parent / "link.json").symlink_to(outside)
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN) as admin:
        result = await admin.call_tool("gateway:show-mcp-config", {"config-file": "link.json"})
        assert result.is_error


async def test_invalid_config_is_refused_and_the_file_is_untouched(config: Path) -> None:
    before = await asyncio.to_thread(config.read_bytes)
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN) as admin:
        for content, problem in (
            ('{"listen": {', "not valid JSON"),
            ('{"listen": {"port": -1}}', "listen.port"),
            ('{"upstreams": {"x": {"transport": "carrier-pigeon"}}}', "upstreams.x"),
        ):
            result = await admin.call_tool("gateway:set-mcp-config", {"config-content": content})
            assert result.is_error
            assert any(problem in p for p in _payload(result)["problems"]), _payload(result)
            checked = _payload(await admin.call_tool("gateway:validate-mcp-config", {"config-content": content}))
            assert checked["valid"] is False
        assert await asyncio.to_thread(config.read_bytes) == before
        assert not list(config.parent.glob("gateway.json.*.bak"))


async def test_set_reloads_hot_and_tells_connected_clients(config: Path, tmp_path: Path) -> None:
    async with gateway_at(config) as runner, listening_client(runner, ADMIN) as (admin, changed):
        before = {t.name for t in (await admin.list_tools()).tools}
        assert "fleet:list_pods" in before
        document = json.loads(await asyncio.to_thread(config.read_text))
        document["upstreams"]["inventory"] = document["upstreams"].pop("fleet")
        result = await admin.call_tool("gateway:set-mcp-config", {"config-content": json.dumps(document)})
        assert not result.is_error, result.content
        written = _payload(result)
        assert written["reloaded"] is True
        assert written["backup"]
        await asyncio.wait_for(changed.wait(), timeout=10)
        after = {t.name for t in (await admin.list_tools(cache_mode="refresh")).tools}
        assert "inventory:list_pods" in after
        assert "fleet:list_pods" not in after
        called = await admin.call_tool("inventory:list_pods", {"namespace": "dev"})
        assert not called.is_error


def test_fifty_concurrent_writers_never_leave_a_partial_file(config: Path, tmp_path: Path) -> None:
    store = config_store(config)
    base = json.loads(config.read_text())
    versions = []
    for writer in range(50):
        document = json.loads(json.dumps(base))
        document["listen"]["port"] = 10_000 + writer
        versions.append(json.dumps(document, indent=2))
    stop = threading.Event()
    torn: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            text = config.read_text()
            try:
                store.validate_text(text)
            except ConfigInvalid:
                torn.append(text[:200])

    watching = threading.Thread(target=reader)
    watching.start()
    start = threading.Barrier(50)

    def write(text: str) -> None:
        start.wait()
        store.write(text)

    threads = [threading.Thread(target=write, args=(text,)) for text in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watching.join()
    assert torn == []
    assert config.read_text() in versions
    backups = store.backups()
    assert 1 <= len(backups) <= 5
    for backup in backups:
        assert backup.read_text() in [*versions, json.dumps(base, indent=2)]


async def test_fifty_concurrent_set_calls_through_the_gateway(config: Path) -> None:
    """Racing admins: every write is whole, at most 5 backups stay, and the gateway runs what the file says."""
    base = json.loads(await asyncio.to_thread(config.read_text))
    versions = []
    for writer in range(50):
        document = json.loads(json.dumps(base))
        document["rate_limits"] = {"user_limit": f"{1000 + writer}/hour"}
        versions.append(json.dumps(document, indent=2))
    async with gateway_at(config) as runner, httpx2.AsyncClient(base_url=base_url(runner), timeout=60) as http:

        async def write(text: str) -> int:
            response = await http.post(
                "/api/v1/tools/gateway:set-mcp-config/call",
                headers=headers(ADMIN),
                json={"arguments": {"config-content": text}},
            )
            return response.status_code

        statuses = await asyncio.gather(*(write(text) for text in versions))
        assert statuses == [200] * 50
        final = await asyncio.to_thread(config.read_text)
        assert final in versions
        backups = await asyncio.to_thread(config_store(config).backups)
        assert 1 <= len(backups) <= 5
        for backup in backups:
            assert (await asyncio.to_thread(backup.read_text)) in [*versions, json.dumps(base, indent=2)]
        running = runner.gateway.config.rate_limits.user_limit
        assert running == json.loads(final)["rate_limits"]["user_limit"]
