"""The cmdb tools through a real MCP client session, netbox backend, against an HTTP fake of NetBox's REST API.

The fake (http_fakes.py) stands in for NetBox, which cannot run here; it pages with limit/offset/next as
NetBox does, keeps a changelog of PATCHes, and records what the server sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from mcp import Client, MCPError
from mcp.types import INVALID_PARAMS

from mcpfleet_cli.devcluster.cluster import free_port
from tests.integration.cmdb.http_fakes import FakeApi, MakeFleet, fleets, json_response, serve
from tests.integration.cmdb.test_kubernetes_backend import failure, ids, ok
from tests.integration.k8s_ops.session import Answers

pytestmark = pytest.mark.integration

PAYMENTS = {"id": 1, "name": "Payments", "slug": "payments"}


def status(value: str) -> dict[str, str]:
    return {"value": value, "label": value.title()}


def ref(number: int, name: str) -> dict[str, Any]:
    return {"id": number, "name": name, "display": name}


def netbox_objects() -> dict[str, list[dict[str, Any]]]:
    return {
        "/api/dcim/devices/": [
            {
                "id": 1,
                "name": "web-01",
                "status": status("active"),
                "tenant": PAYMENTS,
                "site": {"id": 1, "slug": "fra1", "name": "Frankfurt 1"},
                "custom_fields": {"environment": "production"},
                "tags": [],
            },
            {"id": 2, "name": "db-01", "status": status("active"), "tenant": None, "custom_fields": {}, "tags": []},
            {
                "id": 3,
                "name": "spare-01",
                "status": status("offline"),
                "tenant": PAYMENTS,
                "custom_fields": {"environment": "staging"},
                "tags": [],
            },
        ],
        "/api/virtualization/virtual-machines/": [
            {
                "id": 10,
                "name": "app-vm",
                "status": status("active"),
                "tenant": PAYMENTS,
                "cluster": ref(5, "prod-cluster"),
                "custom_fields": {"environment": None},
                "tags": [{"id": 1, "name": "env production", "slug": "env-production"}],
            }
        ],
        "/api/ipam/services/": [
            {
                "id": 20,
                "name": "web",
                "device": ref(1, "web-01"),
                "virtual_machine": None,
                "protocol": status("tcp"),
                "ports": [443],
                "ipaddresses": [{"id": 30, "address": "10.0.0.1/24"}],
                "custom_fields": {"environment": "production"},
                "tags": [],
            },
            {
                "id": 21,
                "name": "api",
                "device": None,
                "virtual_machine": ref(10, "app-vm"),
                "protocol": status("tcp"),
                "ports": [8080],
                "ipaddresses": [],
                "tags": [],
            },
        ],
        "/api/ipam/ip-addresses/": [
            {
                "id": 30,
                "address": "10.0.0.1/24",
                "status": status("active"),
                "tenant": PAYMENTS,
                "assigned_object_type": "dcim.interface",
                "assigned_object_id": 40,
                "custom_fields": {},
                "tags": [],
            },
            {
                "id": 31,
                "address": "10.0.1.5/24",
                "status": status("active"),
                "tenant": None,
                "assigned_object_type": "virtualization.vminterface",
                "assigned_object_id": 41,
                "custom_fields": {},
                "tags": [],
            },
        ],
        "/api/dcim/interfaces/": [{"id": 40, "name": "eth0", "device": ref(1, "web-01")}],
        "/api/virtualization/interfaces/": [{"id": 41, "name": "eth0", "virtual_machine": ref(10, "app-vm")}],
        "/api/core/object-changes/": [
            {
                "id": 100,
                "time": "2026-01-01T10:00:00Z",
                "user_name": "admin",
                "action": status("create"),
                "changed_object_type": "dcim.device",
                "changed_object_id": 1,
                "object_repr": "web-01",
                "prechange_data": None,
                "postchange_data": {"name": "web-01", "status": "active"},
            },
            {
                "id": 101,
                "time": "2026-01-03T10:00:00Z",
                "user_name": "admin",
                "action": status("update"),
                "changed_object_type": "dcim.device",
                "changed_object_id": 2,
                "object_repr": "db-01",
                "prechange_data": {"name": "db", "status": "active"},
                "postchange_data": {"name": "db-01", "status": "active"},
            },
        ],
        "/api/extras/journal-entries/": [],
    }


def _nested(obj: dict[str, Any], key: str, field: str = "id") -> str | None:
    value = obj.get(key)
    return str(value.get(field)) if isinstance(value, dict) else None


def _parent(obj: dict[str, Any], content_type: str) -> str | None:
    return _nested(obj, "parent") if obj.get("parent_object_type") == content_type else None


FILTERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "status": lambda o: _nested(o, "status", "value"),
    "tenant": lambda o: _nested(o, "tenant", "slug"),
    "cf_environment": lambda o: str((o.get("custom_fields") or {}).get("environment")),
    "name": lambda o: o.get("name"),
    # NetBox 4.3 keeps a service's host in parent_object_type/parent; the device_id filter still finds it.
    "device_id": lambda o: _nested(o, "device") or _parent(o, "dcim.device"),
    "virtual_machine_id": lambda o: _nested(o, "virtual_machine") or _parent(o, "virtualization.virtualmachine"),
    "interface_id": lambda o: str(o["assigned_object_id"]) if o.get("assigned_object_type") == "dcim.interface" else "",
    "vminterface_id": lambda o: (
        str(o["assigned_object_id"]) if o.get("assigned_object_type") == "virtualization.vminterface" else ""
    ),
    "changed_object_type": lambda o: o.get("changed_object_type"),
    "changed_object_id": lambda o: str(o.get("changed_object_id")),
}


CORE_CHANGES = "/api/core/object-changes/"
EXTRAS_CHANGES = "/api/extras/object-changes/"
Routes = Callable[[FakeApi], list[web.RouteDef]]


def netbox_api(
    objects: dict[str, list[dict[str, Any]]], *, version: str | None = "4.2.1", max_page_size: int = 1000
) -> Routes:
    """The fake's routes over ``objects`` (by list path). The changelog is served at whichever of the two
    paths ``objects`` holds; ``/api/status/`` tells ``version`` (None: no status endpoint, a 404); like
    NetBox's MAX_PAGE_SIZE, no page holds more than ``max_page_size`` results."""
    changelog = EXTRAS_CHANGES if EXTRAS_CHANGES in objects else CORE_CHANGES

    def routes(api: FakeApi) -> list[web.RouteDef]:
        return netbox_routes(api, objects, changelog, version, max_page_size)

    return routes


