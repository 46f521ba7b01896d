"""The ``netbox`` backend: NetBox's REST API (NetBox 4: /api/core/object-changes/ is the changelog).

Assets are devices, virtual machines, services and IP addresses, with ids ``<type>/<NetBox id>``. Lists page
with NetBox's limit/offset; the continue token holds which endpoint and offset come next.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.paging import Budget, Page, decode_token, encode_token, query_fingerprint
from mcpfleet_servers.base.toolkit import InvalidArgument, NotFound, ToolFailure
from mcpfleet_servers.cmdb.backend import PageRequest
from mcpfleet_servers.cmdb.http import CmdbHttp, fit_budget, text_of
from mcpfleet_servers.cmdb.models import Asset, AssetFilters, ChangeRecord, Topology
from mcpfleet_servers.cmdb.rest_backend import bfs
from mcpfleet_servers.cmdb.settings import CmdbSettings

CHANGES_PATH = "/api/core/object-changes/"
JOURNAL_PATH = "/api/extras/journal-entries/"
STATUS_CHANGED = "AssetStatusChanged"


@dataclass(frozen=True)
class NetboxType:
    type: str  # the asset type: device, virtual-machine, service, ip-address
    path: str
    content_type: str  # NetBox's <app_label>.<model>
    has_status: bool
    has_tenant: bool


DEVICE = NetboxType("device", "/api/dcim/devices/", "dcim.device", True, True)
VM = NetboxType("virtual-machine", "/api/virtualization/virtual-machines/", "virtualization.virtualmachine", True, True)
SERVICE = NetboxType("service", "/api/ipam/services/", "ipam.service", False, False)
IP = NetboxType("ip-address", "/api/ipam/ip-addresses/", "ipam.ipaddress", True, True)
TYPES = (DEVICE, VM, SERVICE, IP)
BY_TYPE = {t.type: t for t in TYPES}
BY_CONTENT_TYPE = {t.content_type: t for t in TYPES}
# The settable statuses in NetBox's own choices, per type (services have no status).
_DEVICE_STATUS = {"active": "active", "maintenance": "offline", "inactive": "offline", "retired": "decommissioning"}
_IP_STATUS = {"active": "active", "maintenance": "reserved", "inactive": "deprecated", "retired": "deprecated"}
STATUS_MAP = {"device": _DEVICE_STATUS, "virtual-machine": _DEVICE_STATUS, "ip-address": _IP_STATUS}
_ATTRIBUTES = (
    "site",
    "role",
    "device_role",
    "platform",
    "cluster",
    "primary_ip",
    "vcpus",
    "memory",
    "protocol",
    "device",
    "virtual_machine",
    "dns_name",
    "vrf",
    "description",
)


def parse_id(asset_id: str) -> tuple[NetboxType, int]:
    kind, _, number = asset_id.partition("/")
    netbox_type = BY_TYPE.get(kind)
    if netbox_type is None or not number.isdigit():
        raise InvalidArgument(
            "asset_id", f"{asset_id!r} is not a NetBox asset id; expected <type>/<id>, types: {', '.join(BY_TYPE)}"
        )
    return netbox_type, int(number)


def _time(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class NetboxCmdb:
    """Implements CmdbBackend on NetBox's REST API."""

    asset_types: tuple[str, ...] | None = tuple(BY_TYPE)

    def __init__(self, settings: CmdbSettings, budget: Budget) -> None:
        self._settings = settings
        self._budget = budget
        self._http = CmdbHttp(settings, "NetBox")

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    async def status(self) -> BackendStatus:
        return await self._http.status("/api/status/")

    # ------------------------------------------------------------------ assets

    def to_asset(self, netbox_type: NetboxType, obj: dict[str, Any]) -> Asset:
        tags = [t for t in obj.get("tags") or [] if isinstance(t, dict)]
        custom = obj.get("custom_fields") if isinstance(obj.get("custom_fields"), dict) else {}
        environment = text_of((custom or {}).get(self._settings.netbox_environment_field))
        env_tags = [str(t["slug"])[4:] for t in tags if str(t.get("slug", "")).startswith("env-")]
        tenant = obj.get("tenant")
        attributes = {k: text for k in _ATTRIBUTES if (text := text_of(obj.get(k))) is not None}
        if obj.get("ports"):
            attributes["ports"] = ",".join(str(p) for p in obj["ports"])
        return Asset(
            id=f"{netbox_type.type}/{obj.get('id')}",
            type=netbox_type.type,
            name=str(obj.get("name") or obj.get("address") or obj.get("display") or obj.get("id")),
            environment=environment or (env_tags[0] if env_tags else "unknown"),
            owner=text_of(tenant) or "unknown",
            status=text_of(obj.get("status")) or "active",
            labels={str(t.get("slug")): str(t.get("name") or t.get("slug")) for t in tags},
            attributes=attributes,
        )

    async def _list(
        self, path: str, what: str, params: list[tuple[str, str]], limit: int, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int | None, bool]:
        """One NetBox page: results, count, whether a next page exists."""
        answer = await self._http.request(
            "GET", path, what, params=[*params, ("limit", str(limit)), ("offset", str(offset))]
        )
        answer = answer if isinstance(answer, dict) else {}
        results = [r for r in answer.get("results") or [] if isinstance(r, dict)]
        count = answer.get("count") if isinstance(answer.get("count"), int) else None
        return results, count, bool(answer.get("next"))

    def _filters(self, filters: AssetFilters, netbox_type: NetboxType) -> list[tuple[str, str]] | None:
        """NetBox query parameters for the filters; None when this type cannot match them."""
        if (filters.status and not netbox_type.has_status) or (filters.owner and not netbox_type.has_tenant):
            return None
        params = [("ordering", "id")]
        if filters.status:
            params.append(("status", filters.status))
        if filters.owner:
            params.append(("tenant", filters.owner))
        if filters.environment:
            params.append((f"cf_{self._settings.netbox_environment_field}", filters.environment))
        if filters.text:
            params.append(("q", filters.text))
        return params

    async def query_assets(self, filters: AssetFilters, page: PageRequest) -> Page[Asset]:
        if filters.namespace is not None:
            raise InvalidArgument("namespace", "NetBox has no namespaces; filter by environment, owner or text")
        types = [t for t in TYPES if filters.type in (None, t.type) and self._filters(filters, t) is not None]
        fingerprint = query_fingerprint(tool="query_assets", **filters.model_dump())
        position = decode_token(page.token, fingerprint) or [0, 0]
        if not (isinstance(position, list) and len(position) == 2 and all(isinstance(p, int) for p in position)):
            raise InvalidArgument("continue_token", "not a position this server issued; start again without it")
        index, offset = position
        wanted = self._budget.items(page.limit)
        found: list[tuple[Asset, list[int]]] = []  # each asset with the position of the one after it
        total: int | None = None
        while len(found) < wanted and index < len(types):
            netbox_type = types[index]
            params = self._filters(filters, netbox_type) or []
            results, count, more = await self._list(
                netbox_type.path, f"{netbox_type.type} list", params, wanted - len(found), offset
            )
            total = count if len(types) == 1 else None
            for number, obj in enumerate(results, start=1):
                after = [index, offset + number] if more or number < len(results) else [index + 1, 0]
                found.append((self.to_asset(netbox_type, obj), after))
            if more and results:
                offset += len(results)
            else:
                index, offset = index + 1, 0
        kept = fit_budget([len(a.model_dump_json()) for a, _ in found], self._budget.max_bytes)
        cut = kept < len(found)
        next_position = found[kept - 1][1] if found and kept else [index, offset]
        token = encode_token(next_position, fingerprint) if next_position[0] < len(types) else None
        note = f"cut at {kept} items to stay within {self._budget.max_bytes} bytes" if cut else None
        if token and note is None:
            note = "more items may exist; pass continue_token for more"
        return Page[Asset](
            items=[a for a, _ in found[:kept]],
            truncated=token is not None,
            continue_token=token,
            total=total,
            note=note,
        )

    async def _object(self, asset_id: str) -> tuple[NetboxType, int, dict[str, Any]]:
        netbox_type, number = parse_id(asset_id)
        obj = await self._http.request("GET", f"{netbox_type.path}{number}/", f"asset {asset_id}")
        if not isinstance(obj, dict):
            raise ToolFailure(f"{self._http.label} answered {asset_id} with something that is not an object")
        return netbox_type, number, obj

    async def get_asset(self, asset_id: str) -> Asset:
        netbox_type, _, obj = await self._object(asset_id)
        return self.to_asset(netbox_type, obj)

    # ------------------------------------------------------------------ topology

    async def get_service_topology(self, service: str, namespace: str, depth: int) -> Topology:
        limit = self._settings.max_topology_nodes
        found, _, _ = await self._list(SERVICE.path, f"service {service}", [("name", service)], limit)
        if not found:
            raise NotFound(f"service {service} not found (no NetBox service of that name in {SERVICE.path})")
        nodes: dict[str, dict[str, Any]] = {}
        edges: list[tuple[str, str, str]] = []
        root = self._node(nodes, "service", found[0], found[0].get("name"))
        seen = {root: 0}
        queue = deque([(root, found[0])])
        while queue and len(nodes) < limit:
            node_id, obj = queue.popleft()
            if seen[node_id] >= depth:
                continue
            for other_id, other, edge in await self._neighbours(nodes, node_id, obj):
                if edge not in edges:
                    edges.append(edge)
                if other_id not in seen:
                    seen[other_id] = seen[node_id] + 1
                    queue.append((other_id, other))
        return bfs(root, depth, nodes, edges, limit)

    @staticmethod
    def _node(nodes: dict[str, dict[str, Any]], kind: str, obj: dict[str, Any], name: Any) -> str:
        node_id = f"{kind}/{obj.get('id')}"
        nodes.setdefault(
            node_id, {"type": kind, "name": str(name or obj.get("display") or node_id), "status": obj.get("status")}
        )
        return node_id

    async def _neighbours(
        self, nodes: dict[str, dict[str, Any]], node_id: str, obj: dict[str, Any]
    ) -> list[tuple[str, dict[str, Any], tuple[str, str, str]]]:
        """What one node connects to in NetBox, each with the edge between them."""
        kind, _, number = node_id.partition("/")
        limit = self._settings.max_topology_nodes
        out: list[tuple[str, dict[str, Any], tuple[str, str, str]]] = []

        def link(other_kind: str, other: dict[str, Any], name: Any, source: str | None, relation: str) -> None:
            other_id = self._node(nodes, other_kind, other, name)
            edge = (source or node_id, other_id if source is None else node_id, relation)
            out.append((other_id, other, edge))

        async def listed(path: str, param: str, what: str) -> list[dict[str, Any]]:
            results, _, _ = await self._list(path, what, [(param, number)], limit)
            return results

        if kind == "service":
            for parent_kind, parent in self._service_parents(obj):
                link(parent_kind, parent, parent.get("name"), None, "runs-on")
            for address in obj.get("ipaddresses") or []:
                if isinstance(address, dict):
                    link("ip-address", address, address.get("address"), None, "listens-on")
        elif kind in ("device", "virtual-machine"):
            device = kind == "device"
            interfaces = await listed(
                "/api/dcim/interfaces/" if device else "/api/virtualization/interfaces/",
                "device_id" if device else "virtual_machine_id",
                f"interfaces of {node_id}",
            )
            for interface in interfaces:
                link("interface" if device else "vm-interface", interface, interface.get("name"), None, "has-interface")
            services = await listed(
                SERVICE.path, "device_id" if device else "virtual_machine_id", f"services of {node_id}"
            )
            for found in services:
                link("service", found, found.get("name"), str(f"service/{found.get('id')}"), "runs-on")
            if not device:
                # A VM reached from a service is NetBox's brief form, without its cluster.
                full = await self._http.request("GET", f"{VM.path}{number}/", f"asset {node_id}")
                cluster = full.get("cluster") if isinstance(full, dict) else None
                if isinstance(cluster, dict):
                    link("cluster", cluster, cluster.get("name"), None, "member-of")
        elif kind in ("interface", "vm-interface"):
            param = "interface_id" if kind == "interface" else "vminterface_id"
            for address in await listed(IP.path, param, f"addresses of {node_id}"):
                link("ip-address", address, address.get("address"), None, "has-address")
        return out

    @staticmethod
    def _service_parents(service: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The device or VM a service runs on: ``device``/``virtual_machine``, or NetBox 4.3's ``parent``."""
        found = [
            (kind, service.get(key)) for kind, key in (("device", "device"), ("virtual-machine", "virtual_machine"))
        ]
        parent_type = BY_CONTENT_TYPE.get(str(service.get("parent_object_type") or ""))
        if parent_type is not None:
            found.append((parent_type.type, service.get("parent")))
        return [(kind, obj) for kind, obj in found if isinstance(obj, dict)]

    # ------------------------------------------------------------------ changes

    async def update_asset_status(self, asset_id: str, status: str, reason: str, actor: str) -> ChangeRecord:
        netbox_type, number, obj = await self._object(asset_id)
        mapping = STATUS_MAP.get(netbox_type.type)
        if mapping is None:
            raise InvalidArgument(
                "asset_id", f"NetBox {netbox_type.type}s have no status; set it on the device or virtual machine"
            )
        before = text_of(obj.get("status")) or "unknown"
        after = mapping[status]
        await self._http.request(
            "PATCH", f"{netbox_type.path}{number}/", f"asset {asset_id}", json_body={"status": after}
        )
        comments = f"status {before} -> {after} ({status}): {reason} (by {actor})"
        entry = {
            "assigned_object_type": netbox_type.content_type,
            "assigned_object_id": number,
            "kind": "info" if status == "active" else "warning",
            "comments": comments,
        }
        created = await self._http.request("POST", JOURNAL_PATH, f"a journal entry on {asset_id}", json_body=entry)
        created = created if isinstance(created, dict) else {}
        return ChangeRecord(
            id=f"journal/{created.get('id', 'unknown')}",
            asset=asset_id,
            time=_time(created.get("created")) if created.get("created") else datetime.now(UTC),
            actor=actor,
            action=STATUS_CHANGED,
            from_value=before,
            to_value=after,
            reason=reason,
            source="netbox-journal",
        )

    def _change(self, data: dict[str, Any]) -> ChangeRecord:
        content_type = str(data.get("changed_object_type") or "")
        netbox_type = BY_CONTENT_TYPE.get(content_type)
        kind = netbox_type.type if netbox_type else content_type
        pre = data.get("prechange_data") if isinstance(data.get("prechange_data"), dict) else {}
        post = data.get("postchange_data") if isinstance(data.get("postchange_data"), dict) else {}
        changed = sorted(k for k in set(pre or {}) | set(post or {}) if (pre or {}).get(k) != (post or {}).get(k))
        key = "status" if "status" in changed else None
        return ChangeRecord(
            id=f"change/{data.get('id')}",
            asset=f"{kind}/{data.get('changed_object_id')}",
            time=_time(data.get("time")),
            actor=str(data.get("user_name") or "unknown"),
            action=text_of(data.get("action")) or "update",
            from_value=text_of((pre or {}).get(key)) if key else None,
            to_value=text_of((post or {}).get(key)) if key else None,
            reason=f"changed: {', '.join(changed)}" if changed else str(data.get("object_repr") or ""),
            source="netbox-changelog",
        )

    async def get_change_records(
        self, asset_id: str | None, since: datetime | None, until: datetime | None, page: PageRequest
    ) -> Page[ChangeRecord]:
        params = [("ordering", "-time")]
        if asset_id is not None:
            netbox_type, number = parse_id(asset_id)
            params += [("changed_object_type", netbox_type.content_type), ("changed_object_id", str(number))]
        if since is not None:
            params.append(("time_after", since.isoformat()))
        if until is not None:
            params.append(("time_before", until.isoformat()))
        fingerprint = query_fingerprint(tool="get_change_records", asset=asset_id, since=since, until=until)
        offset = decode_token(page.token, fingerprint) or 0
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgument("continue_token", "not a position this server issued; start again without it")
        wanted = self._budget.items(page.limit)
        results, count, more = await self._list(CHANGES_PATH, "the changelog", params, wanted, offset)
        records = [self._change(r) for r in results]
        kept = fit_budget([len(r.model_dump_json()) for r in records], self._budget.max_bytes)
        more = more or kept < len(records)
        token = encode_token(offset + kept, fingerprint) if more else None
        note = f"cut at {kept} items to stay within {self._budget.max_bytes} bytes" if kept < len(records) else None
        if token and note is None:
            note = f"showing {offset + 1}-{offset + kept}; pass continue_token for more"
        return Page[ChangeRecord](items=records[:kept], truncated=more, continue_token=token, total=count, note=note)
