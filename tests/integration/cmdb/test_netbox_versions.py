"""The netbox backend on NetBox 3.7 and 4.x shapes, against the HTTP fake of NetBox (http_fakes.py; NetBox
itself cannot run here). 3.7: a device's role is ``device_role``, the changelog is /api/extras/object-changes/.
4.1 on: the changelog is /api/core/object-changes/; 4.3: a service's host is ``parent_object_type``/``parent``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client

from tests.integration.cmdb.http_fakes import FakeApi, MakeFleet, fleets, serve
from tests.integration.cmdb.test_kubernetes_backend import failure, ids, ok
from tests.integration.cmdb.test_netbox_backend import (
    CORE_CHANGES,
    EXTRAS_CHANGES,
    PAYMENTS,
    netbox,
    netbox_api,
    ref,
    status,
)

pytestmark = pytest.mark.integration

WEB_ROLE = {"id": 4, "name": "Web servers", "slug": "web-servers"}


def change(number: int, time: str, object_id: int) -> dict[str, Any]:
    return {
        "id": number,
        "time": time,
        "user_name": "admin",
        "action": status("update"),
        "changed_object_type": "dcim.device",
        "changed_object_id": object_id,
        "object_repr": "web-01",
        "prechange_data": {"status": "planned"},
        "postchange_data": {"status": "active"},
    }


def objects(changelog: str, service: dict[str, Any], device: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    base_device = {"id": 1, "name": "web-01", "status": status("active"), "tenant": PAYMENTS, "tags": []}
    return {
        "/api/dcim/devices/": [base_device | device],
        "/api/virtualization/virtual-machines/": [],
        "/api/ipam/services/": [
            {"id": 20, "name": "web", "protocol": status("tcp"), "ports": [443], "ipaddresses": [], "tags": []}
            | service
        ],
        "/api/ipam/ip-addresses/": [],
        "/api/dcim/interfaces/": [{"id": 40, "name": "eth0", "device": ref(1, "web-01")}],
        "/api/virtualization/interfaces/": [],
        changelog: [change(100, "2026-01-01T10:00:00Z", 1), change(101, "2026-01-02T10:00:00Z", 1)],
        "/api/extras/journal-entries/": [],
    }


NETBOX_3_7 = objects(
    EXTRAS_CHANGES,
    service={"device": ref(1, "web-01"), "virtual_machine": None},
    device={"device_role": WEB_ROLE},
)
NETBOX_4_3 = objects(
    CORE_CHANGES,
    service={"parent_object_type": "dcim.device", "parent_object_id": 1, "parent": ref(1, "web-01")},
    device={"role": WEB_ROLE},
)


@pytest.fixture
async def make_fleet(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeFleet]:
    async with fleets(monkeypatch) as make:
        yield make


def paths(fake: FakeApi) -> list[str]:
    return [r.path for r in fake.requests if r.path in ("/api/status/", CORE_CHANGES, EXTRAS_CHANGES)]


@pytest.mark.parametrize(
    ("shape", "version", "changelog"),
    [(NETBOX_3_7, "3.7.8", EXTRAS_CHANGES), (NETBOX_4_3, "4.3.2-Docker-3.3.0", CORE_CHANGES)],
    ids=["netbox-3.7", "netbox-4.3"],
)
async def test_the_version_decides_the_changelog_and_shapes_are_read_either_way(
    make_fleet: MakeFleet, shape: dict[str, list[dict[str, Any]]], version: str, changelog: str
) -> None:
    async with serve(netbox_api({k: list(v) for k, v in shape.items()}, version=version), "Token") as fake:
        fleet = await make_fleet(netbox(fake))
        ready = await fleet.module.backend_status()
        async with Client(fleet.mcp) as client:
            device = await ok(client, "get_asset", asset_id="device/1")
            first = await ok(client, "get_change_records", asset_id="device/1")
            second = await ok(client, "get_change_records", limit=1)
            topology = await ok(client, "get_service_topology", service="web", depth=2)
    assert ready.reachable
    assert ready.detail == f"NetBox {version}"
    assert device["attributes"]["role"] == "web-servers"
    assert ids(first) == ["change/101", "change/100"]
    assert ids(second) == ["change/101"]
    # The readiness probe told the version: the changelog is asked where that version keeps it, and only there.
    assert paths(fake) == ["/api/status/", changelog, changelog]
    edges = {(e["source"], e["target"], e["relation"]) for e in topology["edges"]}
    assert ("service/20", "device/1", "runs-on") in edges
    assert ("device/1", "interface/40", "has-interface") in edges


async def test_without_a_version_the_changelog_is_found_by_trying_once(make_fleet: MakeFleet) -> None:
    async with serve(netbox_api({k: list(v) for k, v in NETBOX_3_7.items()}, version=None), "Token") as fake:
        fleet = await make_fleet(netbox(fake))
        async with Client(fleet.mcp) as client:
            first = await ok(client, "get_change_records")
            second = await ok(client, "get_change_records", asset_id="device/1")
    assert ids(first) == ids(second) == ["change/101", "change/100"]
    # No status endpoint (404): NetBox 4.1's path first, then the older one, which is kept.
    assert paths(fake) == ["/api/status/", CORE_CHANGES, EXTRAS_CHANGES, EXTRAS_CHANGES]


async def test_no_changelog_anywhere_is_a_clear_failure(make_fleet: MakeFleet) -> None:
    shape = {k: list(v) for k, v in NETBOX_4_3.items() if k != CORE_CHANGES}
    async with serve(netbox_api(shape, version="4.2.0"), "Token") as fake:
        fleet = await make_fleet(netbox(fake))
        async with Client(fleet.mcp) as client:
            message = await failure(client, "get_change_records")
    assert f"NetBox at {fake.url} has no changelog at {CORE_CHANGES} nor at {EXTRAS_CHANGES}" in message
