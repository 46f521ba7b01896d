"""The cmdb tools through a real MCP client session, rest backend, against an HTTP fake of the seed's CMDB API.

The fake (http_fakes.py) stands in for a real CMDB, which cannot run here; it records what the server sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from mcp import Client, MCPError

from mcpfleet_cli.devcluster.cluster import free_port
from tests.integration.cmdb.http_fakes import FakeApi, MakeFleet, fleets, json_response, serve
from tests.integration.cmdb.test_kubernetes_backend import failure, ids, ok
from tests.integration.k8s_ops.session import Answers

pytestmark = pytest.mark.integration


def asset(number: int, type_: str, environment: str, status: str = "active", owner: str = "payments") -> dict[str, Any]:
    return {
        "id": f"a-{number:02d}",
        "name": f"{type_}-{number:02d}",
        "type": type_,
        "environment": environment,
        "status": status,
        "owner": owner,
        "ip_address": f"10.0.0.{number}",
        "updated_at": "2026-01-01T00:00:00Z",
    }


TOPOLOGY = {
    "nodes": [
        {"id": "svc-web", "name": "web", "type": "application", "status": "active"},
        {"id": "a-01", "name": "server-01", "type": "server", "status": "active"},
        {"id": "a-02", "name": "database-02", "type": "database", "status": "active"},
        {"id": "a-03", "name": "server-03", "type": "server", "status": "maintenance"},
    ],
    "edges": [
        {"source": "svc-web", "target": "a-01", "type": "runs_on"},
        {"source": "svc-web", "target": "a-02", "type": "depends_on"},
        {"source": "a-02", "target": "a-03", "type": "runs_on"},
    ],
}


def cmdb_routes(api: FakeApi) -> list[web.RouteDef]:
    assets = {a["id"]: a for a in [asset(n, "server", "prod" if n % 2 else "staging") for n in range(1, 8)]}
    assets["a-02"] = asset(2, "database", "prod")
    changes: list[dict[str, Any]] = [
        {"id": "c-1", "asset_id": "a-01", "timestamp": "2026-01-01T10:00:00Z", "user": "bob", "action": "create"},
        {"id": "c-2", "asset_id": "a-01", "timestamp": "2026-01-05T10:00:00Z", "user": "bob", "action": "patch"},
    ]

    def paged(items: list[dict[str, Any]], key: str, query: Any) -> web.Response:
        page, limit = int(query.get("page", 1)), int(query.get("limit", 50))
        chunk = items[(page - 1) * limit : page * limit]
        return json_response({key: chunk, "total": len(items), "page": page})

    async def list_assets(request: web.Request) -> web.Response:
        q = request.query
        found = [
            a
            for a in sorted(assets.values(), key=lambda a: a["id"])
            if all(q.get(k) in (None, a[f]) for k, f in (("asset_type", "type"), ("environment", "environment")))
            and q.get("status") in (None, a["status"])
            and (q.get("q") is None or q["q"].lower() in a["name"])
        ]
        return paged(found, "assets", q)

    async def get_asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["id"])
        if found is None:
            return json_response({"detail": f"asset {request.match_info['id']} does not exist"}, 404)
        return json_response(found)

    async def topology(request: web.Request) -> web.Response:
        if request.match_info["service"] != "web":
            return json_response({"detail": "no such service"}, 404)
        return json_response(TOPOLOGY)

    async def set_status(request: web.Request) -> web.Response:
        target = assets[request.match_info["id"]]
        body = await request.json()
        change = {
            "id": f"c-{len(changes) + 1}",
            "asset_id": target["id"],
            "timestamp": "2026-01-09T10:00:00Z",
            "user": body["actor"],
            "action": "status_change",
            "old_value": target["status"],
            "new_value": body["status"],
            "reason": body["reason"],
        }
        target["status"] = body["status"]
        changes.append(change)
        return json_response({"asset": target, "change": change})

    async def list_changes(request: web.Request) -> web.Response:
        q = request.query
        found = [
            c
            for c in reversed(changes)
            if q.get("asset_id") in (None, c["asset_id"])
            and (q.get("since") is None or c["timestamp"] >= q["since"].replace("+00:00", "Z"))
            and (q.get("until") is None or c["timestamp"] <= q["until"].replace("+00:00", "Z"))
        ]
        return paged(found, "changes", q)

    return [
        web.get("/api/v1/assets", list_assets),
        web.get("/api/v1/assets/{id}", get_asset),
        web.put("/api/v1/assets/{id}/status", set_status),
        web.get("/api/v1/topology/{service}", topology),
        web.get("/api/v1/changes", list_changes),
    ]


@pytest.fixture
async def fake() -> AsyncIterator[FakeApi]:
    async with serve(cmdb_routes, "Bearer") as api:
        yield api


@pytest.fixture
async def make_fleet(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeFleet]:
    async with fleets(monkeypatch) as make:
        yield make


def rest(fake: FakeApi, **more: Any) -> dict[str, Any]:
    return {"backend": "rest", "url": fake.url, "token": fake.token, **more}


async def test_filters_and_paging_across_api_pages(make_fleet: MakeFleet, fake: FakeApi) -> None:
    fleet = await make_fleet(rest(fake))
    async with Client(fleet.mcp) as client:
        prod_servers = await ok(client, "query_assets", type="server", environment="prod", text="SERVER")
        pages = [await ok(client, "query_assets", limit=3)]
        while pages[-1]["continue_token"]:
            pages.append(await ok(client, "query_assets", limit=3, continue_token=pages[-1]["continue_token"]))
        with pytest.raises(MCPError) as foreign:
            await client.call_tool("query_assets", {"status": "active", "continue_token": pages[0]["continue_token"]})
    assert ids(prod_servers) == ["a-01", "a-03", "a-05", "a-07"]
    first = prod_servers["items"][0]
    assert (first["owner"], first["attributes"]["ip_address"]) == ("payments", "10.0.0.1")
    assert fake.requests[0].query == {
        "asset_type": "server",
        "environment": "prod",
        "q": "SERVER",
        "page": "1",
        "limit": "200",
    }
    assert fake.requests[0].authorization == "Bearer s3cret-token"
    assert [ids(p) for p in pages] == [["a-01", "a-02", "a-03"], ["a-04", "a-05", "a-06"], ["a-07"]]
    assert [p["total"] for p in pages] == [7, 7, 7]
    assert [r.query["page"] for r in fake.requests[1:4]] == ["1", "2", "3"]
    assert foreign.value.error.data["field"] == "continue_token"


async def test_output_budget_cuts_inside_an_api_page_without_losing_items(make_fleet: MakeFleet, fake: FakeApi) -> None:
    fleet = await make_fleet(rest(fake), max_output_bytes=1024)
    seen: list[str] = []
    async with Client(fleet.mcp) as client:
        page = await ok(client, "query_assets", limit=50)
        seen += ids(page)
        while page["continue_token"]:
            page = await ok(client, "query_assets", limit=50, continue_token=page["continue_token"])
            seen += ids(page)
    assert seen == [f"a-{n:02d}" for n in range(1, 8)]
    assert len(fake.paths()) > 1


async def test_get_asset_not_found_and_topology_depth(make_fleet: MakeFleet, fake: FakeApi) -> None:
    fleet = await make_fleet(rest(fake))
    async with Client(fleet.mcp) as client:
        found = await ok(client, "get_asset", asset_id="a-02")
        missing = await failure(client, "get_asset", asset_id="a-99")
        near = await ok(client, "get_service_topology", service="web", depth=1)
        full = await ok(client, "get_service_topology", service="web", depth=2)
        unknown = await failure(client, "get_service_topology", service="nope")
    assert (found["type"], found["environment"]) == ("database", "prod")
    assert "asset a-99 not found (asset a-99 does not exist)" in missing
    assert {(n["id"], n["depth"]) for n in near["nodes"]} == {("svc-web", 0), ("a-01", 1), ("a-02", 1)}
    assert {(e["source"], e["target"], e["relation"]) for e in near["edges"]} == {
        ("svc-web", "a-01", "runs-on"),
        ("svc-web", "a-02", "depends-on"),
    }
    assert {n["id"]: n["status"] for n in full["nodes"]}["a-03"] == "maintenance"
    assert ("a-02", "a-03", "runs-on") in {(e["source"], e["target"], e["relation"]) for e in full["edges"]}
    assert "service nope not found" in unknown


async def test_update_asset_status_confirmed_and_change_records(make_fleet: MakeFleet, fake: FakeApi) -> None:
    fleet = await make_fleet(rest(fake))
    async with Client(fleet.mcp, elicitation_callback=Answers("decline")) as client:
        declined = await failure(client, "update_asset_status", asset_id="a-01", status="maintenance", reason="disk")
    assert "declined" in declined
    assert fake.paths("PUT") == []

    answers = Answers("accept")
    async with Client(fleet.mcp, elicitation_callback=answers) as client:
        record = await ok(
            client, "update_asset_status", asset_id="a-01", status="maintenance", reason="disk swap", actor="alice"
        )
        unknown = await failure(client, "update_asset_status", asset_id="a-99", status="retired", reason="gone")
        window = await ok(
            client, "get_change_records", asset_id="a-01", since="2026-01-02T00:00:00Z", until="2026-01-31T00:00:00Z"
        )
        everything = await ok(client, "get_change_records", asset_id="a-01")
    assert len(answers.questions) == 1
    put = fake.last("PUT", "/api/v1/assets/a-01/status")
    assert put.body == {"status": "maintenance", "reason": "disk swap", "actor": "alice"}
    assert put.authorization == "Bearer s3cret-token"
    assert (record["from_value"], record["to_value"], record["actor"], record["reason"]) == (
        "active",
        "maintenance",
        "alice",
        "disk swap",
    )
    assert "asset a-99 not found" in unknown
    assert ids(window) == ["c-3", "c-2"]
    ranged = [r.query for r in fake.requests if r.path == "/api/v1/changes" and "since" in r.query]
    assert [(q["since"], q["until"]) for q in ranged] == [("2026-01-02T00:00:00+00:00", "2026-01-31T00:00:00+00:00")]
    assert ids(everything) == ["c-3", "c-2", "c-1"]


async def test_backend_down_and_bad_token(make_fleet: MakeFleet, fake: FakeApi) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    down = await make_fleet({"backend": "rest", "url": dead, "token": "x", "request_timeout_seconds": 3})
    wrong = await make_fleet(rest(fake, token="wrong-token"))
    async with Client(down.mcp) as client:
        unavailable = await failure(client, "query_assets")
    async with Client(wrong.mcp) as client:
        refused = await failure(client, "get_asset", asset_id="a-01")
    assert f"CMDB at {dead} is unavailable" in unavailable
    assert "refused the credentials (401): Invalid token; check CMDB_TOKEN or CMDB_TOKEN_FILE" in refused
    assert "spec.config.cmdb.tokenSecret" in refused
    assert "wrong-token" not in refused
    assert fake.requests[-1].authorization == "Bearer wrong-token"


async def test_mounted_token_file_is_read_per_request(make_fleet: MakeFleet, fake: FakeApi, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    fleet = await make_fleet({"backend": "rest", "url": fake.url, "token_file": str(token_file)})
    async with Client(fleet.mcp) as client:
        await failure(client, "get_asset", asset_id="a-01")
        token_file.write_text(f"{fake.token}\n")  # the Secret rotated in place
        found = await ok(client, "get_asset", asset_id="a-01")
    assert found["id"] == "a-01"
    assert [r.authorization for r in fake.requests] == ["Bearer old-token", f"Bearer {fake.token}"]
