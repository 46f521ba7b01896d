"""Reading the settings again (SIGHUP): the same sources, what needs a restart, errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mcpfleet_servers.base.settings import (
    RESTART_ONLY_FIELDS,
    ConfigFile,
    ConfigFileError,
    ServerSettings,
    settings_error_lines,
)

BASE: dict[str, Any] = {
    "name": "ops",
    "namespace": "team-a",
    "type": "k8s-ops",
    "port": 9000,
    "config": {"k8sOps": {"readOnly": True}},
    "tools": {"deny": ["delete_*"]},
}


def _write(path: Path, document: dict[str, Any] | str) -> None:
    path.write_text(document if isinstance(document, str) else json.dumps(document))


def _loaded(tmp_path: Path, **overrides: Any) -> tuple[Path, ServerSettings]:
    path = tmp_path / "config.json"
    _write(path, BASE)
    return path, ServerSettings.load(ConfigFile.read(path), **overrides)


def test_reload_reads_the_file_again_and_keeps_the_command_line(server_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path, settings = _loaded(tmp_path, host="0.0.0.0")
    assert settings.read_only
    assert settings.config_file is not None
    assert settings.config_file.source == path
    _write(path, {**BASE, "config": {"k8sOps": {"readOnly": False}}, "tools": {"deny": []}, "port": 9100})
    server_env.setenv("MCP_CALL_TIMEOUT_SECONDS", "12")

    reloaded = settings.reload()
    assert not reloaded.read_only
    assert reloaded.tools_deny == ()
    assert reloaded.port == 9100
    assert reloaded.host == "0.0.0.0", "the command line's value is kept"
    assert reloaded.call_timeout_seconds == 12, "the environment is read again"
    assert reloaded.config_file is not None
    assert reloaded.config_file.source == path
    assert settings.read_only, "the running settings are not touched"


def test_reload_without_a_file_reads_the_environment(server_env: pytest.MonkeyPatch) -> None:
    settings = ServerSettings.load(port=0)
    server_env.setenv("MCP_READ_ONLY", "true")
    reloaded = settings.reload()
    assert reloaded.read_only
    assert reloaded.port == 0
    assert reloaded.config_file is None


def test_restart_only_fields_keep_their_running_values(server_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path, settings = _loaded(tmp_path)
    _write(path, {**BASE, "port": 9100, "transport": "sse", "config": {"k8sOps": {"readOnly": False}}})
    reloaded = settings.reload()
    assert settings.restart_only_changes(reloaded) == ["port", "transport"]
    effective = reloaded.keeping_restart_only(settings)
    assert (effective.port, effective.transport, effective.mcp_path) == (9000, settings.transport, "/mcp")
    assert not effective.read_only, "what can change while serving does"
    assert effective.config_file is reloaded.config_file
    assert settings.restart_only_changes(effective) == []
    assert {"host", "port", "path", "transport", "pod_name", "max_output_bytes"} <= set(RESTART_ONLY_FIELDS)


def test_a_bad_value_in_the_file_names_the_variable_and_the_key(server_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path, settings = _loaded(tmp_path)
    _write(path, {**BASE, "config": {"k8sOps": {"readOnly": "sometimes"}}})
    with pytest.raises(ValidationError) as caught:
        settings.reload()
    (line,) = settings_error_lines(caught.value, settings.config_file)
    assert line.startswith(f"MCP_READ_ONLY (read_only, or config.k8sOps.readOnly in {path}): ")
    assert "valid boolean" in line
    # Without a file the line is as before.
    assert settings_error_lines(caught.value)[0].startswith("MCP_READ_ONLY (read_only): ")


def test_a_file_that_is_no_longer_json_is_refused(server_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path, settings = _loaded(tmp_path)
    _write(path, "{not json")
    with pytest.raises(ConfigFileError, match="is not JSON"):
        settings.reload()
    path.unlink()
    with pytest.raises(ConfigFileError, match="cannot read the config file"):
        settings.reload()


@pytest.mark.parametrize(
    ("field", "key"),
    [
        ("port", "port"),
        ("tool_prefix", "toolPrefix"),
        ("tools_allow", "tools.allow"),
        ("read_only", "config.k8sOps.readOnly"),
        ("require_confirmation", "config.k8sOps.requireConfirmation"),
        ("call_timeout_seconds", None),
    ],
)
def test_config_keys_of_fields(field: str, key: str | None) -> None:
    assert ConfigFile.model_validate(BASE).key_of(field) == key
