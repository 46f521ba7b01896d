"""Change records from Kubernetes objects: Events (including the server's own AssetStatusChanged) and
Deployment rollout revisions (ReplicaSets' ``deployment.kubernetes.io/revision``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mcpfleet_servers.cmdb.kinds import BY_KIND, DEPLOYMENT, asset_id
from mcpfleet_servers.cmdb.models import ChangeRecord

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _involved_id(involved: dict[str, Any]) -> str:
    kind_name = str(involved.get("kind") or "object")
    name = str(involved.get("name") or "")
    kind = BY_KIND.get(kind_name)
    if kind is None:
        ns = involved.get("namespace")
        return f"{kind_name.lower()}/{ns}/{name}" if ns else f"{kind_name.lower()}/{name}"
    return asset_id(kind, name, str(involved.get("namespace")) if kind.namespaced else None)


def event_record(event: dict[str, Any]) -> ChangeRecord:
    meta = event.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    source = event.get("source") or {}
    when = (
        parse_time(event.get("eventTime"))
        or parse_time(event.get("lastTimestamp"))
        or parse_time(event.get("firstTimestamp"))
        or parse_time(meta.get("creationTimestamp"))
        or _EPOCH
    )
    return ChangeRecord(
        id=f"event/{meta.get('namespace')}/{meta.get('name')}",
        asset=_involved_id(event.get("involvedObject") or {}),
        time=when,
        actor=str(
            annotations.get("mcpfleet.io/actor")
            or source.get("component")
            or event.get("reportingComponent")
            or "unknown"
        ),
        action=str(event.get("reason") or "event"),
        from_value=annotations.get("mcpfleet.io/from-status"),
        to_value=annotations.get("mcpfleet.io/to-status"),
        reason=str(event.get("message") or "")[:1000],
        source="event",
    )


def revision_records(replicasets: list[dict[str, Any]], owner: str | None) -> list[ChangeRecord]:
    """One record per ReplicaSet revision of a Deployment (of ``owner`` only, when given)."""
    records: list[ChangeRecord] = []
    for rs in replicasets:
        meta = rs.get("metadata") or {}
        revision = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
        deployments = [r for r in meta.get("ownerReferences") or [] if r.get("kind") == DEPLOYMENT.kind]
        if not revision or not deployments:
            continue
        deployment = str(deployments[0].get("name"))
        if owner is not None and deployment != owner:
            continue
        containers = (((rs.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        images = ", ".join(str(c.get("image")) for c in containers[:5] if isinstance(c, dict))
        records.append(
            ChangeRecord(
                id=f"rollout/{meta.get('namespace')}/{deployment}/{revision}",
                asset=asset_id(DEPLOYMENT, deployment, str(meta.get("namespace"))),
                time=parse_time(meta.get("creationTimestamp")) or _EPOCH,
                actor="deployment-controller",
                action="rollout",
                to_value=f"revision {revision}",
                reason=f"ReplicaSet {meta.get('name')}" + (f" ({images})" if images else ""),
                source="rollout",
            )
        )
    return records
