"""Bring the live children of an MCPServer in line with what the builders say.

Reads are cheap, writes are not: every child is read first and written only
when it is missing, drifted or no longer wanted, so a reconcile of an object
that is already right writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcpfleet_contracts.mcpserver import MCPServerSpec, MCPServerStatus, parse_status
from mcpfleet_operator.builders.children import Children
from mcpfleet_operator.builders.drift import drifted_paths
from mcpfleet_operator.builders.model import (
    CHILD_KINDS,
    MCPSERVER,
    Manifest,
    Owner,
    ResourceKind,
    is_owned_by,
)
from mcpfleet_operator.builders.status import Observation, compute_status, status_patch
from mcpfleet_operator.kube import KubeClient, KubeError
from mcpfleet_operator.metrics import OperatorMetrics


class NameConflict(Exception):
    """A child's name is taken by an object this MCPServer does not own."""


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class ChildOutcome:
    live: dict[str, Any] | None
    action: str | None = None
    drift: list[str] = field(default_factory=list)


async def ensure_child(
    client: KubeClient,
    kind: ResourceKind,
    owner: Owner,
    desired: Manifest | None,
    live: dict[str, Any] | None,
) -> ChildOutcome:
    """Create, update or delete one child so that it matches ``desired`` (None: must not exist)."""
    name = kind.name_for(owner)
    namespace = owner.namespace if kind.namespaced else None
    if desired is None:
        if live is not None and is_owned_by(live, owner):
            await client.delete(kind, namespace, name)
            return ChildOutcome(None, "delete")
        return ChildOutcome(live)
    if live is None:
        try:
            # Created by server-side apply, not POST: fields a POST writes belong to an "Update" operation, which
            # a later apply cannot remove, so an item dropped from a list (a changed container port) would stay.
            # Without force, fields someone else set meanwhile are a conflict, as a POST's AlreadyExists was.
            return ChildOutcome(await client.apply(kind, desired, force=False), "create")
        except KubeError as exc:
            if exc.status != 409:
                raise
            live = await client.get(kind, namespace, name)  # created meanwhile: compare with it
            if live is None:
                raise
    if not is_owned_by(live, owner):
        raise NameConflict(
            f"{kind.kind} {name!r} already exists and does not belong to this MCPServer: "
            "delete or rename that object, or rename the MCPServer"
        )
    drift = drifted_paths(desired, live)
    if not drift:
        return ChildOutcome(live)
    return ChildOutcome(await client.apply(kind, desired), "apply", drift)


async def read_children(client: KubeClient, owner: Owner) -> dict[ResourceKind, dict[str, Any] | None]:
    async def read(kind: ResourceKind) -> dict[str, Any] | None:
        return await client.get(kind, owner.namespace if kind.namespaced else None, kind.name_for(owner))

    found = await asyncio.gather(*(read(kind) for kind in CHILD_KINDS))
    return dict(zip(CHILD_KINDS, found, strict=True))


async def apply_children(
    client: KubeClient, owner: Owner, children: Children, metrics: OperatorMetrics
) -> dict[ResourceKind, ChildOutcome]:
    """Reconcile every child kind in dependency order; returns what each one looks like now."""
    live = await read_children(client, owner)
    outcomes: dict[ResourceKind, ChildOutcome] = {}
    for kind in CHILD_KINDS:
        outcome = await ensure_child(client, kind, owner, children.get(kind), live[kind])
        if outcome.action is not None:
            metrics.api_writes.labels(kind.kind, outcome.action).inc()
        outcomes[kind] = outcome
    return outcomes


class StatusWriter:
    """Writes MCPServer status only when it changes, one writer per object at a time.

    Status is computed both by the MCPServer handlers and by Deployment
    events; a per-object lock orders them and the last written status is
    remembered so that an index lagging behind our own write causes no echo.
    """

    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._written: dict[tuple[str, str], dict[str, Any]] = {}

    def _lock(self, owner: Owner) -> asyncio.Lock:
        return self._locks.setdefault((owner.namespace, owner.name), asyncio.Lock())

    def forget(self, owner: Owner) -> None:
        self._locks.pop((owner.namespace, owner.name), None)
        self._written.pop((owner.namespace, owner.name), None)

    def current(self, owner: Owner, stored: Mapping[str, Any] | None) -> MCPServerStatus:
        """The status as last written by this operator, else as stored."""
        return parse_status(self._current(owner, stored))

    def _current(self, owner: Owner, stored: Mapping[str, Any] | None) -> dict[str, Any]:
        return self._written.get((owner.namespace, owner.name)) or dict(stored or {})

    async def _write(self, owner: Owner, new: MCPServerStatus, stored: Mapping[str, Any] | None) -> bool:
        """Caller holds ``_lock(owner)`` (see ``update``). Returns whether a write was needed."""
        old = self._current(owner, stored)
        patch = status_patch(new, old)
        if patch is None:
            return False
        await self._client.patch_status(MCPSERVER, owner.namespace, owner.name, patch)
        self._written[(owner.namespace, owner.name)] = new.to_wire()
        return True

    async def refresh(
        self,
        owner: Owner,
        spec: MCPServerSpec,
        observation: Observation,
        stored: Mapping[str, Any] | None,
    ) -> bool:
        """Recompute the status from an observation and write it if it changed."""
        return await self.update(
            owner, stored, lambda previous, now: compute_status(owner, spec, observation, previous, now)
        )

    async def update(
        self,
        owner: Owner,
        stored: Mapping[str, Any] | None,
        make: Callable[[MCPServerStatus, str], MCPServerStatus],
    ) -> bool:
        """Under the object's lock: ``make(previous status, now)``, written if it changed."""
        async with self._lock(owner):
            previous = parse_status(self._current(owner, stored))
            return await self._write(owner, make(previous, now_rfc3339()), stored)