def netbox_routes(
    api: FakeApi,
    objects: dict[str, list[dict[str, Any]]],
    changelog: str,
    version: str | None,
    max_page_size: int,
) -> list[web.RouteDef]:
    def matches(obj: dict[str, Any], query: Any) -> bool:
        for name, value in query.items():
            if name in FILTERS and FILTERS[name](obj) != value:
                return False
        if "q" in query and query["q"].lower() not in str(obj.get("name") or obj.get("address")).lower():
            return False
        if "time_after" in query and obj["time"] < query["time_after"].replace("+00:00", "Z"):
            return False
        return not ("time_before" in query and obj["time"] > query["time_before"].replace("+00:00", "Z"))

    def listing(path: str) -> web.RouteDef:
        async def handler(request: web.Request) -> web.Response:
            found = [o for o in objects[path] if matches(o, request.query)]
            if request.query.get("ordering") == "-time":
                found.sort(key=lambda o: o["time"], reverse=True)
            limit = min(int(request.query.get("limit", 50)), max_page_size)
            offset = int(request.query.get("offset", 0))
            more = offset + limit < len(found)
            next_url = f"{api.url}{path}?limit={limit}&offset={offset + limit}" if more else None
            body = {"count": len(found), "next": next_url, "previous": None, "results": found[offset : offset + limit]}
            return json_response(body)

        return web.get(path, handler)

    def detail(path: str) -> list[web.RouteDef]:
        def find(request: web.Request) -> dict[str, Any] | None:
            number = int(request.match_info["id"])
            return next((o for o in objects[path] if o["id"] == number), None)

        async def get(request: web.Request) -> web.Response:
            found = find(request)
            return (
                json_response(found) if found else json_response({"detail": "No Device matches the given query."}, 404)
            )

        async def patch(request: web.Request) -> web.Response:
            found = find(request)
            assert found is not None
            before = found["status"]["value"]
            found["status"] = status((await request.json())["status"])
            objects[changelog].append(
                {
                    "id": 102,
                    "time": "2026-01-09T10:00:00Z",
                    "user_name": "mcp-bot",
                    "action": status("update"),
                    "changed_object_type": "dcim.device",
                    "changed_object_id": found["id"],
                    "object_repr": found["name"],
                    "prechange_data": {"status": before},
                    "postchange_data": {"status": found["status"]["value"]},
                }
            )
            return json_response(found)

        return [web.get(path + "{id}/", get), web.patch(path + "{id}/", patch)]

    async def journal(request: web.Request) -> web.Response:
        entry = {**(await request.json()), "id": 7, "created": "2026-01-09T10:00:00Z"}
        objects["/api/extras/journal-entries/"].append(entry)
        return json_response(entry, 201)

    asset_paths = [
        "/api/dcim/devices/",
        "/api/virtualization/virtual-machines/",
        "/api/ipam/services/",
        "/api/ipam/ip-addresses/",
    ]

    async def status_answer(request: web.Request) -> web.Response:
        return json_response({"django-version": "5.0.9", "netbox-version": version, "plugins": {}})

    routes = [listing(path) for path in objects]
    for path in asset_paths:
        routes += detail(path)
    if version is not None:
        routes.append(web.get("/api/status/", status_answer))
    return [*routes, web.post("/api/extras/journal-entries/", journal)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeApi]:
    async with serve(netbox_api(netbox_objects()), "Token") as api:
        yield api


