"""The `mcpfleet` console script: help texts, `crd print`, and how `operator` refuses bad settings."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mcpfleet_cli.main import app
from mcpfleet_contracts.crd import build_crd, render_crd_yaml
from mcpfleet_operator import main as operator_main
from mcpfleet_operator.settings import OperatorSettings

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "explains"),
    [
        ([], "MCP platform for Kubernetes"),
        (["--help"], "MCP platform for Kubernetes"),
        (["operator", "--help"], "Run the MCPServer operator"),
        (["crd", "--help"], "CustomResourceDefinition"),
        (["crd", "print", "--help"], "Print the MCPServer CRD"),
    ],
)
def test_help(args: list[str], explains: str) -> None:
    result = runner.invoke(app, args)
    # Typer (through click) exits 2 after showing help for a bare group: no_args_is_help.
    assert result.exit_code == (2 if not args else 0), result.output
    assert "Usage:" in result.output
    assert explains in " ".join(result.output.split())


def test_top_level_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert "operator" in result.output
    assert "crd" in result.output


def test_operator_help_lists_its_options() -> None:
    result = runner.invoke(app, ["operator", "--help"])
    for option in ("--namespace", "--metrics-port", "--verbose", "MCPFLEET_OPERATOR_"):
        assert option in result.output


def test_crd_print_is_the_generated_crd() -> None:
    result = runner.invoke(app, ["crd", "print"])
    assert result.exit_code == 0, result.output
    assert result.stdout == render_crd_yaml()
    assert yaml.safe_load(result.stdout) == build_crd()


def test_operator_refuses_a_bad_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MCPFLEET_OPERATOR_WORKER_LIMIT", "0")
    calls: list[Any] = []
    clean_env.setattr(operator_main, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    result = runner.invoke(app, ["operator"])
    assert result.exit_code == 2, result.output
    assert "MCPFLEET_OPERATOR_WORKER_LIMIT" in result.stderr
    assert "greater than or equal to 1" in result.stderr
    assert result.stdout == ""
    assert calls == [], "the operator must not start with bad settings"


def test_operator_refuses_a_bad_option(clean_env: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    clean_env.setattr(operator_main, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    result = runner.invoke(app, ["operator", "--metrics-port", "70000"])
    assert result.exit_code == 2, result.output
    assert "MCPFLEET_OPERATOR_METRICS_PORT" in result.stderr
    assert calls == []


def test_operator_options_override_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MCPFLEET_OPERATOR_NAMESPACES", "from-env")
    clean_env.setenv("MCPFLEET_OPERATOR_METRICS_PORT", "9999")
    calls: list[tuple[OperatorSettings, bool]] = []

    def fake_run(settings: OperatorSettings, *, verbose: bool = False) -> None:
        calls.append((settings, verbose))

    clean_env.setattr(operator_main, "run", fake_run)
    result = runner.invoke(app, ["operator", "-n", "team-a", "--namespace", "team-b", "--metrics-port", "0", "-v"])
    assert result.exit_code == 0, result.output
    ((settings, verbose),) = calls
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.metrics_port == 0
    assert verbose is True


def test_operator_without_options_uses_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MCPFLEET_OPERATOR_NAMESPACES", "a, b")
    calls: list[OperatorSettings] = []
    clean_env.setattr(operator_main, "run", lambda settings, verbose=False: calls.append(settings))
    result = runner.invoke(app, ["operator"])
    assert result.exit_code == 0, result.output
    (settings,) = calls
    assert settings.namespaces == ("a", "b")
    assert settings.clusterwide is False


def test_unknown_command_fails() -> None:
    result = runner.invoke(app, ["gateway-that-does-not-exist"])
    assert result.exit_code == 2
