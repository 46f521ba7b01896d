"""MonitoringSettings: MON_* variables, the operator's config block, and credentials that exclude each other."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mcpfleet_servers.monitoring.settings import SECRETS_DIR, MonitoringSettings

CONFIG = {
    "config": {
        "monitoring": {
            "prometheusUrl": "http://prometheus.monitoring:9090/",
            "alertmanagerUrl": "http://alertmanager.monitoring:9093",
            "grafanaUrl": "http://grafana.monitoring",
            "grafanaTokenSecret": {"name": "grafana-token", "key": "token"},
            "readOnly": True,
        }
    }
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os  # noqa: PLC0415

    for name in list(os.environ):
        if name.upper().startswith("MON_"):
            monkeypatch.delenv(name)


def test_the_config_block_gives_urls_and_the_mounted_grafana_token() -> None:
    settings = MonitoringSettings.from_config(CONFIG)
    assert settings.prometheus_url == "http://prometheus.monitoring:9090"
    assert settings.alertmanager_url == "http://alertmanager.monitoring:9093"
    assert settings.grafana_token_file == SECRETS_DIR / "grafana-token" / "token"
    assert [(b.name, b.url) for b in settings.backends()] == [
        ("Prometheus", "http://prometheus.monitoring:9090"),
        ("Alertmanager", "http://alertmanager.monitoring:9093"),
        ("Grafana", "http://grafana.monitoring"),
    ]


def test_a_variable_that_is_set_wins_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MON_PROMETHEUS_URL", "https://thanos.example:443")
    monkeypatch.setenv("MON_GRAFANA_TOKEN", "glsa_secret")
    settings = MonitoringSettings.from_config(CONFIG)
    assert settings.prometheus_url == "https://thanos.example:443"
    assert settings.grafana_token_file is None  # the token from the environment replaces the mounted Secret
    assert settings.grafana_token is not None
    assert "glsa_secret" not in repr(settings)
    assert "glsa_secret" not in str(settings.backends())


def test_each_backends_mounted_token_becomes_its_token_file(monkeypatch: pytest.MonkeyPatch) -> None:
    block = dict(CONFIG["config"]["monitoring"])
    block["prometheusTokenSecret"] = {"name": "observability", "key": "prometheus"}
    block["alertmanagerTokenSecret"] = {"name": "observability", "key": "alertmanager"}
    block["grafanaOrgId"] = 4
    settings = MonitoringSettings.from_config({"config": {"monitoring": block}})
    auths = {backend.name: backend.auth for backend in settings.backends()}
    assert auths["Prometheus"].token_file == SECRETS_DIR / "observability" / "prometheus"
    assert auths["Alertmanager"].token_file == SECRETS_DIR / "observability" / "alertmanager"
    assert auths["Grafana"].token_file == SECRETS_DIR / "grafana-token" / "token"
    assert auths["Grafana"].org_id == 4

    # Basic auth from the environment replaces only that backend's mounted token.
    monkeypatch.setenv("MON_PROMETHEUS_USERNAME", "reader")
    monkeypatch.setenv("MON_PROMETHEUS_PASSWORD", "pw")
    settings = MonitoringSettings.from_config({"config": {"monitoring": block}})
    auths = {backend.name: backend.auth for backend in settings.backends()}
    assert (auths["Prometheus"].token_file, auths["Prometheus"].username) == (None, "reader")
    assert auths["Alertmanager"].token_file == SECRETS_DIR / "observability" / "alertmanager"


def test_without_a_prometheus_url_the_variable_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        MonitoringSettings.from_config(None)
    assert caught.value.errors()[0]["loc"] == ("prometheus_url",)


def test_a_url_must_be_http() -> None:
    with pytest.raises(ValidationError) as caught:
        MonitoringSettings(prometheus_url="prometheus:9090")
    assert caught.value.errors()[0]["loc"] == ("prometheus_url",)


def test_one_credential_per_backend(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="set only one of MON_PROMETHEUS_TOKEN, MON_PROMETHEUS_TOKEN_FILE"):
        MonitoringSettings(prometheus_url="http://p:9090", prometheus_token="t", prometheus_token_file=tmp_path / "t")
    with pytest.raises(ValidationError, match="basic auth needs both MON_ALERTMANAGER_USERNAME"):
        MonitoringSettings(prometheus_url="http://p:9090", alertmanager_username="me")


def test_auth_reaches_each_backend() -> None:
    settings = MonitoringSettings(
        prometheus_url="http://p:9090",
        prometheus_username="reader",
        prometheus_password="pw",
        grafana_url="http://g",
        grafana_token="tok",
        grafana_org_id=3,
    )
    prometheus, grafana = settings.backends()
    assert prometheus.auth.username == "reader"
    assert prometheus.auth.org_id is None
    assert grafana.auth.org_id == 3
    assert grafana.auth.token is not None
    assert grafana.auth.token.get_secret_value() == "tok"


def test_the_factory_reads_the_config_file_block() -> None:
    from mcpfleet_servers.base.settings import ConfigFile, ServerSettings  # noqa: PLC0415
    from mcpfleet_servers.monitoring.server import MonitoringServer, create  # noqa: PLC0415

    config = ConfigFile.model_validate({"type": "monitoring", **CONFIG})
    module = create(ServerSettings.load(max_items=120), config)
    assert isinstance(module, MonitoringServer)
    assert module.type_name == "monitoring"
    assert module.prometheus.label == "Prometheus at http://prometheus.monitoring:9090"
    assert module.budget.max_items == 120
    assert [tool.name for tool in module.toolset()][:2] == ["query_metrics", "query_range"]
