"""The ``rest`` backend: a CMDB's generic REST API (the seed's /api/v1/assets, /api/v1/topology/{service}, ...).

The API pages with ``page``/``limit`` (a ``next`` cursor is followed when it sends one); the continue token
holds the API's page or cursor plus how many of its items were already returned, so a page cut by the output
budget goes on where it stopped. Topology depth is applied here: the API answers the whole graph.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.paging import Budget, Page, decode_token, encode_token, query_fingerprint
from mcpfleet_servers.base.toolkit import InvalidArgument, NotFound, ToolFailure
from mcpfleet_servers.cmdb.backend import PageRequest
from mcpfleet_servers.cmdb.http import CmdbHttp, fit_budget, text_of
from mcpfleet_servers.cmdb.models import Asset, AssetFilters, ChangeRecord, Topology, TopologyEdge, TopologyNode
from mcpfleet_servers.cmdb.settings import CmdbSettings
from mcpfleet_servers.cmdb.topology import fit_topology, undirected, within_hops

M = TypeVar("M", Asset, ChangeRecord)
_ASSET_KEYS = {"id", "name", "type", "asset_type", "namespace", "environment", "owner", "status", "labels", "tags"}
_STATUS_CHANGED = "AssetStatusChanged"
NARROW_ASSETS = "type, environment, status, owner or text"


def _first(data: dict[str, Any], *keys: str) -> Any:
    return next((data[k] for k in keys if data.get(k) not in (None, "")), None)


def to_asset(data: dict[str, Any]) -> Asset:
    labels = data.get("labels") if isinstance(data.get("labels"), dict) else data.get("tags")
    attributes = {k: text for k, v in data.items() if k not in _ASSET_KEYS and (text := text_of(v)) is not None}
    return Asset(
        id=str(data.get("id")),
        type=text_of(_first(data, "type", "asset_type")) or "unknown",
        name=str(data.get("name") or data.get("id")),
        namespace=text_of(data.get("namespace")),
        environment=text_of(data.get("environment")) or "unknown",
        owner=text_of(data.get("owner")) or "unknown",
        status=text_of(data.get("status")) or "unknown",
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        attributes=attributes,
    )


def _time(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_change(data: dict[str, Any], asset: str | None = None) -> ChangeRecord:
    return ChangeRecord(
        id=str(data.get("id")),
        asset=str(_first(data, "asset_id", "asset") or asset or "unknown"),
        time=_time(_first(data, "timestamp", "time", "created_at", "changed_at")),
        actor=str(_first(data, "actor", "user", "changed_by", "operator") or "unknown"),
        action=str(_first(data, "action", "change_type", "type") or _STATUS_CHANGED),
        from_value=text_of(_first(data, "from_value", "old_value", "from_status", "old_status")),
        to_value=text_of(_first(data, "to_value", "new_value", "to_status", "new_status")),
        reason=str(_first(data, "reason", "description", "comment") or ""),
        source="cmdb",
    )


def _items(answer: Any, key: str) -> list[dict[str, Any]]:
    raw = answer.get(key) if isinstance(answer, dict) else answer
    if raw is None and isinstance(answer, dict):
        raw = answer.get("items") or answer.get("results") or answer.get("data")
    return [i for i in raw or [] if isinstance(i, dict)]


class RestCmdb:
    """Implements CmdbBackend on a generic CMDB REST API; paths and auth from CmdbSettings."""

    asset_types: tuple[str, ...] | None = None  # the CMDB defines its own types

    def __init__(self, settings: CmdbSettings, budget: Budget) -> None:
        self._settings = settings
        self._budget = budget
        self._http = CmdbHttp(settings, "CMDB")

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    async def status(self) -> BackendStatus:
        return await self._http.status(self._settings.assets_path)

    def _asset_path(self, asset_id: str) -> str:
        return self._settings.asset_path.replace("{id}", quote(asset_id, safe=""))

    async def _paged(
        self,
        path: str,
        key: str,
        params: list[tuple[str, str]],
        page: PageRequest,
        fingerprint: str,
        convert: Callable[[dict[str, Any]], M],
        narrow: str,
    ) -> Page[M]:
        """One page of the API's list, converted: exactly one API page is read per call. The token holds the
        API's page or cursor, its page size and how many of its items were already returned."""
        wanted = self._budget.items(page.limit)
        position = decode_token(page.token, fingerprint) or {"page": 1, "size": wanted, "skip": 0}
        if not isinstance(position, dict) or not all(isinstance(position.get(k), int) for k in ("size", "skip")):
            raise InvalidArgument("continue_token", "not a position this server issued; start again without it")
        size, skip = int(position["size"]), int(position["skip"])
        where: list[tuple[str, str]] = (
            [("cursor", str(position["cursor"]))] if "cursor" in position else [("page", str(position["page"]))]
        )
        answer = await self._http.request("GET", path, key, params=[*params, *where, ("limit", str(size))])
        meta = answer if isinstance(answer, dict) else {}
        total = meta.get("total") if isinstance(meta.get("total"), int) else None
        items = _items(answer, key)
        # More than asked for: the API ignores `limit` and answered its whole list; it is then walked through
        # by `skip` (each call reads it again), never by asking for page 2 of it.
        unpaged = len(items) > size
        items = items[: self._settings.max_objects_per_kind] if unpaged else items
        fresh = [convert(item) for item in items[skip : skip + wanted]]
        kept = fit_budget([len(item.model_dump_json()) for item in fresh], self._budget.max_bytes)
        note = f"cut at {kept} items to stay within {self._budget.max_bytes} bytes" if kept < len(fresh) else None
        next_position: dict[str, Any] | None = None
        if skip + kept < len(items):
            next_position = {**position, "skip": skip + kept}
        elif unpaged:
            next_position = None
        elif meta.get("next"):
            next_position = {"cursor": str(meta["next"]), "size": size, "skip": 0}
        elif "page" in position:
            next_position = self._next_page(int(position["page"]), size, len(items), total)
        token = encode_token(next_position, fingerprint) if next_position else None
        if token and note is None:
            note = "more items exist; pass continue_token for more"
        if token:
            note = f"{note}, or narrow with {narrow}"
        return Page[M](items=fresh[:kept], truncated=token is not None, continue_token=token, total=total, note=note)

    def _next_page(self, number: int, size: int, returned: int, total: int | None) -> dict[str, Any] | None:
        """The API page after page ``number`` (of ``size`` items, ``returned`` of them in it), or None at the end.

        An API that caps its page size answers fewer items than asked while more exist (``total`` says so): the
        pages go on in its size, which is only possible where the pages so far end on a multiple of it.
        """
        seen = (number - 1) * size + returned
        more = seen < total if total is not None else returned >= size
        if not more or returned == 0:
            return None  # an empty page ends the list whatever `total` claims: never a loop of empty pages
        if returned >= size:
            return {"page": number + 1, "size": size, "skip": 0}
        if (number - 1) * size % returned:
            raise ToolFailure(
                f"{self._http.label} answered page {number} with {returned} items where {size} were asked and "
                f"{total} exist; its page size changed on the way: start again without continue_token"
            )
        return {"page": seen // returned + 1, "size": returned, "skip": 0}

    async def query_assets(self, filters: AssetFilters, page: PageRequest) -> Page[Asset]:
        if filters.namespace is not None:
            raise InvalidArgument("namespace", "the rest backend has no namespaces; filter by environment or text")
        params = [
            (name, value)
            for name, value in (
                ("asset_type", filters.type),
                ("environment", filters.environment),
                ("status", filters.status),
                ("owner", filters.owner),
                ("q", filters.text),
            )
            if value is not None
        ]
        fingerprint = query_fingerprint(tool="query_assets", **filters.model_dump())
        return await self._paged(
            self._settings.assets_path, "assets", params, page, fingerprint, to_asset, NARROW_ASSETS
        )

    async def get_asset(self, asset_id: str) -> Asset:
        answer = await self._http.request("GET", self._asset_path(asset_id), f"asset {asset_id}")
        data = answer.get("asset", answer) if isinstance(answer, dict) else None
        if not isinstance(data, dict) or data.get("id") is None:
            raise ToolFailure(f"{self._http.label} answered asset {asset_id} without an id")
        return to_asset(data)

    async def get_service_topology(self, service: str, namespace: str, depth: int) -> Topology:
        path = self._settings.topology_path.replace("{service}", quote(service, safe=""))
        answer = await self._http.request("GET", path, f"service {service}")
        answer = answer if isinstance(answer, dict) else {}
        nodes = {str(n.get("id")): n for n in _items(answer, "nodes")}
        if not nodes:
            raise NotFound(f"service {service} not found (the topology has no nodes)")
        root = next((i for i, n in nodes.items() if n.get("name") == service or i == service), next(iter(nodes)))
        edges = [
            (str(e.get("source")), str(e.get("target")), str(e.get("type") or e.get("relation") or "depends-on"))
            for e in _items(answer, "edges")
        ]
        return fit_topology(bfs(root, depth, nodes, edges, self._settings.max_topology_nodes), self._budget.max_bytes)

    async def update_asset_status(self, asset_id: str, status: str, reason: str, actor: str) -> ChangeRecord:
        before = await self.get_asset(asset_id)
        path = self._settings.status_path.replace("{id}", quote(asset_id, safe=""))
        body = {"status": status, "reason": reason, "actor": actor}
        answer = await self._http.request(self._settings.status_method, path, f"asset {asset_id}", json_body=body)
        change = answer.get("change") or answer.get("change_record") if isinstance(answer, dict) else None
        if isinstance(change, dict):
            return to_change(change, asset_id)
        latest = await self.get_change_records(asset_id, None, None, PageRequest(limit=1))
        if latest.items:
            return latest.items[0]
        now = datetime.now(UTC)
        return ChangeRecord(
            id=f"{asset_id}@{now.isoformat()}",
            asset=asset_id,
            time=now,
            actor=actor,
            action=_STATUS_CHANGED,
            from_value=before.status,
            to_value=status,
            reason=reason,
            source="cmdb",
        )

    async def get_change_records(
        self, asset_id: str | None, since: datetime | None, until: datetime | None, page: PageRequest
    ) -> Page[ChangeRecord]:
        params = [
            (name, value)
            for name, value in (
                ("asset_id", asset_id),
                ("since", since.isoformat() if since else None),
                ("until", until.isoformat() if until else None),
            )
            if value is not None
        ]
        fingerprint = query_fingerprint(tool="get_change_records", asset=asset_id, since=since, until=until)
        found = await self._paged(
            self._settings.changes_path,
            "changes",
            params,
            page,
            fingerprint,
            lambda item: to_change(item, asset_id),
            "asset_id, since or until",
        )
        # The API may ignore since/until; the range holds either way.
        found.items = [
            r for r in found.items if (since is None or r.time >= since) and (until is None or r.time <= until)
        ]
        return found


def bfs(
    root: str,
    depth: int,
    nodes: dict[str, dict[str, Any]],
    edges: list[tuple[str, str, str]],
    max_nodes: int,
) -> Topology:
    """The part of a graph within ``depth`` hops of ``root``, following edges both ways, at most max_nodes."""
    seen, truncated = within_hops(root, undirected((source, target) for source, target, _ in edges), depth, max_nodes)
    found = [
        TopologyNode(
            id=node_id,
            type=text_of(nodes.get(node_id, {}).get("type")) or "unknown",
            name=str(nodes.get(node_id, {}).get("name") or node_id),
            namespace=text_of(nodes.get(node_id, {}).get("namespace")),
            status=text_of(nodes.get(node_id, {}).get("status")) or "unknown",
            depth=hops,
        )
        for node_id, hops in seen.items()
    ]
    links = [
        TopologyEdge(source=s, target=t, relation=r.lower().replace("_", "-"))
        for s, t, r in edges
        if s in seen and t in seen
    ]
    note = f"cut at {max_nodes} nodes (CMDB_MAX_TOPOLOGY_NODES)" if truncated else None
    return Topology(service=root, depth=depth, nodes=found, edges=links, truncated=truncated, note=note)
