"""Grafana answers made small, and new dashboards built: pure functions over Grafana's JSON.

A dashboard summary keeps what a reader needs to understand a dashboard (panels, their data sources and
query expressions), never the whole model; a data source keeps its identity and URL, never credentials.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MAX_PANELS = 200
MAX_QUERIES_PER_PANEL = 20
MAX_QUERY_CHARS = 2000
# The dashboard JSON model version the built dashboards follow (Grafana 10.x writes 39); Grafana migrates it.
SCHEMA_VERSION = 39
GRID_COLUMNS = 24
PANEL_HEIGHT = 8
# The text fields a query may carry its expression in, by data source family: PromQL/LogQL, SQL, others.
_QUERY_FIELDS = ("expr", "rawSql", "query")


class DashboardHit(BaseModel):
    uid: str
    title: str
    url: str
    folder_uid: str | None = None
    folder_title: str | None = None
    tags: list[str] = Field(default_factory=list)


class DatasourceRef(BaseModel):
    uid: str | None = None
    type: str | None = None
    name: str | None = Field(default=None, description="Set when the dashboard names the data source by name.")


class QuerySummary(BaseModel):
    ref_id: str
    field: str = Field(description="Where the expression is: expr (PromQL, LogQL), rawSql or query.")
    expression: str = Field(description=f"The query text, at most {MAX_QUERY_CHARS} characters.")
    datasource: DatasourceRef | None = None
    hidden: bool = False


class PanelSummary(BaseModel):
    id: int | None
    title: str
    type: str
    row: str | None = Field(default=None, description="Title of the row the panel is in.")
    datasource: DatasourceRef | None = None
    queries: list[QuerySummary] = Field(default_factory=list)


class DashboardSummary(BaseModel):
    """A dashboard's panels and queries; the full JSON stays in Grafana."""

    uid: str
    title: str
    url: str
    tags: list[str]
    folder_uid: str | None = None
    folder_title: str | None = None
    version: int | None = None
    panels: list[PanelSummary]
    total_panels: int
    truncated: bool
    note: str | None = None


class Datasource(BaseModel):
    name: str
    uid: str
    type: str
    url: str
    is_default: bool


class PanelQuery(BaseModel):
    """One query of a new dashboard: one panel each."""

    expr: str = Field(
        min_length=1, max_length=4096, description="PromQL, e.g. sum by (code) (rate(http_requests_total[5m]))."
    )
    title: str | None = Field(default=None, max_length=256, description="Panel title; default: the expression.")
    unit: str | None = Field(
        default=None, max_length=64, description="Grafana unit id, e.g. 'reqps', 's', 'percent', 'bytes'."
    )


def _ref(raw: Any) -> DatasourceRef | None:
    if isinstance(raw, dict):
        return DatasourceRef(uid=_opt(raw.get("uid")), type=_opt(raw.get("type")))
    if isinstance(raw, str) and raw:
        return DatasourceRef(name=raw)  # dashboards older than schema 33 name the data source
    return None


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _queries(panel: dict[str, Any]) -> list[QuerySummary]:
    found = []
    for target in panel.get("targets") or []:
        if not isinstance(target, dict):
            continue
        for name in _QUERY_FIELDS:
            text = target.get(name)
            if isinstance(text, str) and text.strip():
                found.append(
                    QuerySummary(
                        ref_id=str(target.get("refId", "")),
                        field=name,
                        expression=text if len(text) <= MAX_QUERY_CHARS else text[:MAX_QUERY_CHARS] + "…",
                        datasource=_ref(target.get("datasource")),
                        hidden=bool(target.get("hide", False)),
                    )
                )
                break
    return found[:MAX_QUERIES_PER_PANEL]


def _panel(panel: dict[str, Any], row: str | None) -> PanelSummary:
    raw_id = panel.get("id")
    return PanelSummary(
        id=raw_id if isinstance(raw_id, int) else None,
        title=str(panel.get("title", "")),
        type=str(panel.get("type", "")),
        row=row,
        datasource=_ref(panel.get("datasource")),
        queries=_queries(panel),
    )


