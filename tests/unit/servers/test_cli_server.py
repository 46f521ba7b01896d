"""`mcpfleet server <type>`: the registry, refusals with exit 2, and the settings handed to the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from typer.testing import CliRunner

from mcpfleet_cli.main import app
from mcpfleet_contracts.mcpserver import ServerType
from mcpfleet_servers import registry
from mcpfleet_servers.base import run as base_run
from mcpfleet_servers.base.app import FleetServer
from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.settings import ConfigFile, ServerSettings
from mcpfleet_servers.base.toolkit import Toolset

runner = CliRunner()


class _Module:
    type_name = "k8s-ops"
    instructions = "test"

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def backend_status(self) -> BackendStatus:
        return BackendStatus("none", True)

    def toolset(self) -> Toolset:
        return Toolset()

    def register_extras(self, server: Any) -> None: ...


@pytest.fixture
def served(server_env: pytest.MonkeyPatch) -> list[FleetServer]:
    """Servers the CLI would run; nothing is served and logging is left alone."""
    servers: list[FleetServer] = []
    server_env.setattr(base_run, "run_server", servers.append)
    server_env.setattr(base_run, "configure_logging", lambda settings: None)
    server_env.setitem(registry.SERVER_TYPES, "k8s-ops", lambda settings, config: _Module())
    return servers


def test_every_built_in_type_of_the_crd_can_be_run() -> None:
    built_in = {server_type.value for server_type in ServerType} - {ServerType.CUSTOM.value}
    assert set(registry.SERVER_TYPES) == built_in


def test_unknown_type(served: list[FleetServer]) -> None:
    result = runner.invoke(app, ["server", "coffee"])
    assert result.exit_code == 2
    assert "unknown server type 'coffee'" in result.output


def test_missing_module_is_reported(served: list[FleetServer], server_env: pytest.MonkeyPatch) -> None:
    def missing(settings: ServerSettings, config: ConfigFile | None) -> Any:
        return registry._import("mcpfleet_servers.not_installed.server", "Server", "k8s-ops")

    server_env.setitem(registry.SERVER_TYPES, "k8s-ops", missing)
    result = runner.invoke(app, ["server", "k8s-ops"])
    assert result.exit_code == 2
    assert "the k8s-ops server is not part of this installation" in result.output


def test_bad_env_value_names_the_variable(served: list[FleetServer], server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("MCP_MAX_ITEMS", "lots")
    result = runner.invoke(app, ["server", "k8s-ops"])
    assert result.exit_code == 2
    assert "MCP_MAX_ITEMS (max_items)" in result.output
    assert not served


def test_bad_option_value_is_refused(served: list[FleetServer]) -> None:
    result = runner.invoke(app, ["server", "k8s-ops", "--transport", "pigeon"])
    assert result.exit_code == 2
    assert "MCP_TRANSPORT" in result.output


def test_unreadable_or_foreign_config_file(served: list[FleetServer], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result = runner.invoke(app, ["server", "k8s-ops", "--config", str(bad)])
    assert result.exit_code == 2
    assert "is not JSON" in result.output
    other = tmp_path / "cmdb.json"
    other.write_text(json.dumps({"type": "cmdb"}))
    result = runner.invoke(app, ["server", "k8s-ops", "--config", str(other)])
    assert result.exit_code == 2
    assert "is for type cmdb" in result.output


def test_runs_with_options_over_env_over_file(
    served: list[FleetServer], server_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"type": "k8s-ops", "transport": "sse", "port": 9000, "path": "/s"}))
    server_env.setenv("MCP_PORT", "9100")
    result = runner.invoke(app, ["server", "k8s-ops", "--config", str(config), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    (server,) = served
    settings = server.settings
    assert (settings.host, settings.port, settings.transport.value, settings.mcp_path) == ("0.0.0.0", 9100, "sse", "/s")


def test_help_names_the_command() -> None:
    result = runner.invoke(app, ["server", "--help"])
    assert result.exit_code == 0
    assert "Run a built-in MCP server" in result.output
    for option in ("--config", "--transport", "--host", "--port"):
        assert option in result.output


class _ModuleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="K8S_", extra="ignore")

    namespaces: list[str] = Field(default_factory=list)
    qps: int = 5


def test_module_settings_take_the_config_block_under_the_environment(server_env: pytest.MonkeyPatch) -> None:
    block = {"namespaces": ["team-a"], "qps": 7, "readOnly": True}
    assert registry.module_settings(_ModuleSettings, block) == _ModuleSettings(namespaces=["team-a"], qps=7)
    server_env.setenv("K8S_QPS", "9")
    assert registry.module_settings(_ModuleSettings, block).qps == 9


def test_module_settings_errors_name_the_variable(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("K8S_QPS", "fast")
    with pytest.raises(registry.ModuleSettingsInvalid) as caught:
        registry.module_settings(_ModuleSettings, {})
    assert caught.value.lines[0].startswith("K8S_QPS:")
