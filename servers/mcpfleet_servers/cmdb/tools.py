"""The cmdb tools, registered on a Toolset over any CmdbBackend."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.paging import Page
from mcpfleet_servers.base.toolkit import InvalidArgument, Toolset
from mcpfleet_servers.cmdb.backend import CmdbBackend, PageRequest
from mcpfleet_servers.cmdb.models import Asset, AssetFilters, ChangeRecord, SettableStatus, Topology
from mcpfleet_servers.cmdb.settings import CmdbSettings

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
AssetIdArg = Annotated[
    str,
    Field(
        min_length=1,
        max_length=400,
        description="Asset id as query_assets gives it. kubernetes: <type>/<namespace>/<name>, or <type>/<name> "
        "for nodes and namespaces; netbox: <type>/<id>; rest: the CMDB's id.",
    ),
]
LimitArg = Annotated[int | None, Field(ge=1, le=1000, description="Most items to return; the server budget caps it.")]
ContinueArg = Annotated[
    str | None, Field(max_length=4096, description="continue_token from the previous page of the same call.")
]
Short = Annotated[str | None, Field(min_length=1, max_length=253)]

# Where a status change is HIGH risk (the user confirms it as such); elsewhere it is MEDIUM.
PRODUCTION_ENVIRONMENTS = frozenset({"production", "prod"})


def register(toolset: Toolset, backend: CmdbBackend, settings: CmdbSettings) -> None:
    """Declare every cmdb tool over ``backend``."""

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True)
    async def query_assets(
        type: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=63,
                description="Asset type. kubernetes: node, namespace, deployment, statefulset, daemonset, service, "
                "ingress, persistentvolumeclaim; netbox: device, virtual-machine, service, ip-address; rest: the "
                "CMDB's types (e.g. server, database, application).",
            ),
        ] = None,
        environment: Annotated[Short, Field(description="Environment, e.g. production, staging, dev.")] = None,
        status: Annotated[Short, Field(description="Status, e.g. active, degraded, maintenance.")] = None,
        owner: Annotated[Short, Field(description="Owning team or person.")] = None,
        text: Annotated[Short, Field(description="Part of the asset name (case-insensitive).")] = None,
        namespace: Annotated[str | None, Field(max_length=63, pattern=_DNS_LABEL, description="Namespace.")] = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
    ) -> Page[Asset]:
        """Find assets by type, environment, status, owner, name text and namespace (kubernetes backend only).
        Paged: pass continue_token back for more."""
        if type is not None and backend.asset_types is not None and type not in backend.asset_types:
            raise InvalidArgument("type", f"unknown asset type; use one of {', '.join(backend.asset_types)}")
        filters = AssetFilters(
            type=type, environment=environment, status=status, owner=owner, text=text, namespace=namespace
        )
        return await backend.query_assets(filters, PageRequest(limit, continue_token))

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True)
    async def get_asset(asset_id: AssetIdArg) -> Asset:
        """One asset by id, with environment, owner, status, labels and attributes."""
        return await backend.get_asset(asset_id)

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True)
    async def get_service_topology(
        service: Annotated[str, Field(min_length=1, max_length=63, pattern=_DNS_LABEL, description="Service name.")],
        namespace: Annotated[str, Field(max_length=63, pattern=_DNS_LABEL, description="Its namespace.")] = "default",
        depth: Annotated[int, Field(ge=1, le=5, description="Most hops from the service (1-5).")] = 3,
    ) -> Topology:
        """What a service connects: ingresses routing to it, workloads it selects, their pods and nodes, and
        owner references; typed nodes and typed edges (routes-to, selects, runs, scheduled-on, owns)."""
        return await backend.get_service_topology(service, namespace, depth)

    async def risk_of_update(arguments: dict[str, Any]) -> Risk:
        # Before the user is asked: an unknown or malformed id fails here, not after a confirmation; and a
        # production asset makes the change HIGH.
        asset = await backend.get_asset(str(arguments["asset_id"]))
        return Risk.HIGH if asset.environment.lower() in PRODUCTION_ENVIRONMENTS else Risk.MEDIUM

    @toolset.tool(risk=Risk.MEDIUM, read_only=False, idempotent=True, risk_for=risk_of_update)
    async def update_asset_status(
        asset_id: AssetIdArg,
        status: Annotated[SettableStatus, Field(description="The new status.")],
        reason: Annotated[str, Field(min_length=3, max_length=500, description="Why; kept in the change record.")],
        actor: Annotated[
            str | None, Field(min_length=1, max_length=128, description="Who asks for it; kept in the change record.")
        ] = None,
    ) -> ChangeRecord:
        """Set an asset's status (active, maintenance, inactive, retired) with a reason; writes a change record.
        MEDIUM risk, HIGH for an asset in production; the user is asked to confirm first."""
        return await backend.update_asset_status(asset_id, status, reason, actor or settings.default_actor)

    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True)
    async def get_change_records(
        asset_id: Annotated[
            str | None, Field(min_length=1, max_length=400, description="Asset id; unset: every asset.")
        ] = None,
        since: Annotated[datetime | None, Field(description="Oldest time (ISO 8601) to include.")] = None,
        until: Annotated[datetime | None, Field(description="Newest time (ISO 8601) to include.")] = None,
        limit: LimitArg = None,
        continue_token: ContinueArg = None,
    ) -> Page[ChangeRecord]:
        """Changes of an asset (or of all assets), newest first: status changes, events of it and its pods,
        rollout revisions, and calls through the gateway that changed it (who, which tool). Paged."""
        since, until = _aware(since), _aware(until)
        if since is not None and until is not None and since > until:
            raise InvalidArgument("until", "is before since; swap them")
        return await backend.get_change_records(asset_id, since, until, PageRequest(limit, continue_token))


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
