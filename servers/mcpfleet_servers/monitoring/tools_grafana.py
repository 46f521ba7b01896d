"""The Grafana tools: find and summarise dashboards, list data sources (SAFE); create a dashboard or an
annotation (MEDIUM: they add to what people see, and neither overwrites nor deletes anything)."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from pydantic import BaseModel, Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.paging import Budget, Page, paginate, query_fingerprint
from mcpfleet_servers.base.toolkit import InvalidArgument, NotFound, ToolFailure, Toolset
from mcpfleet_servers.monitoring.client import BackendRejected, HttpBackend
from mcpfleet_servers.monitoring.grafana import (
    DashboardHit,
    DashboardSummary,
    Datasource,
    PanelQuery,
    absolute_url,
    build_dashboard,
    dashboard_hit,
    dashboard_summary,
    datasource,
)
from mcpfleet_servers.monitoring.timeparse import TIME_HELP, parse_time
from mcpfleet_servers.monitoring.tools_prometheus import ContinueArg, LimitArg

# Grafana's search returns at most this many hits per request; more means the query should be narrower.
SEARCH_LIMIT = 1000
MAX_DATASOURCES = 500
_UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")

UidArg = Annotated[str, Field(min_length=1, max_length=40, description="The dashboard's uid (search_dashboards).")]
TagsArg = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]] | None, Field(max_length=20, description="Tags.")
]


class DashboardCreated(BaseModel):
    uid: str
    url: str
    title: str
    panels: int
    folder_uid: str | None
    note: str


class AnnotationCreated(BaseModel):
    id: int | None
    time: float = Field(description="Unix seconds.")
    time_end: float | None = None
    dashboard_uid: str | None = None
    note: str


def _check_uid(uid: str, field: str) -> None:
    if not _UID.match(uid):
        raise InvalidArgument(field, f"{uid!r} is not a Grafana uid (letters, digits, '-' and '_', at most 40)")


async def default_prometheus(grafana: HttpBackend, uid: str | None) -> dict[str, str]:
    """The data source reference of new panels: the given uid, else the default Prometheus data source."""
    if uid is not None:
        _check_uid(uid, "datasource_uid")
        try:
            found = await grafana.request("GET", f"/api/datasources/uid/{uid}")
        except NotFound as exc:
            raise InvalidArgument(
                "datasource_uid", f"Grafana has no data source {uid!r}; see list_datasources"
            ) from exc
        return {"type": str((found or {}).get("type", "prometheus")), "uid": uid}
    sources = [datasource(raw) for raw in (await grafana.request("GET", "/api/datasources") or [])[:MAX_DATASOURCES]]
    candidates = sorted((s for s in sources if s.type == "prometheus"), key=lambda s: (not s.is_default, s.name))
    if not candidates:
        raise ToolFailure(f"{grafana.label} has no Prometheus data source; pass datasource_uid (list_datasources)")
    return {"type": "prometheus", "uid": candidates[0].uid}


def register_grafana_reads(toolset: Toolset, grafana: HttpBackend, budget: Budget) -> None:
    base_url = grafana.url

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="Search dashboards")
    async def search_dashboards(
        query: Annotated[str | None, Field(max_length=256, description="Words in the dashboard title.")] = None,
        tag: TagsArg = None,
        folder: Annotated[str | None, Field(max_length=40, description="Only dashboards in this folder (uid).")] = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
    ) -> Page[DashboardHit]:
        """Grafana dashboards matching a title query, tags (all of them) and a folder, by title. Paged."""
        params: list[tuple[str, str]] = [("type", "dash-db"), ("limit", str(SEARCH_LIMIT))]
        if query:
            params.append(("query", query))
        params.extend(("tag", value) for value in tag or [])
        if folder is not None:
            _check_uid(folder, "folder")
            params.append(("folderUIDs", folder))
        answer = await grafana.request("GET", "/api/search", params=params)
        hits = [dashboard_hit(raw, base_url) for raw in (answer or [])[:SEARCH_LIMIT] if isinstance(raw, dict)]
        hits.sort(key=lambda hit: (hit.title.lower(), hit.uid))
        page = paginate(
            hits,
            limit=limit,
            token=continue_token,
            budget=budget,
            fingerprint=query_fingerprint(q=query, t=tag, f=folder),
        )
        if len(hits) >= SEARCH_LIMIT:
            page.note = f"Grafana returned its maximum of {SEARCH_LIMIT} dashboards; narrow with query, tag or folder"
        return page

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="Summarise a dashboard")
    async def get_dashboard_summary(uid: UidArg) -> DashboardSummary:
        """A dashboard's title, tags, folder and panels (rows and collapsed rows included), each with its
        type, data source and query expressions (PromQL expr, rawSql or query) — not the whole JSON."""
        _check_uid(uid, "uid")
        try:
            answer = await grafana.request("GET", f"/api/dashboards/uid/{uid}")
        except NotFound as exc:
            raise NotFound(f"no Grafana dashboard with uid {uid!r}; search_dashboards lists them") from exc
        return dashboard_summary(answer or {}, base_url)

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="List data sources")
    async def list_datasources(limit: LimitArg = None, continue_token: ContinueArg = None) -> Page[Datasource]:
        """Grafana's data sources: name, uid, type, URL and whether it is the default. Credentials never."""
        answer = await grafana.request("GET", "/api/datasources")
        sources = [datasource(raw) for raw in (answer or [])[:MAX_DATASOURCES] if isinstance(raw, dict)]
        sources.sort(key=lambda s: (not s.is_default, s.name.lower()))
        return paginate(sources, limit=limit, token=continue_token, budget=budget, fingerprint=query_fingerprint())


