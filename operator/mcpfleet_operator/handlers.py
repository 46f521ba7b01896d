"""kopf handlers: thin glue between events and the pure builders.

``build_registry`` registers every handler on a fresh registry, closed over
one :class:`OperatorState`; nothing is registered at import time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from prometheus_client import start_http_server
from pydantic import ValidationError

from mcpfleet_contracts.errors import describe_validation_error
from mcpfleet_contracts.mcpserver import (
    GROUP,
    PLURAL,
    VERSION,
    MCPServerSpec,
    MCPServerStatus,
    check_name,
    parse_spec,
)
from mcpfleet_operator.builders.children import build_children
from mcpfleet_operator.builders.consul import build_registration, registration_target
from mcpfleet_operator.builders.model import (
    CHILD_KINDS,
    DEPLOYMENT,
    LABEL_MANAGED_BY,
    LABEL_OWNER_UID,
    LABEL_SERVER,
    MANAGED_BY,
    SERVICE,
    BuildDefaults,
    Owner,
    ResourceKind,
    owner_of,
)
from mcpfleet_operator.builders.status import READY, REGISTERED, Observation, failed_status, set_condition
from mcpfleet_operator.catalog_store import CatalogStore
from mcpfleet_operator.catalog_sync import CatalogWriter, Subject, ToolSync
from mcpfleet_operator.consul import ConsulRegistrar, RegistrationState
from mcpfleet_operator.kube import KubeClient, KubeError, load_api_client
from mcpfleet_operator.metrics import OperatorMetrics
from mcpfleet_operator.reconcile import NameConflict, StatusWriter, apply_children, ensure_child
from mcpfleet_operator.settings import OperatorSettings

log = logging.getLogger("mcpfleet.operator")

ANNOTATION_PREFIX = "mcpfleet.io"
FINALIZER = "mcpfleet.io/finalizer"
MANAGED = {LABEL_MANAGED_BY: MANAGED_BY}


@dataclass
class OperatorState:
    """Everything the handlers share; clients are filled in by the startup handler."""

    settings: OperatorSettings
    defaults: BuildDefaults
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    client: KubeClient | None = None
    status: StatusWriter | None = None
    managed: set[tuple[str, str]] = field(default_factory=set)
    stop_metrics: Any = None
    writer: CatalogWriter | None = None
    tools: ToolSync | None = None
    registrar: ConsulRegistrar | None = None
    # The live Service of each server (its ClusterIP is what Consul registers) and the last stored status.
    services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    subjects: dict[tuple[str, str], Subject] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None

    def reconcile_slots(self) -> asyncio.Semaphore:
        """At most ``worker_limit`` MCPServers apply their children at once (created in the running loop)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.worker_limit)
        return self._slots

    def kube(self) -> tuple[KubeClient, StatusWriter]:
        if self.client is None or self.status is None:
            raise kopf.TemporaryError("the Kubernetes client is not started yet", delay=1)
        return self.client, self.status

    def watches(self, namespace: str) -> bool:
        return self.settings.clusterwide or namespace in self.settings.namespaces

    def sync(self) -> ToolSync:
        if self.tools is None:
            raise kopf.TemporaryError("the catalog sync is not started yet", delay=1)
        return self.tools


def owner_from(meta: Mapping[str, Any], namespace: str | None, name: str | None) -> Owner:
    return Owner(
        name=str(name),
        namespace=str(namespace),
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 1),
    )


def _backoff(retry: int) -> float:
    return float(min(2**retry, 60) * random.uniform(0.8, 1.2))


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf's own knobs: where it keeps its state, how many workers, what it posts as Events."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # With an index, each per-object worker waits until every MCPServer is indexed before it runs handlers;
    # a worker cap below the number of MCPServers therefore deadlocks at start (kopf issue #1243: 21 objects
    # with a cap of 20 never reconciled). Concurrency is bounded where the API load is made instead:
    # OperatorState.reconcile_slots().
    settings.queueing.worker_limit = None
    # Only warnings and errors become Kubernetes Events: success chatter would cost one write per handler.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    if ours.peering:
        settings.peering.name = ours.peering
        settings.peering.standalone = False
        settings.peering.mandatory = True
    else:
        settings.peering.standalone = True


