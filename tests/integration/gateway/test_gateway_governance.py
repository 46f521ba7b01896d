"""The gateway governing real MCP sessions: authentication, RBAC with namespace scoping, argument validation,
audit with redaction, and the REST facade — against a real MCP server (in-process upstream)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from mcpfleet_gateway.audit import read_lines, verify
from tests.integration.gateway.fleet_app import SECRET_VALUE
from tests.integration.gateway.harness import (
    BOT_KEY,
    REVOKED_KEY,
    base_url,
    config_document,
    gateway_at,
    headers,
    mcp_client,
    token,
    write_config,
)

pytestmark = pytest.mark.integration

VIEWER = token("vera", ("viewer",))
OPERATOR = token("otto", ("operator",))
ADMIN = token("ada", ("admin",))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "gateway.json", config_document(tmp_path))


async def _names(url: str, bearer: str | None = None, api_key: str | None = None) -> set[str]:
    async with mcp_client(url, bearer, api_key=api_key) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


async def test_tools_list_shows_exactly_what_each_role_may_call(config: Path) -> None:
    async with gateway_at(config) as runner:
        url = f"{base_url(runner)}/mcp"
        assert await _names(url, VIEWER) == {"fleet:list_pods"}
        assert await _names(url, OPERATOR) == {"fleet:list_pods", "fleet:scale_deployment"}
        admin = await _names(url, ADMIN)
        assert {"fleet:list_pods", "fleet:scale_deployment", "fleet:delete_pod", "fleet:login"} <= admin
        assert {name for name in admin if name.startswith("gateway:")} == {
            "gateway:validate-mcp-config",
            "gateway:show-mcp-config",
            "gateway:show-mcp-config-schema",
            "gateway:set-mcp-config",
        }
        # A group claim maps to roles: sre → operator.
        assert await _names(url, token("sam", (), groups=["sre"])) == {"fleet:list_pods", "fleet:scale_deployment"}
        assert await _names(url, api_key=BOT_KEY) == {"fleet:list_pods", "fleet:scale_deployment"}


@pytest.mark.parametrize(
    ("bearer", "tool", "arguments", "allowed", "reason"),
    [
        (VIEWER, "fleet:list_pods", {"namespace": "dev"}, True, ""),
        (VIEWER, "fleet:list_pods", {"namespace": "staging"}, False, "namespace staging needs role operator or admin"),
        (
            VIEWER,
            "fleet:scale_deployment",
            {"namespace": "dev", "name": "web", "replicas": 2},
            False,
            "MEDIUM risk; the caller's roles allow up to SAFE",
        ),
        (OPERATOR, "fleet:scale_deployment", {"namespace": "staging", "name": "web", "replicas": 2}, True, ""),
        (
            OPERATOR,
            "fleet:scale_deployment",
            {"namespace": "production", "name": "web", "replicas": 2},
            False,
            "namespace production needs role admin",
        ),
        (
            OPERATOR,
            "fleet:list_pods",
            {"namespace": "dev", "all_namespaces": True},
            False,
            "across all namespaces reaches production",
        ),
        (OPERATOR, "fleet:delete_pod", {"namespace": "dev", "name": "p"}, False, "HIGH risk"),
        (ADMIN, "fleet:delete_pod", {"namespace": "production", "name": "p"}, True, ""),
        (ADMIN, "fleet:list_pods", {"namespace": "dev", "all_namespaces": True}, True, ""),
    ],
)
async def test_the_rbac_matrix_over_mcp(
    config: Path, bearer: str, tool: str, arguments: dict[str, Any], allowed: bool, reason: str
) -> None:
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", bearer) as client:
        if allowed:
            result = await client.call_tool(tool, arguments)
            assert not result.is_error, result.content
        else:
            with pytest.raises(MCPError) as refused:
                await client.call_tool(tool, arguments)
            assert refused.value.error.code == -32003
            assert reason in refused.value.error.message


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"name": "web", "replicas": 2}, "namespace"),
        ({"namespace": "dev", "name": "web", "replicas": -1}, "replicas"),
        ({"namespace": "dev", "name": "web", "replicas": "two"}, "replicas"),
    ],
)
async def test_bad_arguments_are_invalid_params_naming_the_field(
    config: Path, arguments: dict[str, Any], field: str
) -> None:
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("fleet:scale_deployment", arguments)
    assert refused.value.error.code == -32602
    assert field in refused.value.error.message
    assert (refused.value.error.data or {}).get("field") == field


async def test_authentication_matrix(config: Path) -> None:
    cases = {
        "valid": (headers(VIEWER), 200, None),
        "api key": (headers(api_key=BOT_KEY), 200, None),
        "expired": (headers(token("vera", ("viewer",), expires_in=-3600)), 401, "expired"),
        "wrong audience": (headers(token("vera", ("viewer",), audience="https://other.test")), 401, "another audience"),
        "wrong signature": (
            headers(token("vera", ("viewer",), secret="not-the-secret-0123456789abcdef-xyz")),
            401,
            "signature",
        ),
        "wrong issuer": (headers(token("vera", ("viewer",), issuer="https://evil.test")), 401, "issuer"),
        "missing": ({}, 401, "no credentials"),
        "revoked key": (headers(api_key=REVOKED_KEY), 401, "revoked"),
        "unknown key": (headers(api_key="guess"), 401, "unknown API key"),
        "not bearer": ({"Authorization": "Basic dTpw"}, 401, "Bearer"),
    }
    async with gateway_at(config) as runner, httpx2.AsyncClient(base_url=base_url(runner), timeout=10) as http:
        for case, (sent, status, reason) in cases.items():
            response = await http.get("/api/v1/tools", headers=sent)
            assert response.status_code == status, case
            if status == 401:
                challenge = response.headers["www-authenticate"]
                assert challenge.startswith('Bearer realm="mcpfleet"'), case
                assert reason in response.json()["error"]["message"], case
            # The MCP endpoint refuses the same way, before any MCP processing.
            mcp = await http.post(
                "/mcp",
                headers={
                    **sent,
                    "accept": "application/json, text/event-stream",
                    "content-type": "application/json",
                },
                content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
            )
            assert (mcp.status_code == 401) is (status == 401), case
        metadata = await http.get("/.well-known/oauth-protected-resource")
        assert metadata.status_code == 200
        assert metadata.json()["resource"] == "https://gateway.test/mcp"
        assert metadata.json()["authorization_servers"] == ["https://idp.test"]


async def test_every_call_and_denial_is_audited_with_secrets_redacted(config: Path, tmp_path: Path) -> None:
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", ADMIN) as admin:
        await admin.call_tool("fleet:login", {"username": "ada", "password": SECRET_VALUE})
        async with mcp_client(f"{base_url(runner)}/mcp", VIEWER) as viewer:
            with pytest.raises(MCPError):
                await viewer.call_tool("fleet:delete_pod", {"namespace": "dev", "name": "p"})
        async with httpx2.AsyncClient(base_url=base_url(runner)) as http:
            assert (await http.get("/api/v1/tools")).status_code == 401
    trail = tmp_path / "audit-gw-test.jsonl"
    text = trail.read_text()
    assert SECRET_VALUE not in text
    records = [json.loads(line) for line in text.splitlines()]
    by_decision = {(r["subject"], r["decision"], r["tool"]) for r in records}
    assert ("ada", "allowed", "fleet:login") in by_decision
    assert ("vera", "denied", "fleet:delete_pod") in by_decision
    assert ("unauthenticated", "denied", None) in by_decision
    login = next(r for r in records if r["tool"] == "fleet:login")
    assert login["arguments"]["password"] != SECRET_VALUE
    assert login["roles"] == ["admin"]
    assert login["status"] == "ok"
    assert login["latency_ms"] > 0
    assert login["client_address"] == "127.0.0.1"
    assert login["request_id"]
    assert verify(read_lines(trail)).ok


async def test_rest_facade_and_its_openapi_document(config: Path) -> None:
    async with gateway_at(config) as runner, httpx2.AsyncClient(base_url=base_url(runner), timeout=10) as http:
        listed = await http.get("/api/v1/tools", headers=headers(OPERATOR))
        assert {t["name"] for t in listed.json()["tools"]} == {"fleet:list_pods", "fleet:scale_deployment"}
        called = await http.post(
            "/api/v1/tools/fleet:scale_deployment/call",
            headers=headers(OPERATOR),
            json={"arguments": {"namespace": "staging", "name": "web", "replicas": 3}},
        )
        assert called.status_code == 200
        assert called.json()["structuredContent"] == {"deployment": "staging/web", "from": 1, "to": 3}
        bad = await http.post(
            "/api/v1/tools/fleet:scale_deployment/call",
            headers=headers(OPERATOR),
            json={"arguments": {"namespace": "staging", "name": "web", "replicas": 500}},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["data"]["field"] == "replicas"
        forbidden = await http.post(
            "/api/v1/tools/fleet:delete_pod/call",
            headers=headers(OPERATOR),
            json={"arguments": {"namespace": "dev", "name": "p"}},
        )
        assert forbidden.status_code == 403
        unknown = await http.post("/api/v1/tools/fleet:nope/call", headers=headers(ADMIN), json={"arguments": {}})
        assert unknown.status_code == 404
        resources = await http.get("/api/v1/resources", headers=headers(VIEWER))
        assert [r["uri"] for r in resources.json()["resources"]] == ["fleet://inventory"]
        document = (await http.get("/api/v1/openapi.json", headers=headers(OPERATOR))).json()
        assert document["openapi"] == "3.1.0"
        operation = document["paths"]["/api/v1/tools/fleet:scale_deployment/call"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["arguments"]["required"] == ["namespace", "name", "replicas"]
        assert operation["x-mcpfleet-risk"] == "MEDIUM"
        assert "/api/v1/tools/fleet:delete_pod/call" not in document["paths"]


async def test_resources_and_prompts_are_aggregated(config: Path) -> None:
    async with gateway_at(config) as runner, mcp_client(f"{base_url(runner)}/mcp", VIEWER) as client:
        resources = (await client.list_resources()).resources
        assert [(r.name, str(r.uri)) for r in resources] == [("fleet:inventory", "fleet://inventory")]
        read = await client.read_resource("fleet://inventory")
        assert "3 pods" in read.contents[0].text  # type: ignore[union-attr]
        prompts = (await client.list_prompts()).prompts
        assert [p.name for p in prompts] == ["fleet:triage"]
        prompt = await client.get_prompt("fleet:triage", {"service": "checkout"})
        assert "Triage checkout" in prompt.messages[0].content.text  # type: ignore[union-attr]


async def test_hardening(tmp_path: Path) -> None:
    document = config_document(
        tmp_path,
        hardening={"cors_origins": ["https://bots.example"], "max_body_bytes": 2048},
    )
    async with (
        gateway_at(write_config(tmp_path / "gateway.json", document)) as runner,
        httpx2.AsyncClient(base_url=base_url(runner), timeout=10) as http,
    ):
        sent = headers(VIEWER)
        assert (await http.get("/api/v1/tools", headers={**sent, "Host": "evil.example"})).status_code == 421
        assert (await http.get("/api/v1/tools", headers={**sent, "Origin": "https://evil.example"})).status_code == 403
        cors = await http.get("/api/v1/tools", headers={**sent, "Origin": "https://bots.example"})
        assert cors.status_code == 200
        assert cors.headers["access-control-allow-origin"] == "https://bots.example"
        preflight = await http.options("/api/v1/tools", headers={"Origin": "https://bots.example"})
        assert preflight.status_code == 204
        big = await http.post(
            "/api/v1/tools/fleet:list_pods/call", headers=sent, json={"arguments": {"namespace": "x" * 5000}}
        )
        assert big.status_code == 413
    document = config_document(tmp_path, hardening={"ip_allowlist": ["10.0.0.0/8"]})
    async with (
        gateway_at(write_config(tmp_path / "gateway.json", document)) as runner,
        httpx2.AsyncClient(base_url=base_url(runner), timeout=10) as http,
    ):
        refused = await http.get("/api/v1/tools", headers=headers(VIEWER))
        assert refused.status_code == 403
        assert "ip_allowlist" in refused.json()["error"]
        assert (await http.get("/health")).status_code == 403
