"""A fake of Grafana's HTTP API — a fake: Grafana cannot run here (no package, no container runtime).

It answers the handful of endpoints the monitoring server calls with Grafana's documented shapes, refuses a
request without the expected credentials (401, as Grafana does), records every request, and checks each posted
dashboard like Grafana's model would need it; a dashboard it cannot accept is answered 400 and recorded in
``problems`` so a test fails even when the server would hide the error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

GRID_COLUMNS = 24
BODY = web.RequestKey("body", object)
PROMETHEUS_UID = "prom-main"

SECRETS = ("s3cr3t-password", "basic-s3cr3t", "tok3n-in-header")

DATASOURCES: list[dict[str, Any]] = [
    {
        "id": 1,
        "uid": "loki-1",
        "name": "Loki",
        "type": "loki",
        "url": "http://loki:3100",
        "isDefault": False,
        "access": "proxy",
        "jsonData": {"httpHeaderName1": "X-Scope-OrgID"},
        "secureJsonData": {"httpHeaderValue1": SECRETS[2]},
    },
    {
        "id": 2,
        "uid": PROMETHEUS_UID,
        "name": "Prometheus",
        "type": "prometheus",
        "url": "http://prometheus:9090",
        "isDefault": True,
        "access": "proxy",
        "basicAuth": True,
        "basicAuthUser": "grafana",
        "basicAuthPassword": SECRETS[1],
        "password": SECRETS[0],
        "secureJsonFields": {"basicAuthPassword": True},
    },
    {
        "id": 3,
        "uid": "prom-old",
        "name": "Prometheus (old)",
        "type": "prometheus",
        "url": "http://old-prometheus:9090",
        "isDefault": False,
    },
]

SEARCH_HITS: list[dict[str, Any]] = [
    {
        "id": 11,
        "uid": "shop-overview",
        "title": "Shop overview",
        "uri": "db/shop-overview",
        "url": "/d/shop-overview/shop-overview",
        "type": "dash-db",
        "tags": ["shop", "slo"],
        "folderUid": "team-shop",
        "folderTitle": "Shop",
    },
    {
        "id": 12,
        "uid": "api-latency",
        "title": "API latency",
        "url": "/d/api-latency/api-latency",
        "type": "dash-db",
        "tags": ["api"],
    },
]

# A dashboard as Grafana stores it: an expanded row, a collapsed row holding its panels, and several kinds
# of queries (PromQL, SQL, Loki, InfluxQL) with new (object) and old (name) data source references.
SHOP_DASHBOARD: dict[str, Any] = {
    "meta": {"url": "/d/shop-overview/shop-overview", "folderUid": "team-shop", "folderTitle": "Shop"},
    "dashboard": {
        "id": 11,
        "uid": "shop-overview",
        "title": "Shop overview",
        "tags": ["shop", "slo"],
        "version": 7,
        "schemaVersion": 39,
        "panels": [
            {
                "id": 1,
                "type": "stat",
                "title": "Availability",
                "datasource": {"type": "prometheus", "uid": PROMETHEUS_UID},
                "targets": [{"refId": "A", "expr": 'avg(up{service="checkout"})'}],
                "gridPos": {"x": 0, "y": 0, "w": 24, "h": 4},
            },
            {"id": 2, "type": "row", "title": "Traffic", "collapsed": False, "panels": []},
            {
                "id": 3,
                "type": "timeseries",
                "title": "Requests",
                "datasource": {"type": "prometheus", "uid": PROMETHEUS_UID},
                "targets": [
                    {"refId": "A", "expr": "sum by (code) (rate(http_requests_total[5m]))"},
                    {"refId": "B", "expr": "sum(rate(http_requests_total[5m]))", "hide": True},
                ],
            },
            {
                "id": 4,
                "type": "row",
                "title": "Storage",
                "collapsed": True,
                "panels": [
                    {
                        "id": 5,
                        "type": "table",
                        "title": "Slow orders",
                        "datasource": {"type": "postgres", "uid": "pg-1"},
                        "targets": [{"refId": "A", "rawSql": "SELECT id, took FROM orders WHERE took > 5"}],
                    },
                    {
                        "id": 6,
                        "type": "logs",
                        "title": "Errors",
                        "datasource": "Loki",
                        "targets": [{"refId": "A", "expr": '{app="checkout"} |= "error"'}],
                    },
                    {
                        "id": 7,
                        "type": "timeseries",
                        "title": "Disk",
                        "datasource": {"type": "influxdb", "uid": "influx-1"},
                        "targets": [{"refId": "A", "query": "SELECT mean(used) FROM disk GROUP BY time(1m)"}],
                    },
                ],
            },
        ],
    },
}


@dataclass
class Recorded:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: Any


@dataclass
class GrafanaFake:
    """The fake's state: what it expects, what it saw, what it stored."""

    authorization: str
    org_id: str | None = None
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]