def build_registry(state: OperatorState) -> kopf.OperatorRegistry:  # noqa: PLR0915 - one closure per handler
    registry = kopf.OperatorRegistry()
    mcpservers = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(id="startup", registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, state.settings)
        api = await load_api_client(state.settings.kubeconfig, state.settings.context)
        state.client = KubeClient(api, state.settings.field_manager)
        state.status = StatusWriter(state.client)
        await _start_catalog_and_consul(state)
        if state.settings.metrics_port:
            server, _thread = start_http_server(
                state.settings.metrics_port, state.settings.metrics_host, registry=state.metrics.registry
            )
            state.stop_metrics = server.shutdown

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod, the ServiceAccount token file is re-read on every login (tokens rotate).
        in_cluster = kopf.login_with_service_account(**kwargs)
        if in_cluster is not None:
            return in_cluster
        client, _ = state.kube()
        return kopf.ConnectionInfo(**client.connection())

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(**_: Any) -> None:
        if state.tools is not None:
            await state.tools.close()
        if state.writer is not None:
            await state.writer.close()
        if state.registrar is not None:
            await state.registrar.close()
        if state.client is not None:
            await state.client.close()
        if state.stop_metrics is not None:
            state.stop_metrics()

    @kopf.index(*mcpservers, id="mcpserver_index", registry=registry)
    async def mcpserver_index(
        namespace: str | None, name: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, **_: Any
    ) -> dict[tuple[str | None, str], dict[str, Any]]:
        return {
            (namespace, name): {
                "owner": owner_from(meta, namespace, name),
                "spec": dict(spec),
                "status": dict(status),
                "deleting": bool(meta.get("deletionTimestamp")),
            }
        }

    @kopf.on.resume(*mcpservers, id="reconcile", registry=registry)
    @kopf.on.create(*mcpservers, id="reconcile", registry=registry)
    @kopf.on.update(*mcpservers, id="reconcile", registry=registry)
    async def reconcile(
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        namespace: str | None,
        name: str,
        reason: str,
        retry: int,
        mcpserver_index: kopf.Index[tuple[str, str], dict[str, Any]] | None = None,
        **_: Any,
    ) -> None:
        client, writer = state.kube()
        owner = owner_from(meta, namespace, name)
        state.managed.add((owner.namespace, name))
        state.metrics.managed_objects.set(len(state.managed))
        result = "error"
        started: float | None = None
        try:
            server_spec = _parse_or_fail(spec, name)
        except kopf.PermanentError as exc:
            problem = str(exc)
            await writer.update(
                owner, status, lambda previous, now: failed_status(owner, previous, "InvalidSpec", problem, now)
            )
            state.metrics.errors.labels("permanent").inc()
            state.metrics.reconciles.labels(reason, "invalid").inc()
            raise
        try:
            children = build_children(owner, server_spec, state.defaults)
            async with state.reconcile_slots():
                # Timed once a slot is held: waiting for one is queueing, not reconciling.
                started = time.perf_counter()
                outcomes = await apply_children(client, owner, children, state.metrics)
            for kind, outcome in outcomes.items():
                if outcome.action:
                    log.info("%s/%s: %s %s %s", namespace, name, outcome.action, kind.kind, outcome.drift or "")
            observation = Observation(deployment=outcomes[DEPLOYMENT].live)
            await writer.refresh(owner, server_spec, observation, status)
            live_service = outcomes[SERVICE].live
            if live_service is not None:
                state.services[(owner.namespace, name)] = live_service
            await _follow(state, owner, server_spec, status, mcpserver_index)
            result = "ok"
        except NameConflict as exc:
            await writer.refresh(owner, server_spec, Observation(deploy_error=str(exc)), status)
            state.metrics.errors.labels("temporary").inc()
            raise kopf.TemporaryError(str(exc), delay=60) from exc
        except KubeError as exc:
            if exc.namespace_terminating:
                # The MCPServer goes with its namespace; there is nothing left to converge or report.
                result = "namespace-terminating"
                return
            await _report_api_error(writer, owner, server_spec, status, exc)
            state.metrics.errors.labels("temporary" if exc.retryable or exc.status == 403 else "permanent").inc()
            if exc.retryable:
                raise kopf.TemporaryError(str(exc), delay=_backoff(retry)) from exc
            if exc.status == 403:
                raise kopf.TemporaryError(f"the operator lacks a permission: {exc}", delay=60) from exc
            raise kopf.PermanentError(f"the API server rejected a child object: {exc}") from exc
        finally:
            state.metrics.reconciles.labels(reason, result).inc()
            if started is not None:
                state.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    @kopf.on.delete(*mcpservers, id="finalize", registry=registry)
    async def finalize(meta: kopf.Meta, namespace: str | None, name: str, **_: Any) -> None:
        """Namespaced children go with the owner (ownerReferences); cluster-scoped ones are removed here."""
        client, writer = state.kube()
        owner = owner_from(meta, namespace, name)
        for kind in CHILD_KINDS:
            if not kind.namespaced:
                outcome = await _ensure_or_retry(client, kind, owner, None)
                if outcome:
                    state.metrics.api_writes.labels(kind.kind, "delete").inc()
        key = (owner.namespace, name)
        # Forgotten first: nothing may write this object's status now (a write would race the finalizer's removal).
        state.subjects.pop(key, None)
        state.services.pop(key, None)
        state.sync().forget(key)
        if state.registrar is not None and state.registrar.enabled:
            await state.registrar.remove(key)
        writer.forget(owner)
        state.managed.discard(key)
        state.metrics.managed_objects.set(len(state.managed))

    for child_kind in CHILD_KINDS:
        _register_child_watch(registry, state, child_kind)
    _register_pod_watch(registry, state)

    return registry


