"""Every transport against a real server: listing, calls, tool errors, JSON-RPC errors, deadlines, concurrency,
credentials, and the streamable-HTTP protocol revisions (2026-07-28, the handshake, the fallback between them,
event-stream responses, Mcp-Param headers)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import mcp_types as types
import pytest
import pytest_asyncio
from mcp.shared.inbound import encode_header_value
from mcp_types import INVALID_PARAMS
from prometheus_client import CollectorRegistry

from mcpfleet_gateway.upstreams import (
    Upstream,
    UpstreamMetrics,
    UpstreamProtocolError,
    UpstreamRPCError,
    UpstreamSpec,
    UpstreamTimeout,
    UpstreamUnavailable,
    build_upstream,
)
from mcpfleet_gateway.upstreams.http import StreamableHTTPUpstream
from tests.integration.gateway.upstreams.conftest import APP_TARGET, REPO, AppProcess, Apps, app_command

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

APP_TOOLS = {
    "echo",
    "add",
    "fail",
    "slow",
    "headers",
    "counter",
    "pid",
    "progress_echo",
    "routed",
    "change_tools",
}
CASES = (
    "http-json",
    "http-session",
    "http-handshake",
    "http-fallback",
    "sse",
    "websocket",
    "stdio",
    "in-process",
)
NETWORK_CASES = ("http-json", "http-session", "http-handshake", "sse", "websocket")


def spec_for(case: str, apps: Apps, **changes: Any) -> UpstreamSpec:
    documents: dict[str, dict[str, Any]] = {
        "http-json": {"transport": "streamable-http", "url": apps.http_json.url},
        "http-session": {"transport": "streamable-http", "url": apps.http_session.url},
        "http-handshake": {"transport": "streamable-http", "url": apps.http_session.url, "protocol": "handshake"},
        "http-fallback": {"transport": "streamable-http", "url": apps.http_handshake_only.url},
        "sse": {"transport": "sse", "url": apps.sse.url},
        "websocket": {"transport": "websocket", "url": apps.websocket.url},
        "stdio": {"transport": "stdio", "command": app_command()[0], "args": app_command("--transport", "stdio")[1:]},
        "in-process": {"transport": "in-process", "target": APP_TARGET},
    }
    document = documents[case]
    if document["transport"] == "stdio":
        document["cwd"] = str(REPO)
    document.update(changes)
    return UpstreamSpec.model_validate(document)


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=CASES)
async def upstream(request: pytest.FixtureRequest, apps: Apps) -> AsyncIterator[Upstream]:
    case: str = request.param
    up = build_upstream(case, spec_for(case, apps))
    await up.start()
    yield up
    await up.close()


async def test_lists_follow_pagination(upstream: Upstream) -> None:
    tools = await upstream.list_tools()
    # The app lists four tools per page: ten tools are three pages.
    assert {tool.name for tool in tools} >= APP_TOOLS
    assert len({tool.name for tool in tools}) == len(tools)
    resources = await upstream.list_resources()
    assert [str(resource.uri) for resource in resources] == ["resource://upstream-app/greeting"]
    prompts = await upstream.list_prompts()
    assert [prompt.name for prompt in prompts] == ["greet"]


async def test_calls_reads_and_prompts(upstream: Upstream) -> None:
    echoed = await upstream.call_tool("echo", {"text": "héllo"})
    assert text_of(echoed) == "héllo"
    assert not echoed.is_error
    added = await upstream.call_tool("add", {"a": 2, "b": 40})
    assert text_of(added) == "42"
    assert added.structured_content == {"sum": 42}
    resource = await upstream.read_resource("resource://upstream-app/greeting")
    content = resource.contents[0]
    assert isinstance(content, types.TextResourceContents)
    assert content.text == "hello from upstream"
    prompt = await upstream.get_prompt("greet", {"name": "Ada"})
    message = prompt.messages[0].content
    assert isinstance(message, types.TextContent)
    assert message.text == "Hello, Ada!"
    assert upstream.health().up


async def test_tool_error_is_a_result(upstream: Upstream) -> None:
    result = await upstream.call_tool("fail", {"message": "disk full"})
    assert result.is_error
    assert text_of(result) == "disk full"
    assert upstream.breaker.state == "closed"


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("no_such_tool", {}, "Unknown tool: no_such_tool"),
        ("add", {"a": "two", "b": 1}, "arguments.a: expected int"),
    ],
)
async def test_jsonrpc_error_is_passed_on_unchanged(
    upstream: Upstream, tool: str, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(UpstreamRPCError) as caught:
        await upstream.call_tool(tool, arguments)
    assert caught.value.code == INVALID_PARAMS
    assert caught.value.message == message
    assert caught.value.error_data() == types.ErrorData(code=INVALID_PARAMS, message=message)
    # An error answer proves the upstream alive: no breaker failure.
    assert upstream.breaker.consecutive_failures == 0


async def test_timeout_within_the_deadline(upstream: Upstream) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        await upstream.call_tool("slow", {"seconds": 5}, timeout=0.4)
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 1.0
    assert caught.value.operation == "tools/call"
    # The upstream is still usable afterwards.
    assert text_of(await upstream.call_tool("echo", {"text": "after"})) == "after"


@pytest.mark.parametrize("case", ["http-json", "http-handshake", "websocket", "in-process"])
async def test_a_call_may_take_longer_than_the_connect_timeout(case: str, apps: Apps) -> None:
    spec = spec_for(case, apps, timeouts={"connect": 0.3})
    async with build_upstream(case, spec) as up:
        result = await up.call_tool("slow", {"seconds": 0.6}, timeout=5)
    assert text_of(result) == "slept 0.6"


async def test_concurrent_calls_are_all_answered(upstream: Upstream) -> None:
    results = await asyncio.gather(*(upstream.call_tool("echo", {"text": f"call-{i}"}) for i in range(50)))
    assert [text_of(result) for result in results] == [f"call-{i}" for i in range(50)]
    sums = await asyncio.gather(*(upstream.call_tool("add", {"a": i, "b": i}) for i in range(20)))
    assert [result.structured_content for result in sums] == [{"sum": 2 * i} for i in range(20)]


async def test_health_check(upstream: Upstream) -> None:
    health = await upstream.check_health()
    assert health.up
    assert health.breaker == "closed"
    assert health.checked_at is not None


# -- credentials -------------------------------------------------------------------------------------------------

# What a request to an upstream may carry besides the configured credentials: transport and protocol headers.
TRANSPORT_HEADERS = {
    "host",
    "accept",
    "accept-encoding",
    "content-type",
    "content-length",
    "user-agent",
    "connection",
    "cache-control",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "mcp-session-id",
    "last-event-id",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "traceparent",
}


@pytest.mark.parametrize("case", NETWORK_CASES)
@pytest.mark.parametrize("scheme", ["bearer", "basic"])
async def test_configured_credentials_reach_the_upstream_and_nothing_else(case: str, scheme: str, apps: Apps) -> None:
    credential: dict[str, Any] = (
        {"bearer": "upstream-token"} if scheme == "bearer" else {"basic": {"username": "gw", "password": "pw"}}
    )
    spec = spec_for(case, apps, auth={**credential, "headers": {"X-Api-Key": "k-123"}})
    async with build_upstream(case, spec) as up:
        result = await up.call_tool("headers", {})
    assert isinstance(result.structured_content, dict)
    headers: dict[str, str] = result.structured_content["headers"]
    expected = "Bearer upstream-token" if scheme == "bearer" else "Basic " + base64.b64encode(b"gw:pw").decode()
    assert headers["authorization"] == expected
    assert headers["x-api-key"] == "k-123"
    assert set(headers) - TRANSPORT_HEADERS == {"authorization", "x-api-key"}


@pytest.mark.parametrize("case", NETWORK_CASES)
async def test_without_credentials_no_authorization_is_sent(case: str, apps: Apps) -> None:
    async with build_upstream(case, spec_for(case, apps)) as up:
        result = await up.call_tool("headers", {})
    assert isinstance(result.structured_content, dict)
    assert set(result.structured_content["headers"]) <= TRANSPORT_HEADERS


# -- streamable HTTP specifics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "mode", "has_session"),
    [
        ("http-json", "modern", False),
        ("http-session", "modern", False),
        ("http-handshake", "handshake", True),
        ("http-fallback", "handshake", True),
    ],
)
async def test_protocol_revision_negotiation(case: str, mode: str, has_session: bool, apps: Apps) -> None:
    async with build_upstream(case, spec_for(case, apps)) as up:
        assert isinstance(up, StreamableHTTPUpstream)
        assert text_of(await up.call_tool("echo", {"text": "x"})) == "x"
        assert up.protocol_mode == mode
        assert (up.session_id is not None) is has_session


async def _content_type_of_raw_call(app: AppProcess, modern: bool) -> str:
    """What the server answers progress_echo with, asked directly (proves the case exercises event streams)."""
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=accept) as http:
        if modern:
            meta = {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
            headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "progress_echo"}
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "progress_echo", "arguments": {"text": "t"}, "_meta": meta},
            }
            async with http.post(app.url, json=body, headers=headers) as response:
                await response.read()
                return response.headers["Content-Type"]
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        async with http.post(app.url, json=init) as response:
            await response.read()
            return response.headers["Content-Type"]


@pytest.mark.parametrize("case", ["http-session", "http-handshake"])
async def test_event_stream_responses(case: str, apps: Apps) -> None:
    assert (await _content_type_of_raw_call(apps.http_session, modern=case == "http-session")).startswith(
        "text/event-stream"
    )
    async with build_upstream(case, spec_for(case, apps)) as up:
        # A notification precedes the answer on the stream; it is skipped, the answer is found by its id.
        results = await asyncio.gather(*(up.call_tool("progress_echo", {"text": f"p{i}"}) for i in range(10)))
    assert [text_of(result) for result in results] == [f"p{i}" for i in range(10)]


async def test_mcp_param_headers_are_mirrored_even_before_listing(apps: Apps) -> None:
    async with build_upstream("routed", spec_for("http-json", apps)) as up:
        # Never listed: the server rejects the missing Mcp-Param-Tenant header, the upstream learns it and resends.
        first = await up.call_tool("routed", {"tenant": "acme"})
        assert first.structured_content == {"header": "acme"}
        second = await up.call_tool("routed", {"tenant": "ünïcode tenant"})
        assert second.structured_content == {"header": encode_header_value("ünïcode tenant")}
        assert text_of(second) == "ünïcode tenant"


async def test_http_statuses_are_classified(apps: Apps) -> None:
    registry = CollectorRegistry()
    metrics = UpstreamMetrics(registry)
    not_mcp = spec_for("http-json", apps, url=f"{apps.http_json.base}/no-such-endpoint")
    async with build_upstream("wrong-url", not_mcp, metrics) as up:
        with pytest.raises(UpstreamProtocolError, match="HTTP 404"):
            await up.call_tool("echo", {"text": "x"})
        assert up.breaker.consecutive_failures == 0  # it answered: a configuration problem, not an outage
    maintenance = spec_for(
        "http-json", apps, url=f"{apps.http_json.base}/maintenance", retries={"attempts": 2, "backoff_seconds": 0.01}
    )
    async with build_upstream("maintenance", maintenance, metrics) as up:
        with pytest.raises(UpstreamUnavailable, match="HTTP 503"):
            await up.call_tool("echo", {"text": "x"}, retry=True)
        assert up.breaker.consecutive_failures == 3  # the attempt and both retries
    assert registry.get_sample_value("mcpfleet_gateway_upstream_retries_total", {"upstream": "maintenance"}) == 2
    assert (
        registry.get_sample_value(
            "mcpfleet_gateway_upstream_calls_total", {"upstream": "wrong-url", "outcome": "protocol-error"}
        )
        == 1
    )


async def test_health_url_is_used_when_configured(apps: Apps) -> None:
    spec = spec_for("http-json", apps, health={"url": f"{apps.http_json.base}/healthz", "interval_seconds": 0})
    async with build_upstream("health-url", spec) as up:
        assert (await up.check_health()).up
    broken = spec_for("http-json", apps, health={"url": f"{apps.http_json.base}/nothing-here", "interval_seconds": 0})
    async with build_upstream("health-url", broken) as up:
        health = await up.check_health()
        assert not health.up
        assert "HTTP 404" in (health.last_error or "")
