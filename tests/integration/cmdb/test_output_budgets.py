"""Output budgets at scale: 5,000 assets in the rest and netbox HTTP fakes (http_fakes.py: a real CMDB or
NetBox cannot run here), paged as those APIs page. Every answer stays within MCP_MAX_OUTPUT_BYTES, a continue
token goes on where the page before ended (all 5,000 reachable, none twice), the note says how to narrow,
and no call reads more than CMDB_MAX_PAGES_PER_CALL pages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from mcp import Client

from tests.integration.cmdb.http_fakes import FakeApi, MakeFleet, fleets, json_response, serve
from tests.integration.cmdb.test_kubernetes_backend import text_of
from tests.integration.cmdb.test_netbox_backend import CORE_CHANGES, PAYMENTS, netbox, netbox_api, ref, status

pytestmark = pytest.mark.integration

ASSETS = 5000
OUTPUT_BYTES = 16 * 1024
REST_PAGE_CAP = 100  # the rest fake's largest page, whatever limit is asked


@pytest.fixture
async def make_fleet(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeFleet]:
    async with fleets(monkeypatch) as make:
        yield make


async def call(client: Client, tool: str, budget: int, **arguments: Any) -> dict[str, Any]:
    """A successful answer, checked against the output budget as the client receives it."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert len(text_of(result).encode()) <= budget
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


async def every_page(client: Client, budget: int, **arguments: Any) -> list[dict[str, Any]]:
    pages = [await call(client, "query_assets", budget, **arguments)]
    while pages[-1]["continue_token"]:
        assert len(pages) <= ASSETS, "the pages do not end"
        pages.append(
            await call(client, "query_assets", budget, **arguments, continue_token=pages[-1]["continue_token"])
        )
    return pages


def ids_of(pages: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for page in pages for item in page["items"]]


# --------------------------------------------------------------------------------------------------- rest


def rest_asset(number: int) -> dict[str, Any]:
    return {
        "id": f"a-{number:04d}",
        "name": f"server-{number:04d}",
        "type": ("server", "database", "application")[number % 3],
        "environment": "prod" if number % 2 else "staging",
        "status": "active",
        "owner": "payments",
        "ip_address": f"10.{number // 250}.{number % 250}.1",
    }


def rest_routes(api: FakeApi) -> list[web.RouteDef]:
    """The seed's API with 5,000 assets: page/limit paging capped at REST_PAGE_CAP per page, plus /api/v2
    that ignores paging (every page is the whole list), and a topology of one service using every asset."""
    assets = [rest_asset(n) for n in range(1, ASSETS + 1)]

    async def paged(request: web.Request) -> web.Response:
        page = int(request.query.get("page", 1))
        limit = min(int(request.query.get("limit", 50)), REST_PAGE_CAP)
        chunk = assets[(page - 1) * limit : page * limit]
        return json_response({"assets": chunk, "total": len(assets), "page": page})

    async def unpaged(request: web.Request) -> web.Response:
        return json_response({"assets": assets})

    async def topology(request: web.Request) -> web.Response:
        nodes = [{"id": "svc-web", "name": "web", "type": "application", "status": "active"}]
        nodes += [{"id": a["id"], "name": a["name"], "type": a["type"], "status": a["status"]} for a in assets]
        edges = [{"source": "svc-web", "target": a["id"], "type": "depends_on"} for a in assets]
        return json_response({"nodes": nodes, "edges": edges})

    return [
        web.get("/api/v1/assets", paged),
        web.get("/api/v2/assets", unpaged),
        web.get("/api/v1/topology/{service}", topology),
    ]


@pytest.fixture
async def rest_fake() -> AsyncIterator[FakeApi]:
    async with serve(rest_routes, "Bearer") as api:
        yield api


def rest(fake: FakeApi, **more: Any) -> dict[str, Any]:
    return {"backend": "rest", "url": fake.url, "token": fake.token, **more}