def flatten_panels(dashboard: dict[str, Any]) -> list[PanelSummary]:
    """Every panel with its row: top-level panels, the panels folded into collapsed rows, and the `rows` of
    dashboards older than schema 16."""
    found: list[PanelSummary] = []
    row: str | None = None
    for panel in dashboard.get("panels") or []:
        if not isinstance(panel, dict):
            continue
        if panel.get("type") == "row":
            row = str(panel.get("title", ""))
            found.extend(_panel(inner, row) for inner in panel.get("panels") or [] if isinstance(inner, dict))
            continue
        found.append(_panel(panel, row))
    for old_row in dashboard.get("rows") or []:
        if isinstance(old_row, dict):
            title = str(old_row.get("title", ""))
            found.extend(_panel(inner, title) for inner in old_row.get("panels") or [] if isinstance(inner, dict))
    return found


def dashboard_summary(answer: dict[str, Any], base_url: str, max_panels: int = MAX_PANELS) -> DashboardSummary:
    """GET /api/dashboards/uid/{uid}'s answer ({dashboard, meta}) as a summary of at most max_panels panels."""
    dashboard = answer.get("dashboard") or {}
    meta = answer.get("meta") or {}
    panels = flatten_panels(dashboard)
    kept = panels[:max_panels]
    note = None
    if len(panels) > max_panels:
        note = f"showing {max_panels} of {len(panels)} panels; open the dashboard in Grafana for the rest"
    version = dashboard.get("version")
    return DashboardSummary(
        uid=str(dashboard.get("uid", "")),
        title=str(dashboard.get("title", "")),
        url=absolute_url(base_url, str(meta.get("url", ""))),
        tags=[str(tag) for tag in dashboard.get("tags") or []],
        folder_uid=_opt(meta.get("folderUid")),
        folder_title=_opt(meta.get("folderTitle")),
        version=version if isinstance(version, int) else None,
        panels=kept,
        total_panels=len(panels),
        truncated=len(panels) > max_panels,
        note=note,
    )


def dashboard_hit(raw: dict[str, Any], base_url: str) -> DashboardHit:
    return DashboardHit(
        uid=str(raw.get("uid", "")),
        title=str(raw.get("title", "")),
        url=absolute_url(base_url, str(raw.get("url", ""))),
        folder_uid=_opt(raw.get("folderUid")),
        folder_title=_opt(raw.get("folderTitle")),
        tags=[str(tag) for tag in raw.get("tags") or []],
    )


def datasource(raw: dict[str, Any]) -> Datasource:
    """Only identity and URL: secureJsonData, passwords, basic-auth users and jsonData stay behind."""
    return Datasource(
        name=str(raw.get("name", "")),
        uid=str(raw.get("uid", "")),
        type=str(raw.get("type", "")),
        url=str(raw.get("url", "")),
        is_default=bool(raw.get("isDefault", False)),
    )


def absolute_url(base_url: str, path: str) -> str:
    """Grafana answers with paths (/d/uid/slug); a reader needs the whole address."""
    if not path or path.startswith(("http://", "https://")):
        return path
    return f"{base_url}{path if path.startswith('/') else '/' + path}"


def grid_position(index: int, count: int) -> dict[str, int]:
    """Two panels side by side on Grafana's 24-column grid; a lone last panel takes the whole width."""
    width = GRID_COLUMNS if count == 1 or (index == count - 1 and count % 2 == 1) else GRID_COLUMNS // 2
    return {"x": (index % 2) * (GRID_COLUMNS // 2), "y": (index // 2) * PANEL_HEIGHT, "w": width, "h": PANEL_HEIGHT}


def build_dashboard(
    title: str, queries: list[PanelQuery], datasource_ref: dict[str, str], tags: list[str]
) -> dict[str, Any]:
    """A new dashboard's JSON model: one time series panel per query. No id or uid: Grafana assigns them."""
    panels = []
    for index, query in enumerate(queries):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": query.title or (query.expr if len(query.expr) <= 80 else query.expr[:79] + "…"),
                "datasource": datasource_ref,
                "gridPos": grid_position(index, len(queries)),
                "targets": [{"refId": "A", "datasource": datasource_ref, "expr": query.expr, "range": True}],
                "fieldConfig": {"defaults": {"unit": query.unit} if query.unit else {}, "overrides": []},
                "options": {
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
            }
        )
    return {
        "title": title,
        "tags": tags,
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "panels": panels,
    }
