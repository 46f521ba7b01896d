"""Consul as an upstream source: a real Consul agent (dev mode), real upstream MCP servers registered in it with TTL
checks the test flips, and the gateway following the passing instances."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import consul.aio
import httpx2
import pytest
from mcp import Client

from mcpfleet_gateway.run import GatewayRunner
from tests.consul_agent import ConsulAgent
from tests.integration.conftest import eventually
from tests.integration.gateway.harness import (
    base_url,
    config_document,
    gateway_at,
    listening_client,
    token,
    write_config,
)
from tests.integration.gateway.upstreams.conftest import AppProcess, running_apps
from tests.integration.gateway.upstreams.upstream_app import TOOLS

pytestmark = [
    pytest.mark.integration,
    # py-consul builds its connector with arguments aiohttp deprecates (the test's own registering client).
    pytest.mark.filterwarnings("ignore:ssl_context is deprecated:DeprecationWarning"),
]

ADMIN = token("ada", ("admin",))
UPSTREAM_TOOLS = {tool.name for tool in TOOLS}


def served(prefix: str) -> set[str]:
    return {f"{prefix}:{tool}" for tool in UPSTREAM_TOOLS}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[ConsulAgent]:
    consul_agent = ConsulAgent(tmp_path / "consul")
    consul_agent.start()
    yield consul_agent
    consul_agent.stop()


@pytest.fixture(scope="module")
def upstream_apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, AppProcess]]:
    logs = tmp_path_factory.mktemp("consul-apps")
    first = AppProcess("streamable-http", logs, ("--stateless", "--json"))
    second = AppProcess("streamable-http", logs, ("--stateless", "--json"))
    with running_apps(first, second):
        yield first, second


class Registry:
    """Registers upstream apps in the agent the way the operator does, each with a TTL check the test controls."""

    def __init__(self, agent: ConsulAgent) -> None:
        self.agent = agent
        self.client: Any = None

    async def __aenter__(self) -> Registry:
        self.client = consul.aio.Consul(host="127.0.0.1", port=self.agent.http_port, scheme="http")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.close()

    async def register(
        self, service: str, instance: str, app: AppProcess, *, prefix: str | None = None, tags: tuple[str, ...] = ()
    ) -> None:
        meta = {}
        if prefix is not None:
            meta = {
                "mcp_type": "custom",
                "mcp_prefix": prefix,
                "mcp_transport": "streamable-http",
                "mcp_path": "/mcp",
                "k8s_namespace": "team-a",
                "mcpserver": service,
                "tools_digest": "sha256:test",
            }
            tags = ("mcp", "mcpfleet", "type:custom", f"prefix:{prefix}", "transport:streamable-http", *tags)
        check = {"CheckID": f"ttl:{instance}", "Name": "mcp liveness", "TTL": "10m", "Status": "passing"}
        registered = await self.client.agent.service.register(
            service, service_id=instance, address="127.0.0.1", port=app.port, tags=list(tags), meta=meta, check=check
        )
        assert registered

    async def passing(self, instance: str) -> None:
        await self.client.agent.check.ttl_pass(f"ttl:{instance}")

    async def critical(self, instance: str) -> None:
        await self.client.agent.check.ttl_fail(f"ttl:{instance}", notes="test turned it critical")


def gateway_config(tmp_path: Path, agent: ConsulAgent) -> Path:
    consul_settings = {"address": agent.address, "poll_seconds": 5}
    document = config_document(tmp_path, upstreams={}, consul=consul_settings, self_config={"enabled": False})
    return write_config(tmp_path / "gateway.json", document)


def tool_names(runner: GatewayRunner) -> set[str]:
    return set(runner.gateway.table.tools)


async def names_become(runner: GatewayRunner, expected: set[str], within: float = 30) -> None:
    async def check() -> bool:
        assert tool_names(runner) == expected
        return True

    await eventually(check, within=within)


async def ready(runner: GatewayRunner) -> dict[str, Any]:
    async with httpx2.AsyncClient(base_url=base_url(runner)) as http:
        report: dict[str, Any] = (await http.get("/ready")).json()
        return report


async def pid_of(client: Any, tool: str) -> int:
    result = await client.call_tool(tool, {})
    assert not result.is_error, result.content
    return int(result.content[0].text)


def session(runner: GatewayRunner) -> contextlib.AbstractAsyncContextManager[tuple[Client, asyncio.Event]]:
    return listening_client(runner, ADMIN)


async def test_passing_instances_are_served_and_followed(
    agent: ConsulAgent, upstream_apps: tuple[AppProcess, AppProcess], tmp_path: Path
) -> None:
    first, second = upstream_apps
    assert first.process is not None
    assert second.process is not None
    async with Registry(agent) as registry:
        await registry.register("echo-svc", "echo-svc-a", first, prefix="cons")
        # Not carrying the tag: never served.
        await registry.register("web", "web-1", second, tags=("web",))
        async with gateway_at(gateway_config(tmp_path, agent)) as runner:
            # The start waited for Consul's first answer.
            assert tool_names(runner) == served("cons")
            assert "consul/echo-svc" in (await ready(runner))["upstreams"]
            async with session(runner) as (client, changed):
                assert await pid_of(client, "cons:pid") == first.process.pid

                # A second instance; the first (by id) stays the one used until it stops passing.
                await registry.register("echo-svc", "echo-svc-b", second, prefix="cons")
                await registry.critical("echo-svc-a")

                async def moved() -> bool:
                    assert second.process is not None
                    assert await pid_of(client, "cons:pid") == second.process.pid
                    return True

                await eventually(moved, within=30)
                assert tool_names(runner) == served("cons")

                # No passing instance: the service leaves the table and clients are told.
                changed.clear()
                await registry.critical("echo-svc-b")
                await names_become(runner, set())
                await asyncio.wait_for(changed.wait(), timeout=20)
                assert (await client.list_tools(cache_mode="refresh")).tools == []

                await registry.passing("echo-svc-a")
                await names_become(runner, served("cons"))
                assert await pid_of(client, "cons:pid") == first.process.pid

                # Registered without the operator's meta: streamable HTTP at /mcp under the service's name.
                await registry.register("plain", "plain-1", second, tags=("mcp",))
                await names_become(runner, served("cons") | served("plain"))
                assert await pid_of(client, "plain:pid") == second.process.pid
                assert not [p for p in (await ready(runner))["problems"] if p.startswith("consul ")]

            # Consul turned off by a config edit: its upstreams leave with it.
            config = tmp_path / "gateway.json"
            document = json.loads(await asyncio.to_thread(config.read_text))
            del document["consul"]
            await asyncio.to_thread(write_config, config, document)
            await names_become(runner, set())
            assert runner.gateway.consul is None
            assert not [name for name in runner.gateway.upstreams if name.startswith("consul/")]


async def test_a_consul_outage_keeps_the_last_known_services_and_consul_is_followed_again(
    agent: ConsulAgent, upstream_apps: tuple[AppProcess, AppProcess], tmp_path: Path
) -> None:
    first, second = upstream_apps
    assert first.process is not None
    assert second.process is not None
    async with Registry(agent) as registry:
        await registry.register("echo-svc", "echo-svc-a", first, prefix="cons")
    async with gateway_at(gateway_config(tmp_path, agent)) as runner, session(runner) as (client, _):
        assert tool_names(runner) == served("cons")

        await asyncio.to_thread(agent.stop)

        async def reported() -> list[str]:
            problems: list[str] = (await ready(runner))["problems"]
            assert any(p.startswith("consul ") and "unreachable" in p for p in problems), problems
            return problems

        await eventually(reported, within=30)
        assert tool_names(runner) == served("cons")
        assert await pid_of(client, "cons:pid") == first.process.pid
        async with httpx2.AsyncClient(base_url=base_url(runner)) as http:
            metrics = (await http.get("/metrics")).text
        assert "mcpfleet_gateway_consul_up 0.0" in metrics
        assert "mcpfleet_gateway_table_problems 1.0" in metrics

        # Dev mode comes back empty; the registrations are restored, this time with a second service.
        await asyncio.to_thread(agent.start)
        async with Registry(agent) as registry:
            await registry.register("echo-svc", "echo-svc-a", first, prefix="cons")
            await registry.register("other-svc", "other-svc-1", second, prefix="other")
        await names_become(runner, served("cons") | served("other"))
        assert await pid_of(client, "other:pid") == second.process.pid

        async def recovered() -> bool:
            problems = (await ready(runner))["problems"]
            assert not [p for p in problems if p.startswith("consul ")], problems
            return True

        await eventually(recovered, within=30)