@pytest.fixture
async def make_fleet(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeFleet]:
    async with fleets(monkeypatch) as make:
        yield make


def netbox(fake: FakeApi, **more: Any) -> dict[str, Any]:
    return {"backend": "netbox", "url": fake.url, "token": fake.token, **more}


async def test_filters_types_and_paging_across_endpoints(make_fleet: MakeFleet, fake: FakeApi) -> None:
    fleet = await make_fleet(netbox(fake))
    async with Client(fleet.mcp) as client:
        production = await ok(client, "query_assets", environment="production", owner="payments")
        offline = await ok(client, "query_assets", type="device", status="offline")
        pages = [await ok(client, "query_assets", limit=3)]
        while pages[-1]["continue_token"]:
            pages.append(await ok(client, "query_assets", limit=3, continue_token=pages[-1]["continue_token"]))
        with pytest.raises(MCPError) as bad_type:
            await client.call_tool("query_assets", {"type": "deployment"})
    assert ids(production) == ["device/1"]
    device_query = next(r for r in fake.requests if r.path == "/api/dcim/devices/")
    assert device_query.query == {
        "ordering": "id",
        "tenant": "payments",
        "cf_environment": "production",
        "limit": "200",
        "offset": "0",
    }
    assert device_query.authorization == "Token s3cret-token"
    # Services have neither tenant nor status in NetBox: not asked when those filters are set.
    assert [r.path for r in fake.requests[:3]] == [
        "/api/dcim/devices/",
        "/api/virtualization/virtual-machines/",
        "/api/ipam/ip-addresses/",
    ]
    assert ids(offline) == ["device/3"]
    assert offline["total"] == 1
    everything = [i for p in pages for i in ids(p)]
    assert everything == [
        "device/1",
        "device/2",
        "device/3",
        "virtual-machine/10",
        "service/20",
        "service/21",
        "ip-address/30",
        "ip-address/31",
    ]
    vm = next(a for p in pages for a in p["items"] if a["id"] == "virtual-machine/10")
    assert (vm["environment"], vm["owner"], vm["attributes"]["cluster"]) == ("production", "payments", "prod-cluster")
    assert bad_type.value.error.data["field"] == "type"


async def test_get_asset_not_found_and_malformed(make_fleet: MakeFleet, fake: FakeApi) -> None:
    fleet = await make_fleet(netbox(fake))
    async with Client(fleet.mcp) as client:
        service = await ok(client, "get_asset", asset_id="service/20")
        missing = await failure(client, "get_asset", asset_id="device/99")
        with pytest.raises(MCPError) as malformed:
            await client.call_tool("get_asset", {"asset_id": "web-01"})
    assert (service["name"], service["attributes"]["ports"], service["attributes"]["device"]) == (
        "web",
        "443",
        "web-01",
    )
    assert "asset device/99 not found" in missing
    assert ("GET", "/api/dcim/devices/99/") in [(r.method, r.path) for r in fake.requests]
    assert malformed.value.code == INVALID_PARAMS
    assert malformed.value.error.data["field"] == "asset_id"


