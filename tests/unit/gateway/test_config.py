"""The gateway config: ${VAR} expansion, validation messages that name the field, the schema, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcpfleet_cli.main import app
from mcpfleet_gateway.config import GatewayConfig, config_schema, config_store, expand_env
from mcpfleet_gateway.config_store import ConfigInvalid

MINIMAL = {
    "auth": {"hs256_secret": "${GW_SECRET}", "algorithms": ["HS256"], "audience": "https://gw"},
    "redis": {"url": "${GW_REDIS:-redis://127.0.0.1:6379/0}"},
    "upstreams": {
        "k8s": {"transport": "streamable-http", "url": "http://k8s-ops:8080/mcp", "auth": {"bearer": "${K8S_TOKEN}"}}
    },
}


def test_environment_references_expand_with_defaults() -> None:
    expanded = expand_env(MINIMAL, {"GW_SECRET": "s3cret", "K8S_TOKEN": "tok"})
    assert expanded["auth"]["hs256_secret"] == "s3cret"
    assert expanded["redis"]["url"] == "redis://127.0.0.1:6379/0"
    assert expanded["upstreams"]["k8s"]["auth"]["bearer"] == "tok"
    config = GatewayConfig.model_validate(expanded)
    assert config.upstreams["k8s"].auth.bearer is not None


def test_an_unset_variable_names_the_field() -> None:
    with pytest.raises(ConfigInvalid) as invalid:
        expand_env(MINIMAL, {"GW_SECRET": "s"})
    assert invalid.value.problems == [
        "upstreams.k8s.auth.bearer: environment variable K8S_TOKEN is not set (or write ${K8S_TOKEN:-default})"
    ]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"listen": {"port": 70000}}, "listen.port"),
        ({"hardening": {"ip_allowlist": ["10.0.0.0/33"]}}, "is not an IP network"),
        ({"upstreams": {"Bad_Name": {"transport": "stdio", "command": "x"}}}, "upstream name 'Bad_Name'"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"audit": {"log_path": None}}, "audit is on but has nowhere to write"),
        ({"rate_limits": {"user_limit": "lots"}}, "rate_limits.user_limit"),
        (
            {
                "audit": {"enabled": False},
                "upstreams": {
                    "a": {"transport": "stdio", "command": "x", "prefix": "k8s"},
                    "b": {"transport": "stdio", "command": "y", "prefix": "k8s"},
                },
            },
            "both use prefix 'k8s'",
        ),
    ],
)
def test_invalid_configs_say_what_to_change(tmp_path: Path, document: dict[str, object], message: str) -> None:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigInvalid) as invalid:
        config_store(path).load()
    assert any(message in problem for problem in invalid.value.problems), invalid.value.problems


def test_the_schema_describes_every_section() -> None:
    schema = config_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["properties"]) >= {
        "listen",
        "hardening",
        "auth",
        "rbac",
        "rate_limits",
        "audit",
        "redis",
        "catalog",
        "upstreams",
        "tools",
        "self_config",
    }


def test_cli_validate_and_schema(tmp_path: Path) -> None:
    runner = CliRunner()
    good = tmp_path / "good.yaml"
    good.write_text("listen:\n  port: 9000\naudit:\n  log_path: /var/log/mcpfleet/audit.jsonl\n")
    result = runner.invoke(app, ["config", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"listen": {"port": "x"}')
    result = runner.invoke(app, ["config", "validate", str(bad)])
    assert result.exit_code == 1
    assert "line 1" in result.output
    assert "not valid JSON" in result.output
    result = runner.invoke(app, ["config", "validate", str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "mcpfleet gateway config"
