"""Settings, backend choice and the pure parts of the rest and netbox backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.settings import ConfigFile
from mcpfleet_servers.base.toolkit import InvalidArgument
from mcpfleet_servers.cmdb.http import api_message, fit_budget, text_of
from mcpfleet_servers.cmdb.kube_backend import KubernetesCmdb
from mcpfleet_servers.cmdb.netbox_backend import NetboxCmdb, parse_id
from mcpfleet_servers.cmdb.rest_backend import RestCmdb, bfs, to_asset, to_change
from mcpfleet_servers.cmdb.server import make_backend
from mcpfleet_servers.cmdb.settings import SECRETS_DIR, CmdbSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CMDB_"):
            monkeypatch.delenv(name)


def config(**cmdb: object) -> ConfigFile:
    return ConfigFile(config={"cmdb": cmdb})


def test_config_block_gives_backend_url_and_mounted_token_file() -> None:
    settings = CmdbSettings.from_config(
        config(backend="netbox", url="https://netbox.example/", tokenSecret={"name": "nb", "key": "token"})
    )
    assert (settings.backend, settings.url) == ("netbox", "https://netbox.example")
    assert settings.token_file == SECRETS_DIR / "nb" / "token"
    assert settings.scheme == "token"
    assert isinstance(make_backend(settings, Budget()), NetboxCmdb)


def test_environment_wins_over_the_config_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMDB_URL", "http://cmdb.local:8080")
    monkeypatch.setenv("CMDB_TOKEN", "from-env")
    settings = CmdbSettings.from_config(
        config(backend="rest", url="https://ignored.example", tokenSecret={"name": "c", "key": "k"})
    )
    assert settings.url == "http://cmdb.local:8080"
    assert settings.token_file is None
    assert settings.token is not None
    assert settings.token.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)
    assert settings.scheme == "bearer"
    assert isinstance(make_backend(settings, Budget()), RestCmdb)


def test_kubernetes_stays_the_default() -> None:
    settings = CmdbSettings.from_config(None)
    assert settings.backend == "kubernetes"
    assert isinstance(make_backend(settings, Budget()), KubernetesCmdb)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"backend": "rest"}, "CMDB_URL"),
        ({"backend": "rest", "url": "http://x", "token": "a", "token_file": Path("/t")}, "CMDB_TOKEN_FILE"),
        ({"backend": "rest", "url": "http://x", "asset_path": "/assets"}, "CMDB_ASSET_PATH"),
        ({"backend": "rest", "url": "http://x", "topology_path": "/topology"}, "CMDB_TOPOLOGY_PATH"),
        ({"backend": "soap", "url": "http://x"}, "backend"),
    ],
)
def test_bad_settings_name_what_to_change(values: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as failure:
        CmdbSettings(**values)  # type: ignore[arg-type]
    assert named in str(failure.value)


def test_rest_asset_and_change_mapping() -> None:
    asset = to_asset({"id": 7, "name": "db-1", "type": "database", "ip_address": "10.0.0.7", "owner": {"name": "dba"}})
    assert (asset.id, asset.type, asset.owner, asset.environment, asset.status) == (
        "7",
        "database",
        "dba",
        "unknown",
        "unknown",
    )
    assert asset.attributes == {"ip_address": "10.0.0.7"}
    change = to_change({"id": 1, "timestamp": "2026-01-01T00:00:00", "old_status": "active", "new_status": "x"}, "7")
    assert (change.asset, change.from_value, change.to_value, change.time.tzinfo is not None) == (
        "7",
        "active",
        "x",
        True,
    )


def test_bfs_limits_depth_and_nodes() -> None:
    nodes = {f"n{i}": {"name": f"n{i}", "type": "server"} for i in range(20)}
    chain = [(f"n{i}", f"n{i + 1}", "depends_on") for i in range(19)]
    two = bfs("n0", 2, nodes, chain, max_nodes=100)
    assert [(n.id, n.depth) for n in two.nodes] == [("n0", 0), ("n1", 1), ("n2", 2)]
    assert [e.relation for e in two.edges] == ["depends-on", "depends-on"]
    star = bfs("n0", 1, nodes, [("n0", f"n{i}", "x") for i in range(1, 20)], max_nodes=10)
    assert (len(star.nodes), star.truncated) == (10, True)
    assert star.note is not None
    assert "CMDB_MAX_TOPOLOGY_NODES" in star.note


def test_netbox_ids() -> None:
    assert parse_id("virtual-machine/12")[1] == 12
    for bad in ("device", "device/x", "rack/1"):
        with pytest.raises(InvalidArgument) as failure:
            parse_id(bad)
        assert failure.value.field == "asset_id"


def test_helpers() -> None:
    assert api_message(b'{"detail": "Invalid token."}') == "Invalid token."
    assert api_message(b"plain failure") == "plain failure"
    assert api_message(b"x" * 2000).endswith("…")
    assert fit_budget([100, 100, 100], 250) == 2
    assert fit_budget([500], 100) == 1
    assert text_of({"value": "active", "label": "Active"}) == "active"
    assert text_of({"id": 1, "slug": "payments", "name": "Payments"}) == "payments"
    assert text_of([1, 2]) is None
