"""OperatorSettings: read from MCPFLEET_OPERATOR_* once, refused with the variable's name when wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mcpfleet_operator.builders.model import BuildDefaults
from mcpfleet_operator.settings import OperatorSettings


def test_defaults_watch_the_whole_cluster(clean_env: pytest.MonkeyPatch) -> None:
    settings = OperatorSettings()
    assert settings.namespaces == ()
    assert settings.clusterwide is True
    assert settings.worker_limit == 20
    assert settings.peering is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a, b", ("a", "b")),
        ("team-a", ("team-a",)),
        (" a ,, b ,", ("a", "b")),
        ("", ()),
        (" , ", ()),
    ],
)
def test_namespaces_from_env(clean_env: pytest.MonkeyPatch, raw: str, expected: tuple[str, ...]) -> None:
    clean_env.setenv("MCPFLEET_OPERATOR_NAMESPACES", raw)
    settings = OperatorSettings()
    assert settings.namespaces == expected
    assert settings.clusterwide is (not expected)


def test_namespaces_from_keyword(clean_env: pytest.MonkeyPatch) -> None:
    settings = OperatorSettings(namespaces=("x", "y"))
    assert settings.namespaces == ("x", "y")
    assert not settings.clusterwide


def test_env_values_are_typed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MCPFLEET_OPERATOR_WORKER_LIMIT", "5")
    clean_env.setenv("MCPFLEET_OPERATOR_METRICS_PORT", "0")
    clean_env.setenv("MCPFLEET_OPERATOR_PEERING", "mcpfleet")
    clean_env.setenv("MCPFLEET_OPERATOR_LOG_LEVEL", "DEBUG")
    settings = OperatorSettings()
    assert (settings.worker_limit, settings.metrics_port, settings.peering, settings.log_level) == (
        5,
        0,
        "mcpfleet",
        "DEBUG",
    )


def test_unrelated_variables_are_ignored(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MCPFLEET_OPERATOR_NO_SUCH_SETTING", "1")
    OperatorSettings()


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("MCPFLEET_OPERATOR_WORKER_LIMIT", "0", "worker_limit"),
        ("MCPFLEET_OPERATOR_WORKER_LIMIT", "many", "worker_limit"),
        ("MCPFLEET_OPERATOR_METRICS_PORT", "70000", "metrics_port"),
        ("MCPFLEET_OPERATOR_LIVENESS_PORT", "-1", "liveness_port"),
        ("MCPFLEET_OPERATOR_LOG_LEVEL", "TRACE", "log_level"),
        ("MCPFLEET_OPERATOR_SERVER_IMAGE", "", "server_image"),
        ("MCPFLEET_OPERATOR_FIELD_MANAGER", "", "field_manager"),
    ],
)
def test_bad_value_names_the_field(clean_env: pytest.MonkeyPatch, variable: str, value: str, field: str) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        OperatorSettings()
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_settings_are_frozen(clean_env: pytest.MonkeyPatch) -> None:
    settings = OperatorSettings()
    with pytest.raises(ValidationError):
        settings.worker_limit = 3  # type: ignore[misc]


def test_build_defaults_default(clean_env: pytest.MonkeyPatch) -> None:
    assert OperatorSettings().build_defaults() == BuildDefaults()


def test_build_defaults_from_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MCPFLEET_OPERATOR_SERVER_IMAGE", "registry.example.com/mcpfleet:9.9.9")
    clean_env.setenv("MCPFLEET_OPERATOR_DEFAULT_CPU_REQUEST", "10m")
    clean_env.setenv("MCPFLEET_OPERATOR_DEFAULT_MEMORY_REQUEST", "32Mi")
    clean_env.setenv("MCPFLEET_OPERATOR_DEFAULT_CPU_LIMIT", "1")
    clean_env.setenv("MCPFLEET_OPERATOR_DEFAULT_MEMORY_LIMIT", "1Gi")
    defaults = OperatorSettings().build_defaults()
    assert defaults == BuildDefaults(
        server_image="registry.example.com/mcpfleet:9.9.9",
        requests={"cpu": "10m", "memory": "32Mi"},
        limits={"cpu": "1", "memory": "1Gi"},
    )
    assert defaults.run_as_user == BuildDefaults().run_as_user


def test_a_default_quantity_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPFLEET_OPERATOR_DEFAULT_MEMORY_LIMIT", "256MB")
    with pytest.raises(ValidationError, match="default_memory_limit"):
        OperatorSettings()
