"""Upstreams that die, drop connections and come back: fail fast, breaker cycle, retries only for safe calls,
session re-initialisation, stdio restarts, list_changed notifications."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import mcp_types as types
import pytest
from prometheus_client import CollectorRegistry

from mcpfleet_gateway.upstreams import (
    Upstream,
    UpstreamMetrics,
    UpstreamSpec,
    UpstreamUnavailable,
    build_upstream,
)
from mcpfleet_gateway.upstreams.http import StreamableHTTPUpstream
from mcpfleet_gateway.upstreams.session import SessionUpstream
from tests.integration.gateway.upstreams.conftest import (
    APP_TARGET,
    REPO,
    AppFactory,
    AppProcess,
    Apps,
    ProxyFactory,
    app_command,
    process_alive,
)

pytestmark = pytest.mark.integration

# (transport of the app, its flags, spec overrides): the network transports the gateway dials.
NETWORK = {
    "http-json": ("streamable-http", ("--stateless", "--json"), {}),
    "http-handshake": ("streamable-http", (), {"protocol": "handshake"}),
    "sse": ("sse", (), {}),
    "websocket": ("websocket", (), {}),
}


def shared_app(apps: Apps, case: str) -> AppProcess:
    return {
        "http-json": apps.http_json,
        "http-handshake": apps.http_session,
        "sse": apps.sse,
        "websocket": apps.websocket,
    }[case]


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def eventually(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def counter(up: Upstream) -> int:
    result = await up.call_tool("counter", {"peek": True})
    assert isinstance(result.structured_content, dict)
    return int(result.structured_content["count"])


@pytest.mark.parametrize("case", ["http-json", "sse", "websocket"])
async def test_dead_upstream_fails_fast_then_breaker_opens_and_recovers(
    case: str, app_factory: AppFactory, proxy_factory: ProxyFactory
) -> None:
    transport, flags, overrides = NETWORK[case]
    app = app_factory(transport, *flags)
    proxy = await proxy_factory(app.port)  # counts the connections the gateway opens
    spec = UpstreamSpec.model_validate(
        {
            "transport": transport,
            "url": app.url_via(proxy.port),
            "breaker": {"failure_threshold": 2, "reset_seconds": 1.5},
            "retries": {"attempts": 0},
            "health": {"interval_seconds": 0},
            **overrides,
        }
    )
    async with build_upstream(case, spec) as up:
        assert text_of(await up.call_tool("echo", {"text": "before"})) == "before"
        app.kill()

        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable) as caught:
                await up.call_tool("echo", {"text": "down"})
            assert time.monotonic() - started < 1.0
            assert not caught.value.breaker_open
        assert up.health().breaker == "open"
        assert not up.health().up

        # Open: calls fail at once, with no connection attempt at all.
        await asyncio.sleep(0.3)
        connections = proxy.connections
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable) as caught:
            await up.call_tool("echo", {"text": "still down"})
        assert time.monotonic() - started < 0.05
        assert caught.value.breaker_open
        assert "circuit breaker open" in str(caught.value)
        assert case in str(caught.value)

        # Back on the same port: once reset_seconds have passed, one probe goes through and closes the breaker.
        app.launch()
        await asyncio.sleep(0.2)
        assert proxy.connections == connections
        assert up.breaker.state == "open"
        await asyncio.to_thread(app.wait_ready)
        await eventually(lambda: up.breaker.state != "open", within=3.0)
        assert text_of(await up.call_tool("echo", {"text": "after"})) == "after"
        assert up.health().breaker == "closed"
        assert up.health().up


@pytest.mark.parametrize("case", list(NETWORK))
async def test_retry_after_a_dropped_connection_only_when_safe(
    case: str, apps: Apps, proxy_factory: ProxyFactory
) -> None:
    transport, _, overrides = NETWORK[case]
    app = shared_app(apps, case)
    proxy = await proxy_factory(app.port)
    registry = CollectorRegistry()
    spec = UpstreamSpec.model_validate(
        {
            "transport": transport,
            "url": app.url_via(proxy.port),
            "retries": {"attempts": 2, "backoff_seconds": 0.05},
            "health": {"interval_seconds": 0},
            **overrides,
        }
    )
    async with build_upstream(case, spec, UpstreamMetrics(registry)) as up:
        before = await counter(up)

        async def cut_while_running(retry: bool) -> types.CallToolResult:
            call = asyncio.create_task(up.call_tool("slow", {"seconds": 0.4, "count": True}, retry=retry))
            await asyncio.sleep(0.15)  # the call has reached the upstream and is running there
            proxy.sever()
            return await call

        # Not safe: the call may have had its effect (it had: the counter moved), so it is not repeated.
        with pytest.raises(UpstreamUnavailable):
            await cut_while_running(retry=False)
        assert await counter(up) == before + 1

        # Safe: the same failure is retried on a fresh connection and answered.
        result = await cut_while_running(retry=True)
        assert text_of(result) == "slept 0.4"
        assert await counter(up) == before + 3  # the cut attempt and the retry both ran
        assert registry.get_sample_value("mcpfleet_gateway_upstream_retries_total", {"upstream": case}) == 1


async def test_tool_errors_and_rpc_errors_are_never_retried(apps: Apps) -> None:
    registry = CollectorRegistry()
    spec = UpstreamSpec(transport="streamable-http", url=apps.http_json.url)
    async with build_upstream("no-retry", spec, UpstreamMetrics(registry)) as up:
        assert (await up.call_tool("fail", {"message": "x"}, retry=True)).is_error
        with pytest.raises(Exception, match="Unknown tool"):
            await up.call_tool("nope", {}, retry=True)
    assert registry.get_sample_value("mcpfleet_gateway_upstream_retries_total", {"upstream": "no-retry"}) == 0
    calls = {
        outcome: registry.get_sample_value(
            "mcpfleet_gateway_upstream_calls_total", {"upstream": "no-retry", "outcome": outcome}
        )
        for outcome in ("ok", "tool-error", "rpc-error")
    }
    assert calls == {"ok": 0, "tool-error": 1, "rpc-error": 1}


async def test_expired_http_session_is_initialised_again(app_factory: AppFactory) -> None:
    app = app_factory("streamable-http")
    spec = UpstreamSpec(transport="streamable-http", url=app.url, protocol="handshake")
    async with build_upstream("expiring", spec) as up:
        assert isinstance(up, StreamableHTTPUpstream)
        assert text_of(await up.call_tool("echo", {"text": "one"})) == "one"
        first_session = up.session_id
        assert first_session is not None
        # The new process knows no sessions: 404 for ours. (Restarted off the event loop, which keeps running
        # meanwhile as a gateway's would, and so sees the old connections close.)
        await asyncio.to_thread(app.restart)
        assert text_of(await up.call_tool("echo", {"text": "two"})) == "two"
        assert up.session_id not in (None, first_session)


async def test_stdio_subprocess_is_restarted_after_it_died() -> None:
    spec = UpstreamSpec(
        transport="stdio",
        command=app_command()[0],
        args=app_command("--transport", "stdio")[1:],
        cwd=str(REPO),
        health={"interval_seconds": 0},
    )
    async with build_upstream("stdio", spec) as up:
        assert isinstance(up, SessionUpstream)
        first = int(text_of(await up.call_tool("pid", {})))
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: not up.connected)
        assert not up.health().up
        second = int(text_of(await up.call_tool("pid", {})))
        assert second != first
        assert process_alive(second)
        assert not process_alive(first)
        assert up.connects == 2
    assert not process_alive(second)  # close() stops the subprocess


async def test_unusable_stdio_command_is_unavailable_not_a_crash() -> None:
    spec = UpstreamSpec(transport="stdio", command="/nonexistent/mcp-server", health={"interval_seconds": 0})
    async with build_upstream("missing", spec) as up:
        with pytest.raises(UpstreamUnavailable, match="cannot connect"):
            await up.call_tool("echo", {"text": "x"})
        assert not up.health().up


async def test_in_process_target_may_name_an_mcpserver_factory() -> None:
    spec = UpstreamSpec(
        transport="in-process", target="tests.integration.gateway.upstreams.upstream_app:build_mcpserver"
    )
    async with build_upstream("high-level", spec) as up:
        assert [tool.name for tool in await up.list_tools()] == ["echo"]
        assert text_of(await up.call_tool("echo", {"text": "hi"})) == "hi"


async def test_bad_in_process_target_fails_start() -> None:
    spec = UpstreamSpec(transport="in-process", target="tests.integration.gateway.upstreams.upstream_app:TOOLS")
    up = build_upstream("bad-target", spec)
    with pytest.raises(UpstreamUnavailable, match="not an MCP Server"):
        await up.start()
    await up.close()


@pytest.mark.parametrize("case", ["sse", "websocket", "stdio", "in-process"])
async def test_list_changed_notification_triggers_the_callback(case: str, apps: Apps) -> None:
    document: dict[str, Any]
    if case in ("sse", "websocket"):
        document = {"transport": case, "url": shared_app(apps, case).url}
    elif case == "stdio":
        document = {
            "transport": "stdio",
            "command": app_command()[0],
            "args": app_command("--transport", "stdio")[1:],
            "cwd": str(REPO),
        }
    else:
        document = {"transport": "in-process", "target": APP_TARGET}
    async with build_upstream(case, UpstreamSpec.model_validate(document)) as up:
        assert "extra" not in {tool.name for tool in await up.list_tools()}
        relisted: asyncio.Queue[set[str]] = asyncio.Queue()

        async def on_list_changed() -> None:
            # What the gateway does: list again, from inside the notification callback.
            await relisted.put({tool.name for tool in await up.list_tools()})

        up.on_list_changed = on_list_changed
        assert text_of(await up.call_tool("change_tools", {})) == "changed"
        names = await asyncio.wait_for(relisted.get(), timeout=5)
        assert "extra" in names