def register_grafana(toolset: Toolset, grafana: HttpBackend, budget: Budget) -> None:
    """Every Grafana tool; only called when MON_GRAFANA_URL is set."""
    register_grafana_reads(toolset, grafana, budget)
    register_grafana_writes(toolset, grafana)


def register_grafana_writes(toolset: Toolset, grafana: HttpBackend) -> None:
    base_url = grafana.url

    @toolset.tool(risk=Risk.MEDIUM, read_only=False, title="Create a dashboard")
    async def create_dashboard(
        title: Annotated[str, Field(min_length=1, max_length=256, description="The new dashboard's title.")],
        queries: Annotated[
            list[PanelQuery], Field(min_length=1, max_length=24, description="One time series panel per query.")
        ],
        folder_uid: Annotated[
            str | None, Field(max_length=40, description="Folder to create it in (uid); default: General.")
        ] = None,
        tags: TagsArg = None,
        datasource_uid: Annotated[
            str | None, Field(max_length=40, description="Data source of the panels; default: the default Prometheus.")
        ] = None,
    ) -> DashboardCreated:
        """Create a Grafana dashboard with one time series panel per PromQL query, two per row (MEDIUM). Never
        overwrites: a dashboard with the same title in the folder is an error naming title."""
        if folder_uid is not None:
            _check_uid(folder_uid, "folder_uid")
        ref = await default_prometheus(grafana, datasource_uid)
        body: dict[str, Any] = {
            "dashboard": build_dashboard(title, queries, ref, list(tags or [])),
            "overwrite": False,
            "message": "created by the mcpfleet monitoring server",
        }
        if folder_uid is not None:
            body["folderUid"] = folder_uid
        try:
            answer = await grafana.request("POST", "/api/dashboards/db", json_body=body)
        except BackendRejected as exc:
            if exc.status == 412:
                raise InvalidArgument("title", f"Grafana refused it: {exc.message}; choose another title") from exc
            if folder_uid is not None and "folder" in exc.message.lower():
                raise InvalidArgument("folder_uid", f"Grafana refused it: {exc.message}") from exc
            raise
        except NotFound as exc:
            if folder_uid is not None:
                raise InvalidArgument("folder_uid", f"Grafana has no folder {folder_uid!r}") from exc
            raise
        answer = answer or {}
        uid = str(answer.get("uid", ""))
        return DashboardCreated(
            uid=uid,
            url=absolute_url(base_url, str(answer.get("url", ""))),
            title=title,
            panels=len(queries),
            folder_uid=folder_uid,
            note=f"created with {len(queries)} panels; get_dashboard_summary(uid={uid!r}) shows them",
        )

    @toolset.tool(risk=Risk.MEDIUM, read_only=False, title="Create an annotation")
    async def create_annotation(
        text: Annotated[str, Field(min_length=1, max_length=4096, description="What happened, e.g. 'deployed v1.2'.")],
        tags: TagsArg = None,
        dashboard_uid: Annotated[
            str | None, Field(max_length=40, description="Only on this dashboard; default: an organisation-wide one.")
        ] = None,
        time: Annotated[str | None, Field(max_length=64, description=f"When: {TIME_HELP}. Default now.")] = None,
        time_end: Annotated[
            str | None, Field(max_length=64, description=f"End of a region annotation: {TIME_HELP}.")
        ] = None,
    ) -> AnnotationCreated:
        """Mark a moment (or a region, with time_end) on Grafana's graphs, e.g. a deploy or an incident (MEDIUM)."""
        now = _now()
        start = parse_time(time, "time", now) if time is not None else now
        end = parse_time(time_end, "time_end", now) if time_end is not None else None
        if end is not None and end < start:
            raise InvalidArgument("time_end", "must not be before time")
        if dashboard_uid is not None:
            _check_uid(dashboard_uid, "dashboard_uid")
        body: dict[str, Any] = {"text": text, "tags": list(tags or []), "time": int(start * 1000)}
        if end is not None:
            body["timeEnd"] = int(end * 1000)
        if dashboard_uid is not None:
            body["dashboardUID"] = dashboard_uid
        try:
            answer = await grafana.request("POST", "/api/annotations", json_body=body)
        except (NotFound, BackendRejected) as exc:
            if dashboard_uid is not None and (isinstance(exc, NotFound) or "dashboard" in exc.message.lower()):
                raise InvalidArgument("dashboard_uid", f"Grafana refused it: {exc}") from exc
            raise
        raw_id = (answer or {}).get("id")
        return AnnotationCreated(
            id=raw_id if isinstance(raw_id, int) else None,
            time=start,
            time_end=end,
            dashboard_uid=dashboard_uid,
            note="annotation added" + (f" to dashboard {dashboard_uid}" if dashboard_uid else " to the organisation"),
        )


def _now() -> float:
    return time.time()