async def test_topology_from_relations_and_depth(make_fleet: MakeFleet, fake: FakeApi) -> None:
    fleet = await make_fleet(netbox(fake))
    async with Client(fleet.mcp) as client:
        near = await ok(client, "get_service_topology", service="web", depth=1)
        full = await ok(client, "get_service_topology", service="web", depth=3)
        vm_side = await ok(client, "get_service_topology", service="api", depth=2)
        unknown = await failure(client, "get_service_topology", service="nope")
    assert near["service"] == "service/20"
    assert {(e["source"], e["target"], e["relation"]) for e in near["edges"]} == {
        ("service/20", "device/1", "runs-on"),
        ("service/20", "ip-address/30", "listens-on"),
    }
    edges = {(e["source"], e["target"], e["relation"]) for e in full["edges"]}
    assert ("device/1", "interface/40", "has-interface") in edges
    assert ("interface/40", "ip-address/30", "has-address") in edges
    assert {n["id"]: n["depth"] for n in full["nodes"]}["interface/40"] == 2
    vm_edges = {(e["source"], e["target"], e["relation"]) for e in vm_side["edges"]}
    assert ("virtual-machine/10", "cluster/5", "member-of") in vm_edges
    assert ("virtual-machine/10", "vm-interface/41", "has-interface") in vm_edges
    assert "service nope not found" in unknown


async def test_update_asset_status_patches_and_journals(make_fleet: MakeFleet, fake: FakeApi) -> None:
    fleet = await make_fleet(netbox(fake))
    async with Client(fleet.mcp, elicitation_callback=Answers("decline")) as client:
        declined = await failure(client, "update_asset_status", asset_id="device/1", status="retired", reason="eol")
    assert "declined" in declined
    assert fake.paths("PATCH") == []

    answers = Answers("accept")
    async with Client(fleet.mcp, elicitation_callback=answers) as client:
        record = await ok(
            client, "update_asset_status", asset_id="device/1", status="maintenance", reason="disk swap", actor="alice"
        )
        with pytest.raises(MCPError) as no_status:
            await client.call_tool(
                "update_asset_status", {"asset_id": "service/20", "status": "retired", "reason": "not needed"}
            )
        window = await ok(
            client,
            "get_change_records",
            asset_id="device/1",
            since="2026-01-02T00:00:00Z",
            until="2026-01-31T00:00:00Z",
        )
        everything = await ok(client, "get_change_records", limit=2)
        rest = await ok(client, "get_change_records", limit=2, continue_token=everything["continue_token"])
        asset = await ok(client, "get_asset", asset_id="device/1")
    patch = fake.last("PATCH", "/api/dcim/devices/1/")
    assert (patch.body, patch.authorization) == ({"status": "offline"}, "Token s3cret-token")
    assert fake.last("POST", "/api/extras/journal-entries/").body == {
        "assigned_object_type": "dcim.device",
        "assigned_object_id": 1,
        "kind": "warning",
        "comments": "status active -> offline (maintenance): disk swap (by alice)",
    }
    assert (record["id"], record["from_value"], record["to_value"], record["reason"]) == (
        "journal/7",
        "active",
        "offline",
        "disk swap",
    )
    assert no_status.value.error.data["field"] == "asset_id"
    assert "NetBox services have no status" in no_status.value.error.message
    assert asset["status"] == "offline"
    assert ids(window) == ["change/102"]
    assert (window["items"][0]["from_value"], window["items"][0]["to_value"]) == ("active", "offline")
    changelog = [r.query for r in fake.requests if r.path == "/api/core/object-changes/"]
    assert changelog[0] == {
        "ordering": "-time",
        "changed_object_type": "dcim.device",
        "changed_object_id": "1",
        "time_after": "2026-01-02T00:00:00+00:00",
        "time_before": "2026-01-31T00:00:00+00:00",
        "limit": "200",
        "offset": "0",
    }
    assert ids(everything) + ids(rest) == ["change/102", "change/101", "change/100"]
    assert everything["total"] == 3
    assert rest["continue_token"] is None


async def test_backend_down_and_bad_token(make_fleet: MakeFleet, fake: FakeApi) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    down = await make_fleet({"backend": "netbox", "url": dead, "token": "x", "request_timeout_seconds": 3})
    wrong = await make_fleet(netbox(fake, token="wrong-token"))
    async with Client(down.mcp) as client:
        unavailable = await failure(client, "get_change_records")
    async with Client(wrong.mcp) as client:
        refused = await failure(client, "query_assets")
    assert f"NetBox at {dead} is unavailable" in unavailable
    assert "refused the credentials (401): Invalid token; check CMDB_TOKEN or CMDB_TOKEN_FILE" in refused
    assert "spec.config.cmdb.tokenSecret" in refused
    assert "wrong-token" not in refused
    assert fake.requests[-1].authorization == "Token wrong-token"
