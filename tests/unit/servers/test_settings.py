"""ServerSettings: defaults, CLI > env > config file > default, errors naming the variable, Host allow-lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.settings import (
    ConfigFile,
    ConfigFileError,
    ServerSettings,
    TransportName,
    allowed_hosts,
    allowed_origins,
    dns_rebinding_disabled,
    settings_error_lines,
)

OPERATOR_CONFIG: dict[str, Any] = {
    "name": "ops",
    "namespace": "team-a",
    "type": "k8s-ops",
    "transport": "sse",
    "port": 9000,
    "path": "/events",
    "toolPrefix": "k8s",
    "config": {"k8sOps": {"readOnly": True, "requireConfirmation": False, "namespaces": ["team-a"]}},
    "tools": {"allow": ["get_*", "list_*"], "deny": ["get_secret*"], "riskOverrides": {"x": "HIGH"}},
}


def _config(tmp_path: Path, document: dict[str, Any] | str = OPERATOR_CONFIG) -> ConfigFile:
    path = tmp_path / "config.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return ConfigFile.read(path)


def test_defaults(server_env: pytest.MonkeyPatch) -> None:
    settings = ServerSettings.load()
    assert (settings.host, settings.port, settings.transport) == ("127.0.0.1", 8080, TransportName.STREAMABLE_HTTP)
    assert settings.mcp_path == "/mcp"
    assert settings.require_confirmation is True
    assert settings.allow_unconfirmed is False
    assert not settings.read_only
    assert not settings.no_destructive
    assert not settings.stateless
    assert not settings.json_responses, "sessions answer over SSE by default"
    assert settings.tools_allow == settings.tools_deny == ()
    assert not settings.in_pod


def test_json_responses_follow_statelessness_unless_set(server_env: pytest.MonkeyPatch) -> None:
    assert ServerSettings.load(stateless=True).json_responses
    assert not ServerSettings.load(stateless=True, json_response=False).json_responses
    assert ServerSettings.load(json_response=True).json_responses
    server_env.setenv("MCP_JSON_RESPONSE", "false")
    assert not ServerSettings.load(stateless=True).json_responses


def test_sse_path_defaults_to_sse(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("MCP_TRANSPORT", "sse")
    assert ServerSettings.load().mcp_path == "/sse"


def test_env_values_are_typed_and_lists_split(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("MCP_PORT", "9100")
    server_env.setenv("MCP_READ_ONLY", "true")
    server_env.setenv("MCP_TOOLS_DENY", " delete_* , exec_pod ,, ")
    server_env.setenv("MCP_ALLOWED_HOSTS", "mcp.example.com,10.1.2.3:8080")
    server_env.setenv("MCP_CALL_TIMEOUT_SECONDS", "2.5")
    server_env.setenv("MCP_MAX_ITEMS", "50")
    server_env.setenv("MCP_MAX_OUTPUT_BYTES", "100000")
    settings = ServerSettings.load()
    assert settings.port == 9100
    assert settings.read_only is True
    assert settings.tools_deny == ("delete_*", "exec_pod")
    assert settings.allowed_hosts == ("mcp.example.com", "10.1.2.3:8080")
    assert settings.call_timeout_seconds == 2.5
    assert settings.budget() == Budget(max_items=50, max_bytes=75000)


def test_config_file_values_apply(server_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = ServerSettings.load(_config(tmp_path))
    assert settings.transport == TransportName.SSE
    assert (settings.port, settings.mcp_path) == (9000, "/events")
    assert settings.tools_allow == ("get_*", "list_*")
    assert settings.tools_deny == ("get_secret*",)
    assert settings.read_only is True
    assert settings.require_confirmation is False
    assert (settings.server_name, settings.pod_namespace, settings.tool_prefix) == ("ops", "team-a", "k8s")


def test_precedence_cli_over_env_over_file_over_default(server_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = _config(tmp_path)
    server_env.setenv("MCP_PORT", "9500")
    server_env.setenv("MCP_TRANSPORT", "streamable-http")
    server_env.setenv("MCP_TOOLS_ALLOW", "*")
    settings = ServerSettings.load(config, port=9999)
    assert settings.port == 9999  # CLI over env and file
    assert settings.transport == TransportName.STREAMABLE_HTTP  # env over file
    assert settings.tools_allow == ("*",)  # env over file
    assert settings.mcp_path == "/events"  # file over default
    assert settings.host == "127.0.0.1"  # default
    # an option left out (None) does not hide the lower sources
    assert ServerSettings.load(config, port=None, host=None).port == 9500


def test_bad_values_name_the_variable(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("MCP_PORT", "http")
    server_env.setenv("MCP_TRANSPORT", "carrier-pigeon")
    with pytest.raises(ValidationError) as caught:
        ServerSettings.load()
    lines = settings_error_lines(caught.value)
    assert any(line.startswith("MCP_PORT (port)") for line in lines)
    assert any(line.startswith("MCP_TRANSPORT (transport)") for line in lines)


def test_bad_value_from_the_config_file_is_refused(server_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        ServerSettings.load(_config(tmp_path, {**OPERATOR_CONFIG, "transport": "smoke-signals"}))
    assert settings_error_lines(caught.value)[0].startswith("MCP_TRANSPORT")


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not JSON"), (json.dumps({"port": "many"}), "port"), (json.dumps([1]), "invalid")],
)
def test_unusable_config_files(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ConfigFileError, match=message):
        _config(tmp_path, content)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read"):
        ConfigFile.read(tmp_path / "nope.json")


def test_pod_identity_comes_from_the_operator_env(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("POD_NAME", "ops-7d9f-abcde")
    server_env.setenv("POD_NAMESPACE", "team-a")
    server_env.setenv("MCPFLEET_SERVER_NAME", "ops")
    settings = ServerSettings.load()
    assert settings.in_pod
    assert settings.service_hostnames() == ["ops", "ops.team-a", "ops.team-a.svc", "ops.team-a.svc.cluster.local"]


def test_allowed_hosts_in_a_pod_cover_the_service_with_any_port(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("POD_NAMESPACE", "team-a")
    server_env.setenv("MCPFLEET_SERVER_NAME", "ops")
    server_env.setenv("POD_IP", "10.244.1.7")
    server_env.setenv("MCP_HOST", "0.0.0.0")
    hosts = allowed_hosts(ServerSettings.load())
    for name in ("ops", "ops.team-a", "ops.team-a.svc", "ops.team-a.svc.cluster.local", "10.244.1.7", "127.0.0.1"):
        assert name in hosts
        assert f"{name}:*" in hosts
    assert "localhost:*" in hosts
    assert "[::1]:*" in hosts
    assert "http://ops.team-a.svc:*" in allowed_origins(ServerSettings.load())
    assert not dns_rebinding_disabled(ServerSettings.load())


def test_allowed_hosts_outside_a_pod_are_loopback(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("MCP_HOST", "0.0.0.0")
    hosts = allowed_hosts(ServerSettings.load())
    assert hosts == ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]


def test_explicit_allowed_hosts_replace_the_defaults(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("MCP_ALLOWED_HOSTS", "mcp.example.com,10.0.0.1:8080,[fd00::1]:443")
    server_env.setenv("MCP_ALLOWED_ORIGINS", "https://app.example.com")
    settings = ServerSettings.load()
    assert allowed_hosts(settings) == ["mcp.example.com", "mcp.example.com:*", "10.0.0.1:8080", "[fd00::1]:443"]
    assert allowed_origins(settings) == ["https://app.example.com"]


def test_only_an_explicit_star_turns_the_host_check_off(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("MCP_HOST", "0.0.0.0")
    assert not dns_rebinding_disabled(ServerSettings.load())
    server_env.setenv("MCP_ALLOWED_HOSTS", "*")
    assert dns_rebinding_disabled(ServerSettings.load())


def test_type_block_of_other_types(tmp_path: Path) -> None:
    config = _config(tmp_path, {"type": "monitoring", "config": {"monitoring": {"readOnly": True}}})
    assert config.type_block() == {"readOnly": True}
    assert config.settings_values()["read_only"] is True
    assert _config(tmp_path, {"type": "custom"}).type_block() == {}
