"""Asset ids, environment/owner/status derivation and settings of the cmdb server."""

from __future__ import annotations

from typing import Any

import pytest

from mcpfleet_servers.base.settings import ConfigFile
from mcpfleet_servers.base.toolkit import InvalidArgument
from mcpfleet_servers.cmdb.kinds import DEPLOYMENT, NODE, PVC, REPLICASET, derived_status, parse_asset_id, to_asset
from mcpfleet_servers.cmdb.settings import CmdbSettings


def test_asset_ids_parse_or_name_the_field() -> None:
    assert parse_asset_id("deployment/shop/web") == (DEPLOYMENT, "shop", "web")
    assert parse_asset_id("node/node-1") == (NODE, None, "node-1")
    for bad in ("deployment/web", "node/a/b", "pod/shop/x", "deployment//web"):
        with pytest.raises(InvalidArgument) as error:
            parse_asset_id(bad)
        assert error.value.field == "asset_id"


def test_environment_and_owner_come_from_the_object_then_its_namespace() -> None:
    ns = {"metadata": {"name": "shop", "labels": {"environment": "production", "team": "payments"}}}
    obj: dict[str, Any] = {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "annotations": {"mcpfleet.io/owner": "alice"},
            "labels": {"app.kubernetes.io/environment": "canary"},
        },
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 1},
    }
    asset = to_asset(DEPLOYMENT, obj, ns)
    assert (asset.environment, asset.owner, asset.status) == ("canary", "alice", "degraded")
    bare = to_asset(DEPLOYMENT, {"metadata": {"name": "x", "namespace": "shop"}, "spec": {"replicas": 0}}, ns)
    assert (bare.environment, bare.owner, bare.status) == ("production", "payments", "inactive")
    orphan = to_asset(PVC, {"metadata": {"name": "d", "namespace": "n"}, "status": {"phase": "Bound"}})
    assert (orphan.environment, orphan.owner, orphan.status) == ("unknown", "unknown", "active")


def test_stored_status_overrides_readiness() -> None:
    obj = {
        "metadata": {"name": "node-1", "annotations": {"mcpfleet.io/asset-status": "retired"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert to_asset(NODE, obj).status == "retired"
    assert to_asset(NODE, {"metadata": {"name": "n"}, "spec": {"unschedulable": True}}).status == "maintenance"


def test_backend_from_the_config_file_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMDB_BACKEND", raising=False)
    config = ConfigFile(type="cmdb", config={"cmdb": {"backend": "kubernetes"}})
    assert CmdbSettings.from_config(config).backend == "kubernetes"
    with pytest.raises(ValueError, match="backend"):
        CmdbSettings.from_config(ConfigFile(type="cmdb", config={"cmdb": {"backend": "netbox"}}))
    monkeypatch.setenv("CMDB_BACKEND", "kubernetes")
    assert CmdbSettings.from_config(ConfigFile(type="cmdb", config={"cmdb": {"backend": "netbox"}})).backend == (
        "kubernetes"
    )


def test_a_replicaset_reports_its_replicas_like_its_deployment() -> None:
    def replica_set(ready: int, desired: int) -> dict[str, Any]:
        return {"spec": {"replicas": desired}, "status": {"readyReplicas": ready}}

    assert derived_status(REPLICASET, replica_set(0, 2)) == derived_status(DEPLOYMENT, replica_set(0, 2))
    assert derived_status(REPLICASET, replica_set(2, 2)) == "active"
    assert derived_status(REPLICASET, replica_set(1, 2)) == derived_status(DEPLOYMENT, replica_set(1, 2))