async def _start_catalog_and_consul(state: OperatorState) -> None:
    """The catalog writer (from the stored catalog), the tool sync and the Consul registrar."""
    client, status = state.kube()
    settings = state.settings
    store = CatalogStore(client, settings.catalog_namespace, settings.catalog_name, keep=settings.catalog_keep)
    state.writer = CatalogWriter(store, state.metrics, debounce=settings.catalog_debounce_seconds)
    state.tools = ToolSync(
        state.writer, status, settings, state.metrics, on_status_changed=lambda key: _register(state, key)
    )
    state.writer.on_written = state.tools.written
    await state.writer.start()
    state.registrar = ConsulRegistrar(
        settings, state.metrics.registry, lambda key, result: _registered(state, key, result)
    )
    await state.registrar.start()


async def _follow(
    state: OperatorState,
    owner: Owner,
    spec: MCPServerSpec,
    stored: Mapping[str, Any],
    index: kopf.Index[tuple[str, str], dict[str, Any]] | None,
) -> None:
    """After a reconcile: the tool sync and Consul follow the MCPServer (and forget servers that are gone)."""
    key = (owner.namespace, owner.name)
    subject = Subject(owner, spec, stored)
    state.subjects[key] = subject
    tools = state.sync()
    tools.observe(subject)
    if index is not None:
        tools.prune({k for k in index if k[0] is not None})
    await _register(state, key)


async def _register(state: OperatorState, key: tuple[str, str]) -> None:
    """Register a Ready server in Consul (with its current tools digest); deregister one that is not."""
    subject = state.subjects.get(key)
    if state.registrar is None or state.status is None or subject is None:
        return
    current = state.status.current(subject.owner, subject.status)
    ready = any(c.type == READY and c.status == "True" for c in current.conditions or ())
    target = registration_target(subject.owner, subject.spec, state.services.get(key))
    registration = None
    if ready and target is not None:
        address, port = target
        registration = build_registration(
            subject.owner, subject.spec, address=address, port=port, tools_digest=state.sync().digest(key)
        )
    if registration is None:
        if key in state.registrar.desired():
            await state.registrar.remove(key)
        return
    await state.registrar.ensure(key, registration)


async def _registered(state: OperatorState, key: tuple[str, str], result: RegistrationState) -> None:
    """The registrar's verdict becomes the Registered condition and status.consulServiceId."""
    subject = state.subjects.get(key)
    if subject is None or state.status is None:
        return
    owner = subject.owner

    def make(previous: MCPServerStatus, now: str) -> MCPServerStatus:
        conditions = set_condition(
            list(previous.conditions or ()),
            REGISTERED,
            "True" if result.registered else "False",
            result.reason,
            result.message,
            owner.generation,
            now,
        )
        service_id = result.service_id if result.registered else None
        return previous.model_copy(update={"conditions": conditions, "consul_service_id": service_id})

    try:
        await state.status.update(owner, subject.status, make)
    except KubeError as exc:
        log.warning("%s/%s: could not record the Consul registration: %s", owner.namespace, owner.name, exc)


def _register_pod_watch(registry: kopf.OperatorRegistry, state: OperatorState) -> None:
    """Contract 2: a server Pod's tool report (or, for custom images, its readiness) triggers a tools/list."""

    @kopf.on.event(
        "", "v1", "pods", labels={**MANAGED, LABEL_SERVER: kopf.PRESENT}, id="tool-reports", registry=registry
    )
    async def pod_event(
        type: str,
        body: kopf.Body,
        mcpserver_index: kopf.Index[tuple[str, str], dict[str, Any]] | None = None,
        **_: Any,
    ) -> None:
        if state.tools is None:
            return
        key, entry = _owner_entry(state, body, mcpserver_index)
        if key is None or entry is None or entry["deleting"]:
            return
        owner: Owner = entry["owner"]
        if key not in state.subjects:
            try:
                state.tools.observe(Subject(owner, parse_spec(entry["spec"]), entry["status"]))
            except ValidationError:
                return
        if type == "DELETED":
            state.tools.pod_gone(key, str(body.get("metadata", {}).get("name")))
        else:
            state.tools.pod_changed(key, dict(body))


