"""The ``kubernetes`` backend: the cluster itself is the CMDB.

Every API call goes through ``request``, which classifies failures once: unreachable or 5xx ->
BackendUnavailable, 404 -> NotFound naming the asset, 403 -> Refused naming the missing permission.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from mcpfleet_servers.base.kube import api_client, call_json
from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.paging import Budget, Page, paginate, query_fingerprint
from mcpfleet_servers.base.toolkit import BackendUnavailable, NotFound, ToolFailure
from mcpfleet_servers.cmdb.audit_source import AuditSource
from mcpfleet_servers.cmdb.backend import PageRequest
from mcpfleet_servers.cmdb.changes import event_record, revision_records
from mcpfleet_servers.cmdb.kinds import (
    ASSET_KINDS,
    BY_KIND,
    DEPLOYMENT,
    EVENT,
    INGRESS,
    NAMESPACE,
    NODE,
    POD,
    REPLICASET,
    SERVICE,
    STATUS_ANNOTATION,
    STATUS_REASON_ANNOTATION,
    WORKLOADS,
    Kind,
    asset_id,
    parse_asset_id,
    status_of,
    to_asset,
)
from mcpfleet_servers.cmdb.models import Asset, AssetFilters, ChangeRecord, Topology
from mcpfleet_servers.cmdb.settings import CmdbSettings
from mcpfleet_servers.cmdb.topology import Objects, fit_topology, walk

MERGE_PATCH = "application/merge-patch+json"
EVENT_SOURCE = "mcpfleet-cmdb"
# Cluster-scoped assets (nodes, namespaces) get their events here, as kubectl does for nodes.
CLUSTER_EVENT_NAMESPACE = "default"
STATUS_CHANGED = "AssetStatusChanged"
NARROW_ASSETS = "type, namespace, environment, status, owner or text"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _now_micro() -> str:
    """A MicroTime: change records made within one second still sort in the order they happened."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubernetesCmdb:
    """Implements CmdbBackend on one cluster."""

    asset_types: tuple[str, ...] | None = tuple(kind.type for kind in ASSET_KINDS)

    def __init__(self, settings: CmdbSettings, budget: Budget) -> None:
        self._settings = settings
        self._budget = budget
        self._api: k8s.ApiClient | None = None
        self._server = "Kubernetes API"
        self._config_error: str | None = None
        self._audit = AuditSource(settings)

    async def start(self) -> None:
        """Load credentials and create the audit client (no network); a missing config is reported on use."""
        await self._audit.start()
        try:
            self._api = await api_client(self._settings.kubeconfig_path, self._settings.context)
            self._server = f"Kubernetes API at {self._api.configuration.host}"
        except (k8s_config.ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            self._config_error = str(exc)

    async def close(self) -> None:
        await self._audit.close()
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def status(self) -> BackendStatus:
        timeout = self._settings.probe_timeout_seconds
        try:
            version = await asyncio.wait_for(
                self.request("GET", "/version", "the version", request_timeout=timeout), timeout + 1
            )
        except ToolFailure as exc:
            return BackendStatus(self._server, False, str(exc))
        except TimeoutError:
            return BackendStatus(self._server, False, f"no answer within {timeout}s")
        return BackendStatus(self._server, True, f"Kubernetes {version.get('gitVersion', 'unknown version')}")

    # ------------------------------------------------------------------ transport

    async def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        verb: str = "get",
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """One API call; ``what`` names the object for messages (``deployment/shop/web``)."""
        if self._api is None:
            raise BackendUnavailable(
                "Kubernetes API", f"no usable kubeconfig or in-cluster credentials: {self._config_error}"
            )
        return await call_json(
            self._api,
            method,
            path,
            what=what,
            server=self._server,
            denied=lambda message: (
                f"the server's ServiceAccount may not {verb} {path}: {message}. Grant it in the MCPServer's "
                "spec.rbac (see docs/cmdb.md for the rules the kubernetes backend needs)."
            ),
            request_timeout=request_timeout or self._settings.request_timeout_seconds,
            query=query,
            body=body,
            content_type=content_type,
        )

    async def _list(self, kind: Kind, namespace: str | None = None) -> list[dict[str, Any]]:
        items, _ = await self._list_page(kind, namespace)
        return items

    async def _list_page(self, kind: Kind, namespace: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """One list call of at most CMDB_MAX_OBJECTS_PER_KIND objects, and whether the API server holds more."""
        limit = self._settings.max_objects_per_kind
        answer = await self.request(
            "GET", kind.path(namespace), f"{kind.kind} list", verb="list", query=[("limit", str(limit))]
        )
        items = answer.get("items") or []
        cut = bool((answer.get("metadata") or {}).get("continue")) or len(items) > limit
        return [i for i in items[:limit] if isinstance(i, dict)], cut

    async def _get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        return await self.request("GET", kind.path(namespace, name), asset_id(kind, name, namespace))

    async def _namespaces(self) -> dict[str, dict[str, Any]]:
        return {str((n.get("metadata") or {}).get("name")): n for n in await self._list(NAMESPACE)}

    # ------------------------------------------------------------------ assets

    async def query_assets(self, filters: AssetFilters, page: PageRequest) -> Page[Asset]:
        kinds = [k for k in ASSET_KINDS if filters.type is None or k.type == filters.type]
        namespaces, *lists = await asyncio.gather(
            self._namespaces(),
            *(self._list_page(kind, None if not kind.namespaced else filters.namespace) for kind in kinds),
        )
        assets: list[Asset] = []
        cut: list[str] = []
        for kind, (objects, more) in zip(kinds, lists, strict=True):
            if more:
                cut.append(kind.plural)
            for obj in objects:
                ns = (obj.get("metadata") or {}).get("namespace")
                asset = to_asset(kind, obj, namespaces.get(str(ns)) if ns else None)
                if filters.matches(asset):
                    assets.append(asset)
        assets.sort(key=lambda a: a.id)
        fingerprint = query_fingerprint(tool="query_assets", **filters.model_dump())
        found = paginate(assets, limit=page.limit, token=page.token, budget=self._budget, fingerprint=fingerprint)
        notes = [found.note + f", or narrow with {NARROW_ASSETS}" if found.truncated and found.note else found.note]
        if cut:
            notes.append(
                f"only the first {self._settings.max_objects_per_kind} {', '.join(cut)} were read "
                f"(CMDB_MAX_OBJECTS_PER_KIND): narrow with {NARROW_ASSETS}"
            )
        found.note = "; ".join(note for note in notes if note) or None
        return found

    async def _object(self, asset: str) -> tuple[Kind, str | None, str, dict[str, Any]]:
        kind, namespace, name = parse_asset_id(asset)
        return kind, namespace, name, await self._get(kind, namespace, name)

    async def get_asset(self, asset_id: str) -> Asset:
        kind, namespace, _, obj = await self._object(asset_id)
        namespace_obj = None
        if namespace is not None:
            try:
                namespace_obj = await self._get(NAMESPACE, None, namespace)
            except NotFound:
                namespace_obj = None
        return to_asset(kind, obj, namespace_obj)

    # ------------------------------------------------------------------ topology

    async def get_service_topology(self, service: str, namespace: str, depth: int) -> Topology:
        await self._get(SERVICE, namespace, service)
        kinds = (INGRESS, SERVICE, *WORKLOADS, REPLICASET, POD)
        lists = await asyncio.gather(*(self._list(kind, namespace) for kind in kinds))
        objects = Objects(namespace, {kind.kind: items for kind, items in zip(kinds, lists, strict=True)})
        node_names = {str((p.get("spec") or {}).get("nodeName")) for p in objects.of(POD)} - {"None", ""}
        for name in sorted(node_names)[: self._settings.max_topology_nodes]:
            try:
                objects.nodes[name] = await self._get(NODE, None, name)
            except NotFound:
                continue  # a pod may name a node that is gone; it still shows, with status unknown
        found = walk(objects, asset_id(SERVICE, service, namespace), depth, self._settings.max_topology_nodes)
        return fit_topology(found, self._budget.max_bytes)

    # ------------------------------------------------------------------ changes

    async def update_asset_status(self, asset_id: str, status: str, reason: str, actor: str) -> ChangeRecord:
        kind, namespace, name, obj = await self._object(asset_id)
        before = status_of(kind, obj)
        patch = {"metadata": {"annotations": {STATUS_ANNOTATION: status, STATUS_REASON_ANNOTATION: reason}}}
        await self.request(
            "PATCH", kind.path(namespace, name), asset_id, verb="patch", body=patch, content_type=MERGE_PATCH
        )
        event = self._status_event(kind, namespace, name, obj, before, status, reason, actor)
        event_ns = namespace or CLUSTER_EVENT_NAMESPACE
        created = await self.request(
            "POST", EVENT.path(event_ns), f"an event for {asset_id}", verb="create", body=event
        )
        return event_record(created or event)

    def _status_event(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        before: str,
        after: str,
        reason: str,
        actor: str,
    ) -> dict[str, Any]:
        now = _now()
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{name}.{secrets.token_hex(8)}",
                "namespace": namespace or CLUSTER_EVENT_NAMESPACE,
                "annotations": {
                    "mcpfleet.io/from-status": before,
                    "mcpfleet.io/to-status": after,
                    "mcpfleet.io/actor": actor,
                },
            },
            "involvedObject": {
                "apiVersion": kind.api_version,
                "kind": kind.kind,
                "name": name,
                "namespace": namespace,
                "uid": (obj.get("metadata") or {}).get("uid"),
            },
            "reason": STATUS_CHANGED,
            "message": f"status {before} -> {after}: {reason} (by {actor})",
            "type": "Normal",
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": _now_micro(),
            # With eventTime set the API server wants the reporter and the action spelled out.
            "action": "UpdateAssetStatus",
            "source": {"component": EVENT_SOURCE},
            "reportingComponent": EVENT_SOURCE,
            "reportingInstance": os.environ.get("POD_NAME") or socket.gethostname(),
        }

    async def get_change_records(
        self, asset_id: str | None, since: datetime | None, until: datetime | None, page: PageRequest
    ) -> Page[ChangeRecord]:
        """Events, rollout revisions and the gateway's audit, merged newest first; an audit source that is down
        or was cut is named in the page's note, never an error."""
        related: set[str] | None = None
        if asset_id:
            records, related = await self._asset_changes(asset_id)
        else:
            records = await self._all_changes()
        audit = await self._audit.changes(since, until)
        records += [r for r in audit.records if related is None or r.asset in related]
        records = [r for r in records if (since is None or r.time >= since) and (until is None or r.time <= until)]
        records.sort(key=lambda r: (r.time, r.id), reverse=True)
        fingerprint = query_fingerprint(tool="get_change_records", asset=asset_id, since=since, until=until)
        found = paginate(records, limit=page.limit, token=page.token, budget=self._budget, fingerprint=fingerprint)
        found.note = "; ".join(note for note in (found.note, *audit.notes) if note) or None
        return found

    async def _all_changes(self) -> list[ChangeRecord]:
        events, replicasets = await asyncio.gather(self._list(EVENT), self._list(REPLICASET))
        return [event_record(e) for e in events] + revision_records(replicasets, owner=None)

    async def _asset_changes(self, asset: str) -> tuple[list[ChangeRecord], set[str]]:
        """The asset's records, and the ids whose changes count as its own: itself and, for a workload, the
        pods it selects."""
        kind, namespace, name, obj = await self._object(asset)
        event_ns = namespace or CLUSTER_EVENT_NAMESPACE
        events = await self._list(EVENT, event_ns)
        related = {(kind.kind, name)}
        records: list[ChangeRecord] = []
        if kind in WORKLOADS and namespace is not None:
            selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            pods = await self._list(POD, namespace)
            related |= {
                (POD.kind, str(p["metadata"]["name"]))
                for p in pods
                if selector
                and all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items())
            }
        if kind is DEPLOYMENT and namespace is not None:
            records += revision_records(await self._list(REPLICASET, namespace), owner=name)
        for event in events:
            involved = event.get("involvedObject") or {}
            if (str(involved.get("kind")), str(involved.get("name"))) in related:
                records.append(event_record(event))
        ids = {asset_id(BY_KIND[kind_name], object_name, namespace) for kind_name, object_name in related}
        return records, ids