async def test_rest_pages_reach_all_assets_once_within_the_budget(make_fleet: MakeFleet, rest_fake: FakeApi) -> None:
    fleet = await make_fleet(rest(rest_fake), max_output_bytes=OUTPUT_BYTES, max_items=1000)
    async with Client(fleet.mcp) as client:
        pages = await every_page(client, OUTPUT_BYTES, limit=1000)
        resource = await client.read_resource("cmdb://assets")
    found = ids_of(pages)
    assert found == [f"a-{n:04d}" for n in range(1, ASSETS + 1)]  # every one, in order, none twice
    assert all(page["total"] == ASSETS for page in pages)
    assert "narrow with type, environment, status, owner or text" in pages[0]["note"]
    assert pages[-1]["note"] is None
    # One API page per call. The API caps its pages at 100: once its first page is used up, the server asks for
    # pages of 100 (page 2 of 100 follows page 1 of "1000" that held 100).
    asked = [request.query for request in rest_fake.requests if request.path == "/api/v1/assets"]
    assert len(asked) == len(pages) + 1  # and one for the resource
    assert {(q["page"], q["limit"]) for q in asked[:-1] if q["limit"] != str(REST_PAGE_CAP)} == {("1", "1000")}
    assert [q["page"] for q in asked[:-1] if q["limit"] == str(REST_PAGE_CAP)][:1] == ["2"]
    body = getattr(resource.contents[0], "text", "")
    listed = json.loads(body)
    assert len(body.encode()) <= OUTPUT_BYTES
    assert 0 < len(listed["items"]) <= 50
    assert listed["truncated"]
    assert "narrow with" in listed["note"]


async def test_rest_api_that_ignores_paging_is_walked_without_repeats(
    make_fleet: MakeFleet, rest_fake: FakeApi
) -> None:
    budget = 256 * 1024
    fleet = await make_fleet(rest(rest_fake, assets_path="/api/v2/assets"), max_output_bytes=budget, max_items=1000)
    async with Client(fleet.mcp) as client:
        pages = await every_page(client, budget, limit=1000)
    assert ids_of(pages) == [f"a-{n:04d}" for n in range(1, ASSETS + 1)]
    assert all(request.query["page"] == "1" for request in rest_fake.requests)


async def test_rest_topology_of_a_service_on_every_asset_fits(make_fleet: MakeFleet, rest_fake: FakeApi) -> None:
    fleet = await make_fleet(rest(rest_fake), max_output_bytes=OUTPUT_BYTES)
    async with Client(fleet.mcp) as client:
        topology = await call(client, "get_service_topology", OUTPUT_BYTES, service="web", depth=1)
    assert topology["truncated"]
    assert "CMDB_MAX_TOPOLOGY_NODES" in topology["note"]
    assert "bytes; ask with a smaller depth" in topology["note"]
    kept = {node["id"] for node in topology["nodes"]}
    assert "svc-web" in kept
    assert 1 < len(kept) < 300
    assert all(edge["source"] in kept and edge["target"] in kept for edge in topology["edges"])
    assert len(topology["edges"]) == len(kept) - 1


# ------------------------------------------------------------------------------------------------- netbox

INTERFACES_OF_DEVICE_1 = 350
SERVICES_OF_DEVICE_1 = 400


def netbox_scale() -> dict[str, list[dict[str, Any]]]:
    """2,000 devices, 1,500 VMs, 1,000 services and 500 IP addresses: 5,000 assets. Device 1 has 350
    interfaces and 400 services (more than a topology holds)."""
    devices: list[dict[str, Any]] = [
        {
            "id": n,
            "name": f"dev-{n:04d}",
            "status": status("active" if n % 5 else "offline"),
            "tenant": PAYMENTS if n % 2 else None,
            "custom_fields": {"environment": "production" if n % 3 else "staging"},
            "tags": [],
        }
        for n in range(1, 2001)
    ]
    vms: list[dict[str, Any]] = [
        {"id": n, "name": f"vm-{n:04d}", "status": status("active"), "tenant": None, "custom_fields": {}, "tags": []}
        for n in range(1, 1501)
    ]
    services = [
        {
            "id": n,
            "name": f"svc-{n:04d}",
            "device": ref(1 if n <= SERVICES_OF_DEVICE_1 else n, "dev"),
            "virtual_machine": None,
            "protocol": status("tcp"),
            "ports": [8000 + n],
            "ipaddresses": [],
            "tags": [],
        }
        for n in range(1, 1001)
    ]
    addresses: list[dict[str, Any]] = [
        {
            "id": n,
            "address": f"10.1.{n // 250}.{n % 250}/24",
            "status": status("active"),
            "tenant": None,
            "assigned_object_type": "dcim.interface",
            "assigned_object_id": n,
            "custom_fields": {},
            "tags": [],
        }
        for n in range(1, 501)
    ]
    interfaces = [
        {"id": n, "name": f"eth{n}", "device": ref(1, "dev-0001")} for n in range(1, INTERFACES_OF_DEVICE_1 + 1)
    ]
    return {
        "/api/dcim/devices/": devices,
        "/api/virtualization/virtual-machines/": vms,
        "/api/ipam/services/": services,
        "/api/ipam/ip-addresses/": addresses,
        "/api/dcim/interfaces/": interfaces,
        "/api/virtualization/interfaces/": [],
        CORE_CHANGES: [],
        "/api/extras/journal-entries/": [],
    }