def dashboard_problems(body: Any) -> list[str]:
    """What Grafana would refuse, or a reader would not see, in a POST /api/dashboards/db body."""
    if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
        return ["the body has no dashboard object"]
    problems = []
    if body.get("overwrite") is not False:
        problems.append(f"overwrite is {body.get('overwrite')!r}, not false")
    dashboard = body["dashboard"]
    for key in ("id", "uid"):
        if dashboard.get(key) is not None:
            problems.append(f"a new dashboard carries {key}={dashboard[key]!r}")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("schemaVersion is missing")
    if not dashboard.get("title"):
        problems.append("title is missing")
    panels = dashboard.get("panels")
    if not isinstance(panels, list) or not panels:
        return [*problems, "no panels"]
    ids = [panel.get("id") for panel in panels]
    if len(set(ids)) != len(ids):
        problems.append(f"panel ids repeat: {ids}")
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel.get("gridPos") or {}
        values = [value for key in ("x", "y", "w", "h") if isinstance(value := grid.get(key), int)]
        if len(values) != 4:
            problems.append(f"panel {panel.get('id')}: bad gridPos {grid}")
            continue
        x, y, w, h = values
        if w < 1 or h < 1 or x < 0 or y < 0:
            problems.append(f"panel {panel.get('id')}: bad gridPos {grid}")
            continue
        if x + w > GRID_COLUMNS:
            problems.append(f"panel {panel.get('id')}: gridPos {grid} leaves the {GRID_COLUMNS}-column grid")
        covered = {(col, row) for col in range(x, x + w) for row in range(y, y + h)}
        if covered & cells:
            problems.append(f"panel {panel.get('id')}: overlaps another panel")
        cells |= covered
        targets = panel.get("targets") or []
        if not targets or not all(isinstance(t, dict) and t.get("expr") and t.get("refId") for t in targets):
            problems.append(f"panel {panel.get('id')}: a target without refId or expr")
        if not (panel.get("datasource") or {}).get("uid"):
            problems.append(f"panel {panel.get('id')}: no data source uid")
    return problems


def _app(fake: GrafanaFake) -> web.Application:
    @web.middleware
    async def record_and_authorize(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        request[BODY] = body
        fake.requests.append(
            Recorded(request.method, request.path, list(request.query.items()), dict(request.headers), body)
        )
        if request.headers.get("Authorization") != fake.authorization:
            return web.json_response({"message": "Unauthorized"}, status=401)
        if fake.org_id is not None and request.headers.get("X-Grafana-Org-Id") != fake.org_id:
            return web.json_response({"message": "wrong organisation"}, status=403)
        response: web.StreamResponse = await handler(request)
        return response

    async def search(request: web.Request) -> web.Response:
        return web.json_response(SEARCH_HITS)

    async def get_dashboard(request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid == SHOP_DASHBOARD["dashboard"]["uid"]:
            return web.json_response(SHOP_DASHBOARD)
        if uid in fake.dashboards:
            return web.json_response({"meta": {"url": f"/d/{uid}/x"}, "dashboard": fake.dashboards[uid]})
        return web.json_response({"message": "Dashboard not found"}, status=404)

    async def datasources(request: web.Request) -> web.Response:
        return web.json_response(DATASOURCES)

    async def datasource_by_uid(request: web.Request) -> web.Response:
        for source in DATASOURCES:
            if source["uid"] == request.match_info["uid"]:
                return web.json_response(source)
        return web.json_response({"message": "Data source not found"}, status=404)

    async def save_dashboard(request: web.Request) -> web.Response:
        body: Any = request[BODY]
        problems = dashboard_problems(body)
        if problems:
            fake.problems.extend(problems)
            return web.json_response({"message": "; ".join(problems)}, status=400)
        dashboard = body["dashboard"]
        if any(d["title"] == dashboard["title"] for d in fake.dashboards.values()):
            message = "A dashboard with the same name in the folder already exists"
            return web.json_response({"message": message, "status": "name-exists"}, status=412)
        uid = f"gen{len(fake.dashboards) + 1:04d}"
        fake.dashboards[uid] = {**dashboard, "uid": uid, "id": 100 + len(fake.dashboards)}
        slug = dashboard["title"].lower().replace(" ", "-")
        return web.json_response(
            {"id": 100, "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success", "version": 1, "slug": slug}
        )

    async def annotate(request: web.Request) -> web.Response:
        body: Any = request[BODY]
        if not isinstance(body, dict) or not body.get("text") or not isinstance(body.get("time"), int):
            fake.problems.append(f"bad annotation {body}")
            return web.json_response({"message": "bad annotation"}, status=400)
        fake.annotations.append(body)
        return web.json_response({"message": "Annotation added", "id": len(fake.annotations)})

    app = web.Application(middlewares=[record_and_authorize])
    app.router.add_get("/api/search", search)
    app.router.add_get("/api/dashboards/uid/{uid}", get_dashboard)
    app.router.add_get("/api/datasources", datasources)
    app.router.add_get("/api/datasources/uid/{uid}", datasource_by_uid)
    app.router.add_post("/api/dashboards/db", save_dashboard)
    app.router.add_post("/api/annotations", annotate)
    return app


@contextlib.asynccontextmanager
async def running_grafana_fake(authorization: str, org_id: str | None = None) -> AsyncIterator[GrafanaFake]:
    """The fake on a free loopback port, served by the test's event loop."""
    fake = GrafanaFake(authorization=authorization, org_id=org_id)
    runner = web.AppRunner(_app(fake))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def without_secrets(text: str) -> bool:
    return not any(secret in text for secret in SECRETS) and "secureJsonData" not in text and "password" not in text
