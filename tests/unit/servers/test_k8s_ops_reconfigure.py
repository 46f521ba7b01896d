"""k8s-ops taking reloaded settings: the namespaces allow-list applies at once, the rest waits for a restart,
and a bad value changes nothing, neither in the module nor in the base. No cluster is needed: the namespace
policy refuses before any request."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from mcpfleet_servers.base.app import build_server
from mcpfleet_servers.base.module import Reconfigurable, SettingsRejected
from mcpfleet_servers.base.settings import ConfigFile, ServerSettings
from mcpfleet_servers.base.toolkit import Refused
from mcpfleet_servers.k8s_ops.server import K8sOpsServer
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from mcpfleet_servers.registry import create_module


def _config(**k8s_ops: Any) -> ConfigFile:
    return ConfigFile.model_validate({"type": "k8s-ops", "config": {"k8sOps": k8s_ops}})


def _module(config: ConfigFile) -> K8sOpsServer:
    module = create_module("k8s-ops", ServerSettings.load(config), config)
    assert isinstance(module, K8sOpsServer)
    assert isinstance(module, Reconfigurable)
    return module


async def test_the_namespaces_allow_list_follows_a_reload(server_env: pytest.MonkeyPatch) -> None:
    module = _module(_config())
    before = module.toolset()
    config = _config(namespaces=["team-a"])
    await module.reconfigure(ServerSettings.load(config), config)
    assert module.settings.allowed_namespaces == ("team-a",)
    after = module.toolset()
    assert after is not before, "the tools are built again around the new settings"
    with pytest.raises(Refused, match="outside K8S_ALLOWED_NAMESPACES"):
        await after["list_pods"].fn(namespace="elsewhere")

    cleared = _config()
    await module.reconfigure(ServerSettings.load(cleared), cleared)
    assert not module.settings.allowed_namespaces, "no list: every namespace"


async def test_an_unchanged_reload_keeps_the_toolset(server_env: pytest.MonkeyPatch) -> None:
    config = _config(namespaces=["team-a"])
    module = _module(config)
    before = module.toolset()
    await module.reconfigure(ServerSettings.load(config), config)
    assert module.toolset() is before


async def test_what_needs_a_restart_is_logged_and_kept(
    server_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    module = _module(_config())
    server_env.setenv("K8S_EXEC_ENABLED", "true")
    with caplog.at_level(logging.WARNING, logger="mcpfleet_servers.k8s_ops.server"):
        await module.reconfigure(ServerSettings.load(), None)
    assert "K8S_EXEC_ENABLED" in caplog.text
    assert "needs a restart" in caplog.text
    assert not module.settings.exec_enabled
    assert "exec_in_pod" not in {tool.name for tool in module.toolset()}


async def test_a_bad_value_changes_nothing_in_the_module_or_the_base(server_env: pytest.MonkeyPatch) -> None:
    module = _module(_config())
    server = build_server(module, ServerSettings.load())
    served = [tool.name for tool in server.tools]
    toolset = module.toolset()
    server_env.setenv("K8S_REQUEST_TIMEOUT_SECONDS", "soon")
    with pytest.raises(SettingsRejected) as rejected:
        await server.reconfigure(ServerSettings.load(read_only=True))
    assert any(line.startswith("K8S_REQUEST_TIMEOUT_SECONDS:") for line in rejected.value.lines)
    assert not server.settings.read_only
    assert [tool.name for tool in server.tools] == served
    assert module.toolset() is toolset


async def test_read_only_is_the_base_policy(server_env: pytest.MonkeyPatch) -> None:
    module = _module(_config())
    server = build_server(module, ServerSettings.load())
    assert "delete_resource" in {tool.name for tool in server.tools}
    await server.refresh_tools()  # what the runner does at start
    refresh = await server.reconfigure(ServerSettings.load(_config(readOnly=True)))
    assert refresh.changed
    assert "delete_resource" in refresh.removed
    assert all(tool.traits.read_only for tool in server.tools)


@pytest.mark.parametrize(
    ("written", "allowed"),
    [("team-a", ("team-a",)), ("team-a,team-b", ("team-a", "team-b")), (["team-a", "team-b"], ("team-a", "team-b"))],
)
def test_namespaces_in_the_config_file_are_names_not_letters(written: Any, allowed: tuple[str, ...]) -> None:
    settings = K8sOpsSettings.from_config({"config": {"k8sOps": {"namespaces": written}}})
    assert settings.allowed_namespaces == allowed