def _owner_entry(
    state: OperatorState, body: kopf.Body, index: kopf.Index[tuple[str, str], dict[str, Any]] | None
) -> tuple[tuple[str, str] | None, dict[str, Any] | None]:
    """The MCPServer an object belongs to (by its labels), and that MCPServer's index entry if it exists."""
    key = owner_of(dict(body))
    if key is None or not state.watches(key[0]):
        return None, None
    # kopf passes an index only to handlers that name it as a parameter.
    assert index is not None
    return key, next(iter(index.get(key, ())), None)


def _register_child_watch(registry: kopf.OperatorRegistry, state: OperatorState, kind: ResourceKind) -> None:
    """Restore a child deleted or edited by hand; follow the Deployment's readiness into the status."""

    @kopf.on.event(kind.group, kind.version, kind.plural, labels=MANAGED, id=f"watch-{kind.plural}", registry=registry)
    async def child_event(
        type: str,
        body: kopf.Body,
        mcpserver_index: kopf.Index[tuple[str, str], dict[str, Any]] | None = None,
        **_: Any,
    ) -> None:
        if state.client is None or state.status is None:
            return
        key, entry = _owner_entry(state, body, mcpserver_index)
        if key is None:
            return
        deleted = type == "DELETED"
        if entry is None:
            await _collect_orphan(state, kind, body, deleted)
            return
        if entry["deleting"]:
            return
        owner: Owner = entry["owner"]
        try:
            spec = parse_spec(entry["spec"])
        except ValidationError:
            return  # the MCPServer handler reports an invalid spec
        desired = build_children(owner, spec, state.defaults)[kind]
        live = None if deleted else dict(body)
        try:
            outcome = await ensure_child(state.client, kind, owner, desired, live)
        except KubeError as exc:
            if exc.namespace_terminating:
                log.debug("%s/%s: not restoring %s: the namespace is being deleted", owner.namespace, owner.name, kind)
            else:
                log.warning("%s/%s: cannot restore %s: %s", owner.namespace, owner.name, kind.kind, exc)
            return
        except NameConflict as exc:
            log.warning("%s/%s: cannot restore %s: %s", owner.namespace, owner.name, kind.kind, exc)
            return
        if outcome.action is not None:
            state.metrics.api_writes.labels(kind.kind, outcome.action).inc()
            log.info(
                "%s/%s: restored %s (%s) %s",
                owner.namespace,
                owner.name,
                kind.kind,
                outcome.action,
                outcome.drift,
            )
        if kind == SERVICE and outcome.live is not None:
            state.services[key] = outcome.live
        if kind == DEPLOYMENT:
            await state.status.refresh(owner, spec, Observation(deployment=outcome.live), entry["status"])
            await _register(state, key)


async def _collect_orphan(state: OperatorState, kind: ResourceKind, body: Mapping[str, Any], deleted: bool) -> None:
    """A cluster-scoped child whose MCPServer is gone (deleted while the operator was down)."""
    if deleted or kind.namespaced or state.client is None:
        return
    meta = body.get("metadata") or {}
    if not (meta.get("labels") or {}).get(LABEL_OWNER_UID):
        return
    log.info("deleting orphaned %s %s", kind.kind, meta.get("name"))
    await state.client.delete(kind, None, str(meta.get("name")))
    state.metrics.api_writes.labels(kind.kind, "delete").inc()


async def _ensure_or_retry(client: KubeClient, kind: ResourceKind, owner: Owner, desired: None) -> bool:
    try:
        outcome = await ensure_child(client, kind, owner, desired, await client.get(kind, None, kind.name_for(owner)))
    except KubeError as exc:
        raise kopf.TemporaryError(f"cannot delete {kind.kind}: {exc}", delay=10) from exc
    return outcome.action is not None


def _parse_or_fail(spec: Mapping[str, Any], name: str) -> MCPServerSpec:
    bad_name = check_name(name)
    if bad_name is not None:
        raise kopf.PermanentError(bad_name)
    try:
        return parse_spec(dict(spec))
    except ValidationError as exc:
        raise kopf.PermanentError(describe_validation_error(exc, root="spec")) from exc


async def _report_api_error(
    writer: StatusWriter, owner: Owner, spec: MCPServerSpec, stored: Mapping[str, Any], exc: KubeError
) -> None:
    try:
        await writer.refresh(owner, spec, Observation(deploy_error=str(exc)), stored)
    except KubeError:
        log.warning("%s/%s: could not record the error in status either", owner.namespace, owner.name)


__all__ = ["OperatorState", "build_registry", "configure_kopf"]