ALL_NETBOX_IDS = (
    [f"device/{n}" for n in range(1, 2001)]
    + [f"virtual-machine/{n}" for n in range(1, 1501)]
    + [f"service/{n}" for n in range(1, 1001)]
    + [f"ip-address/{n}" for n in range(1, 501)]
)


async def test_netbox_pages_reach_all_assets_once_within_the_budget(make_fleet: MakeFleet) -> None:
    async with serve(netbox_api(netbox_scale()), "Token") as fake:
        fleet = await make_fleet(netbox(fake), max_output_bytes=OUTPUT_BYTES, max_items=1000)
        async with Client(fleet.mcp) as client:
            pages = await every_page(client, OUTPUT_BYTES, limit=200)
            offline = await every_page(client, OUTPUT_BYTES, type="device", status="offline", limit=200)
            resource = await client.read_resource("cmdb://assets")
    assert ids_of(pages) == ALL_NETBOX_IDS
    assert "bytes" in pages[0]["note"]
    assert "narrow with type, environment, status, owner or text" in pages[0]["note"]
    assert ids_of(offline) == [f"device/{n}" for n in range(5, 2001, 5)]
    assert offline[0]["total"] == 400
    body = getattr(resource.contents[0], "text", "")
    assert len(body.encode()) <= OUTPUT_BYTES
    assert json.loads(body)["truncated"]


async def test_netbox_reads_at_most_the_page_cap_per_call(make_fleet: MakeFleet) -> None:
    budget = 1024 * 1024
    async with serve(netbox_api(netbox_scale(), max_page_size=100), "Token") as fake:
        fleet = await make_fleet(netbox(fake, max_pages_per_call=2), max_output_bytes=budget, max_items=1000)
        async with Client(fleet.mcp) as client:
            pages = await every_page(client, budget, limit=1000)
    assert ids_of(pages) == ALL_NETBOX_IDS
    assert {len(page["items"]) for page in pages[:-1]} == {200}  # two pages of NetBox's 100
    assert "read 2 NetBox pages, the most for one call (CMDB_MAX_PAGES_PER_CALL)" in pages[0]["note"]
    listings = [r for r in fake.requests if r.path.startswith("/api/") and "offset" in r.query]
    assert len(listings) <= 2 * len(pages)


async def test_netbox_topology_of_a_crowded_device_is_bounded(make_fleet: MakeFleet) -> None:
    async with serve(netbox_api(netbox_scale()), "Token") as fake:
        fleet = await make_fleet(netbox(fake), max_output_bytes=OUTPUT_BYTES)
        wide = await make_fleet(
            netbox(fake, max_pages_per_call=3, max_topology_nodes=1000), max_output_bytes=OUTPUT_BYTES
        )
        async with Client(fleet.mcp) as client:
            crowded = await call(client, "get_service_topology", OUTPUT_BYTES, service="svc-0001", depth=3)
        before = len(fake.requests)
        async with Client(wide.mcp) as client:
            capped = await call(client, "get_service_topology", OUTPUT_BYTES, service="svc-0001", depth=3)
        asked = len(fake.requests) - before
    assert crowded["truncated"]
    assert "interfaces of device/1: only the first 300 were read (CMDB_MAX_TOPOLOGY_NODES)" in crowded["note"]
    assert "services of device/1: only the first 300 were read" in crowded["note"]
    assert "bytes; ask with a smaller depth" in crowded["note"]
    assert {n["id"] for n in crowded["nodes"]} >= {"service/1", "device/1"}
    assert capped["truncated"]
    assert "stopped after 3 NetBox requests (CMDB_MAX_PAGES_PER_CALL)" in capped["note"]
    assert asked == 3
