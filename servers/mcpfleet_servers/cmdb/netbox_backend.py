"""The ``netbox`` backend: NetBox's REST API, 3.x and 4.x.

Assets are devices, virtual machines, services and IP addresses, with ids ``<type>/<NetBox id>``. Lists page
with NetBox's limit/offset; the continue token holds which endpoint and offset come next, and one call reads
at most CMDB_MAX_PAGES_PER_CALL pages.

Versions: NetBox's version comes from ``/api/status/`` (``netbox-version``), asked once. It decides where the
changelog is (``/api/core/object-changes/`` from 4.1 on, ``/api/extras/object-changes/`` before); when the
version is unknown or the guess answers 404, the other path is tried and the one that answered is kept.
Shapes that differ are read either way: a device's role is ``role`` (4.0 on) or ``device_role`` (before), a
service's host is ``device``/``virtual_machine`` or the generic ``parent_object_type``/``parent`` (4.3 on).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.paging import Budget, Page, decode_token, encode_token, query_fingerprint
from mcpfleet_servers.base.toolkit import BackendUnavailable, InvalidArgument, NotFound, ToolFailure
from mcpfleet_servers.cmdb.backend import PageRequest
from mcpfleet_servers.cmdb.http import CmdbHttp, fit_budget, text_of
from mcpfleet_servers.cmdb.models import Asset, AssetFilters, ChangeRecord, Topology
from mcpfleet_servers.cmdb.rest_backend import bfs
from mcpfleet_servers.cmdb.settings import CmdbSettings
from mcpfleet_servers.cmdb.topology import fit_topology

CORE_CHANGES_PATH = "/api/core/object-changes/"  # NetBox 4.1 and later
EXTRAS_CHANGES_PATH = "/api/extras/object-changes/"  # before 4.1
CHANGELOG_IN_CORE_FROM = (4, 1)
STATUS_PATH = "/api/status/"
JOURNAL_PATH = "/api/extras/journal-entries/"
NARROW_ASSETS = "type, environment, status, owner or text"
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


def parse_version(value: Any) -> tuple[int, int] | None:
    """(major, minor) of a NetBox version such as ``3.7.8`` or ``4.2.1-Docker-3.1.0``; None when unreadable."""
    match = re.match(r"^v?(\d+)\.(\d+)", str(value or "").strip())
    return (int(match[1]), int(match[2])) if match else None


def _ref_id(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    number = value.get("id") if isinstance(value, dict) else None
    return number if isinstance(number, int) else None


# A relation found in NetBox: the other object's kind, the object, its name, the relation, and whether the
# edge goes from the node asked about to it (True) or the other way.
_Link = tuple[str, dict[str, Any], Any, str, bool]


@dataclass
class _Walk:
    """What one topology call may still ask NetBox, and what cut it."""

    requests_left: int
    notes: list[str] = field(default_factory=list)


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
        self._version: tuple[int, int] | None = None
        self._version_text: str | None = None
        self._version_asked = False
        self._changes_path: str | None = None  # the changelog path NetBox answered on

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    async def status(self) -> BackendStatus:
        timeout = self._settings.probe_timeout_seconds
        try:
            answer = await self._http.request("GET", STATUS_PATH, "NetBox's status", deadline_seconds=timeout)
        except ToolFailure as exc:
            return BackendStatus(self._http.label, False, str(exc))
        self._remember_version(answer)
        return BackendStatus(self._http.label, True, f"NetBox {self._version_text or '(version not given)'}")

    def _remember_version(self, answer: Any) -> None:
        text = answer.get("netbox-version") if isinstance(answer, dict) else None
        self._version_asked = True
        self._version = parse_version(text)
        self._version_text = str(text) if text else None

    async def netbox_version(self) -> tuple[int, int] | None:
        """(major, minor) from /api/status/, asked once; None when NetBox does not say or hides its status."""
        if not self._version_asked:
            try:
                answer = await self._http.request("GET", STATUS_PATH, "NetBox's status")
            except BackendUnavailable:
                raise
            except ToolFailure:
                answer = None  # 403 or 404: the changelog is then found by trying
            self._remember_version(answer)
        return self._version

    # ------------------------------------------------------------------ assets

    def to_asset(self, netbox_type: NetboxType, obj: dict[str, Any]) -> Asset:
        tags = [t for t in obj.get("tags") or [] if isinstance(t, dict)]
        custom = obj.get("custom_fields") if isinstance(obj.get("custom_fields"), dict) else {}
        environment = text_of((custom or {}).get(self._settings.netbox_environment_field))
        env_tags = [str(t["slug"])[4:] for t in tags if str(t.get("slug", "")).startswith("env-")]
        tenant = obj.get("tenant")
        attributes = {k: text for k in _ATTRIBUTES if (text := text_of(obj.get(k))) is not None}
        if "role" not in attributes and (role := text_of(obj.get("device_role"))) is not None:
            attributes["role"] = role  # NetBox before 4.0 calls a device's role device_role
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
        pages = 0
        while len(found) < wanted and index < len(types):
            if pages >= self._settings.max_pages_per_call:
                break
            pages += 1
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
        if token and note is None and len(found) < wanted:
            note = f"read {pages} NetBox pages, the most for one call (CMDB_MAX_PAGES_PER_CALL)"
        if token:
            note = f"{note or 'more items may exist'}; pass continue_token for more, or narrow with {NARROW_ASSETS}"
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
        walk = _Walk(requests_left=self._settings.max_pages_per_call - 1)
        nodes: dict[str, dict[str, Any]] = {}
        edges: list[tuple[str, str, str]] = []
        root = self._node(nodes, "service", found[0], found[0].get("name"))
        seen = {root: 0}
        queue = deque([(root, found[0])])
        while queue and len(nodes) < limit:
            node_id, obj = queue.popleft()
            if seen[node_id] >= depth:
                continue
            for other_id, other, edge in await self._neighbours(walk, nodes, node_id, obj):
                if edge not in edges:
                    edges.append(edge)
                if other_id not in seen:
                    seen[other_id] = seen[node_id] + 1
                    queue.append((other_id, other))
        topology = bfs(root, depth, nodes, edges, limit)
        if walk.notes:
            notes = "; ".join(note for note in (topology.note, *dict.fromkeys(walk.notes)) if note)
            topology = topology.model_copy(update={"truncated": True, "note": notes})
        return fit_topology(topology, self._budget.max_bytes)

    @staticmethod
    def _node(nodes: dict[str, dict[str, Any]], kind: str, obj: dict[str, Any], name: Any) -> str:
        node_id = f"{kind}/{obj.get('id')}"
        nodes.setdefault(
            node_id, {"type": kind, "name": str(name or obj.get("display") or node_id), "status": obj.get("status")}
        )
        return node_id

    async def _ask(self, walk: _Walk, path: str, what: str, params: list[tuple[str, str]]) -> Any:
        """One request of a topology walk, or None once the walk used CMDB_MAX_PAGES_PER_CALL of them."""
        if walk.requests_left <= 0:
            walk.notes.append(
                f"stopped after {self._settings.max_pages_per_call} NetBox requests (CMDB_MAX_PAGES_PER_CALL); "
                "ask with a smaller depth"
            )
            return None
        walk.requests_left -= 1
        return await self._http.request("GET", path, what, params=params or None)

    async def _listed(self, walk: _Walk, path: str, params: list[tuple[str, str]], what: str) -> list[dict[str, Any]]:
        limit = self._settings.max_topology_nodes
        answer = await self._ask(walk, path, what, [*params, ("limit", str(limit)), ("offset", "0")])
        if not isinstance(answer, dict):
            return []
        if answer.get("next"):
            walk.notes.append(f"{what}: only the first {limit} were read (CMDB_MAX_TOPOLOGY_NODES)")
        return [r for r in answer.get("results") or [] if isinstance(r, dict)]

    async def _neighbours(
        self, walk: _Walk, nodes: dict[str, dict[str, Any]], node_id: str, obj: dict[str, Any]
    ) -> list[tuple[str, dict[str, Any], tuple[str, str, str]]]:
        """What one node connects to in NetBox, each with the edge between them."""
        kind, _, number = node_id.partition("/")
        links: list[_Link] = []
        if kind == "service":
            links = self._service_links(obj)
        elif kind in ("device", "virtual-machine"):
            links = await self._host_links(walk, kind, number)
        elif kind in ("interface", "vm-interface"):
            links = await self._address_links(walk, kind, number)
        out: list[tuple[str, dict[str, Any], tuple[str, str, str]]] = []
        for other_kind, other, name, relation, outward in links:
            other_id = self._node(nodes, other_kind, other, name)
            edge = (node_id, other_id, relation) if outward else (other_id, node_id, relation)
            out.append((other_id, other, edge))
        return out

    def _service_links(self, service: dict[str, Any]) -> list[_Link]:
        links: list[_Link] = [
            (parent_kind, parent, parent.get("name"), "runs-on", True)
            for parent_kind, parent in self._service_parents(service)
        ]
        for address in service.get("ipaddresses") or []:
            if isinstance(address, dict):
                links.append(("ip-address", address, address.get("address"), "listens-on", True))
        return links

    async def _host_links(self, walk: _Walk, kind: str, number: str) -> list[_Link]:
        """A device's or VM's interfaces, the services on it and (VMs) its cluster. Listed objects are checked
        against the filter they were asked with: a NetBox that ignores a filter adds no false relations."""
        device = kind == "device"
        key = "device" if device else "virtual_machine"
        host = int(number) if number.isdigit() else -1
        path = "/api/dcim/interfaces/" if device else "/api/virtualization/interfaces/"
        links: list[_Link] = [
            ("interface" if device else "vm-interface", interface, interface.get("name"), "has-interface", True)
            for interface in await self._listed(walk, path, [(f"{key}_id", number)], f"interfaces of {kind}/{number}")
            if _ref_id(interface, key) in (None, host)
        ]
        for found in await self._listed(walk, SERVICE.path, [(f"{key}_id", number)], f"services of {kind}/{number}"):
            parents = self._service_parents(found)
            if not parents or any(k == kind and p.get("id") == host for k, p in parents):
                links.append(("service", found, found.get("name"), "runs-on", False))
        if not device:
            # A VM reached from a service is NetBox's brief form, without its cluster.
            full = await self._ask(walk, f"{VM.path}{number}/", f"asset {kind}/{number}", [])
            cluster = full.get("cluster") if isinstance(full, dict) else None
            if isinstance(cluster, dict):
                links.append(("cluster", cluster, cluster.get("name"), "member-of", True))
        return links

    async def _address_links(self, walk: _Walk, kind: str, number: str) -> list[_Link]:
        param = "interface_id" if kind == "interface" else "vminterface_id"
        assigned = "dcim.interface" if kind == "interface" else "virtualization.vminterface"
        owner = int(number) if number.isdigit() else -1
        return [
            ("ip-address", address, address.get("address"), "has-address", True)
            for address in await self._listed(walk, IP.path, [(param, number)], f"addresses of {kind}/{number}")
            if address.get("assigned_object_type") in (None, assigned)
            and address.get("assigned_object_id") in (None, owner)
        ]

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

    async def _changelog(
        self, params: list[tuple[str, str]], limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int | None, bool]:
        """One page of the changelog, wherever this NetBox keeps it (see the module docstring)."""
        if self._changes_path is not None:
            return await self._list(self._changes_path, "the changelog", params, limit, offset)
        version = await self.netbox_version()
        in_core = version is None or version >= CHANGELOG_IN_CORE_FROM
        first, other = (CORE_CHANGES_PATH, EXTRAS_CHANGES_PATH) if in_core else (EXTRAS_CHANGES_PATH, CORE_CHANGES_PATH)
        for path in (first, other):
            try:
                found = await self._list(path, "the changelog", params, limit, offset)
            except NotFound:
                continue
            self._changes_path = path
            return found
        raise ToolFailure(
            f"{self._http.label} has no changelog at {CORE_CHANGES_PATH} nor at {EXTRAS_CHANGES_PATH}; "
            "is it NetBox 3 or later, and may the token read change records?"
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
        results, count, more = await self._changelog(params, wanted, offset)
        records = [self._change(r) for r in results]
        kept = fit_budget([len(r.model_dump_json()) for r in records], self._budget.max_bytes)
        more = more or kept < len(records)
        token = encode_token(offset + kept, fingerprint) if more else None
        note = f"cut at {kept} items to stay within {self._budget.max_bytes} bytes" if kept < len(records) else None
        if token and note is None:
            note = f"showing {offset + 1}-{offset + kept}; pass continue_token for more"
        return Page[ChangeRecord](items=records[:kept], truncated=more, continue_token=token, total=count, note=note)
