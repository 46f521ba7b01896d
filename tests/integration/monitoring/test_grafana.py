"""The Grafana tools through a real MCP client session, against an HTTP fake of Grafana (a fake: Grafana cannot
run here; see grafana_fake.py) that checks the paths, the credentials and the dashboards the server sends."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import TextResourceContents

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_servers.base.app import FleetServer
from tests.integration.k8s_ops.session import Answers
from tests.integration.monitoring.conftest import MakeFleet, Session
from tests.integration.monitoring.grafana_fake import (
    GRID_COLUMNS,
    PROMETHEUS_UID,
    GrafanaFake,
    dashboard_problems,
    running_grafana_fake,
    without_secrets,
)

pytestmark = pytest.mark.integration

TOKEN = "glsa_test-token-0123456789"
GRAFANA_TOOLS = {
    "search_dashboards",
    "get_dashboard_summary",
    "list_datasources",
    "create_dashboard",
    "create_annotation",
}


@pytest.fixture
async def grafana() -> AsyncIterator[GrafanaFake]:
    async with running_grafana_fake(f"Bearer {TOKEN}", org_id="3") as fake:
        yield fake


async def with_grafana(make_fleet: MakeFleet, fake: GrafanaFake, **mon: Any) -> FleetServer:
    values: dict[str, Any] = {"grafana_url": fake.url, "grafana_token": TOKEN, "grafana_org_id": 3}
    return await make_fleet(mon=values | mon)


async def test_grafana_tools_exist_only_with_a_grafana_url(make_fleet: MakeFleet, grafana: GrafanaFake) -> None:
    without = await make_fleet()
    async with Client(without.mcp, elicitation_callback=Answers("accept")) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
    assert not names & GRAFANA_TOOLS
    assert "monitoring://dashboards" not in resources

    fleet = await with_grafana(make_fleet, grafana)
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
    assert set(tools) >= GRAFANA_TOOLS
    assert "monitoring://dashboards" in resources
    for name in GRAFANA_TOOLS:
        annotations = tools[name].annotations
        assert annotations is not None
        assert annotations.read_only_hint is (not name.startswith("create_")), name
        assert annotations.destructive_hint is False, name


async def test_search_sends_the_filters_and_the_credentials(make_fleet: MakeFleet, grafana: GrafanaFake) -> None:
    fleet = await with_grafana(make_fleet, grafana)
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        page = await session.ok("search_dashboards", query="shop", tag=["slo", "shop"], folder="team-shop")
        contents = (await client.read_resource("monitoring://dashboards")).contents
    assert [hit["uid"] for hit in page["items"]] == ["api-latency", "shop-overview"]  # by title
    shop = page["items"][1]
    assert shop == {
        "uid": "shop-overview",
        "title": "Shop overview",
        "url": f"{grafana.url}/d/shop-overview/shop-overview",
        "folder_uid": "team-shop",
        "folder_title": "Shop",
        "tags": ["shop", "slo"],
    }
    first = grafana.calls("GET", "/api/search")[0]
    assert ("type", "dash-db") in first.query
    assert ("query", "shop") in first.query
    assert [value for key, value in first.query if key == "tag"] == ["slo", "shop"]
    assert ("folderUIDs", "team-shop") in first.query
    assert dict(first.query)["limit"] == "1000"
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["X-Grafana-Org-Id"] == "3"
    assert isinstance(contents[0], TextResourceContents)
    assert json.loads(contents[0].text)["total"] == 2


async def test_dashboard_summary_has_every_panel_and_query(make_fleet: MakeFleet, grafana: GrafanaFake) -> None:
    fleet = await with_grafana(make_fleet, grafana)
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        summary = await session.ok("get_dashboard_summary", uid="shop-overview")
    assert grafana.calls("GET", "/api/dashboards/uid/shop-overview")
    assert summary["title"] == "Shop overview"
    assert summary["folder_title"] == "Shop"
    assert summary["url"] == f"{grafana.url}/d/shop-overview/shop-overview"
    assert summary["version"] == 7
    assert summary["total_panels"] == 5
    assert summary["truncated"] is False
    panels = {panel["id"]: panel for panel in summary["panels"]}
    assert set(panels) == {1, 3, 5, 6, 7}  # rows are not panels; the collapsed row's panels are
    assert panels[1]["row"] is None
    assert panels[3]["row"] == "Traffic"
    assert [panels[i]["row"] for i in (5, 6, 7)] == ["Storage"] * 3
    assert [(q["ref_id"], q["field"], q["hidden"]) for q in panels[3]["queries"]] == [
        ("A", "expr", False),
        ("B", "expr", True),
    ]
    assert panels[3]["datasource"] == {"uid": PROMETHEUS_UID, "type": "prometheus", "name": None}
    assert panels[5]["queries"][0]["field"] == "rawSql"
    assert panels[5]["queries"][0]["expression"].startswith("SELECT id, took FROM orders")
    assert panels[6]["datasource"] == {"uid": None, "type": None, "name": "Loki"}
    assert panels[6]["queries"][0]["expression"] == '{app="checkout"} |= "error"'
    assert panels[7]["queries"][0]["field"] == "query"
    assert "gridPos" not in json.dumps(summary)  # a summary, not the model


async def test_unknown_uid_is_not_found_naming_it(make_fleet: MakeFleet, grafana: GrafanaFake) -> None:
    fleet = await with_grafana(make_fleet, grafana)
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        message = await session.error("get_dashboard_summary", uid="no-such-dash")
        assert "no Grafana dashboard with uid 'no-such-dash'" in message
        error = await session.invalid("get_dashboard_summary", uid="../admin")
        assert error.error.data["field"] == "uid"


async def test_datasources_never_show_credentials(make_fleet: MakeFleet, grafana: GrafanaFake) -> None:
    fleet = await with_grafana(make_fleet, grafana)
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        result = await client.call_tool("list_datasources", {})
    assert not result.is_error
    content = result.structured_content or {}
    assert content["items"][0] == {
        "name": "Prometheus",
        "uid": PROMETHEUS_UID,
        "type": "prometheus",
        "url": "http://prometheus:9090",
        "is_default": True,
    }
    assert [item["uid"] for item in content["items"]] == [PROMETHEUS_UID, "loki-1", "prom-old"]
    text = json.dumps(content) + "".join(getattr(block, "text", "") for block in result.content)
    assert without_secrets(text), text


async def test_create_dashboard_posts_a_valid_model(make_fleet: MakeFleet, grafana: GrafanaFake) -> None:
    fleet = await with_grafana(make_fleet, grafana)
    queries = [
        {"expr": "sum by (code) (rate(http_requests_total[5m]))", "title": "Requests", "unit": "reqps"},
        {"expr": "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"},
        {"expr": 'up{service="checkout"}', "title": "Up"},
    ]
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        created = await session.ok(
            "create_dashboard", title="Checkout", queries=queries, folder_uid="team-shop", tags=["shop"]
        )
        again = await session.invalid("create_dashboard", title="Checkout", queries=queries[:1])
        summary = await session.ok("get_dashboard_summary", uid=created["uid"])
    assert grafana.problems == []
    assert created["uid"] == "gen0001"
    assert created["url"] == f"{grafana.url}/d/gen0001/checkout"
    assert created["panels"] == 3
    assert again.error.data["field"] == "title"
    assert "same name" in again.error.message

    posted = grafana.calls("POST", "/api/dashboards/db")[0]
    assert posted.headers["Authorization"] == f"Bearer {TOKEN}"
    assert posted.headers["X-Grafana-Org-Id"] == "3"
    body = posted.body
    assert dashboard_problems(body) == []
    assert body["overwrite"] is False
    assert body["folderUid"] == "team-shop"
    dashboard = body["dashboard"]
    assert dashboard["title"] == "Checkout"
    assert dashboard["tags"] == ["shop"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard
    assert "uid" not in dashboard
    panels = dashboard["panels"]
    assert [panel["type"] for panel in panels] == ["timeseries"] * 3
    assert [panel["targets"][0]["expr"] for panel in panels] == [q["expr"] for q in queries]
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= GRID_COLUMNS
        assert panel["datasource"] == {"type": "prometheus", "uid": PROMETHEUS_UID}  # the default one
    assert [p["gridPos"] for p in panels] == [
        {"x": 0, "y": 0, "w": 12, "h": 8},
        {"x": 12, "y": 0, "w": 12, "h": 8},
        {"x": 0, "y": 8, "w": 24, "h": 8},
    ]
    assert panels[0]["fieldConfig"]["defaults"]["unit"] == "reqps"
    assert panels[0]["title"] == "Requests"
    assert panels[1]["title"].startswith("histogram_quantile(0.99")
    assert [p["queries"][0]["expression"] for p in summary["panels"]] == [q["expr"] for q in queries]


async def test_create_dashboard_with_a_given_datasource_and_bad_arguments(
    make_fleet: MakeFleet, grafana: GrafanaFake
) -> None:
    fleet = await with_grafana(make_fleet, grafana)
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        await session.ok("create_dashboard", title="Old", queries=[{"expr": "up"}], datasource_uid="prom-old")
        error = await session.invalid("create_dashboard", title="X", queries=[{"expr": "up"}], datasource_uid="nope")
        assert error.error.data["field"] == "datasource_uid"
        error = await session.invalid("create_dashboard", title="X", queries=[])
        assert error.error.data["field"] == "queries"
    dashboard = grafana.calls("POST", "/api/dashboards/db")[0].body["dashboard"]
    assert dashboard["panels"][0]["datasource"] == {"type": "prometheus", "uid": "prom-old"}
    assert dashboard["panels"][0]["gridPos"] == {"x": 0, "y": 0, "w": 24, "h": 8}
    assert len(grafana.calls("POST", "/api/dashboards/db")) == 1


async def test_create_annotation(make_fleet: MakeFleet, grafana: GrafanaFake) -> None:
    fleet = await with_grafana(make_fleet, grafana)
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        point = await session.ok("create_annotation", text="deployed v1.2", tags=["deploy"])
        region = await session.ok(
            "create_annotation",
            text="INC-7",
            dashboard_uid="shop-overview",
            time="2026-01-02T10:00:00Z",
            time_end="2026-01-02T11:00:00Z",
        )
        error = await session.invalid("create_annotation", text="x", time="now", time_end="now-1h")
        assert error.error.data["field"] == "time_end"
    assert point["id"] == 1
    assert region["id"] == 2
    first, second = grafana.annotations
    assert first["text"] == "deployed v1.2"
    assert first["tags"] == ["deploy"]
    assert "dashboardUID" not in first
    assert second == {
        "text": "INC-7",
        "tags": [],
        "time": 1767348000000,
        "timeEnd": 1767351600000,
        "dashboardUID": "shop-overview",
    }
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in grafana.calls("POST", "/api/annotations"))


async def test_basic_auth_and_token_file(make_fleet: MakeFleet, tmp_path: Path) -> None:
    basic = "Basic " + base64.b64encode(b"viewer:pa55").decode()
    async with running_grafana_fake(basic) as fake:
        fleet = await make_fleet(
            mon={"grafana_url": fake.url, "grafana_username": "viewer", "grafana_password": "pa55"}
        )
        async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
            await Session(client).ok("list_datasources")
        assert "X-Grafana-Org-Id" not in fake.requests[0].headers
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    async with running_grafana_fake("Bearer from-a-file") as fake:
        fleet = await make_fleet(mon={"grafana_url": fake.url, "grafana_token_file": token_file})
        async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
            session = Session(client)
            await session.ok("search_dashboards")
            token_file.write_text("rotated")  # read on every request
            message = await session.error("search_dashboards")
        assert "Grafana at" in message
        assert "refused the credentials (401)" in message
        assert "MON_GRAFANA_TOKEN" in message


async def test_grafana_down_is_named_with_its_url(make_fleet: MakeFleet) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    fleet = await make_fleet(mon={"grafana_url": nowhere, "grafana_token": TOKEN})
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        session = Session(client)
        for tool, arguments in (
            ("search_dashboards", {}),
            ("get_dashboard_summary", {"uid": "abc"}),
            ("create_dashboard", {"title": "x", "queries": [{"expr": "up"}]}),
        ):
            message = await session.error(tool, **arguments)
            assert f"Grafana at {nowhere} is unavailable" in message, message
