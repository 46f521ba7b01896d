"""Keeps the catalog ConfigMap in line with the tools servers really serve (contracts 2 and 3).

Two parts. :class:`CatalogWriter` owns the desired catalog and writes it: changes arriving close together
become one write (a quiet period, bounded by a longest delay), identical content is never written, and a
failed write is retried. :class:`ToolSync` turns evidence into entries: a Pod's tool report is only a
trigger — the operator lists the tools of that Pod over MCP and catalogs what it really serves, flagging a
report that lied — and external endpoints are followed by an :class:`EndpointWatcher` each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from mcpfleet_contracts.catalog import CatalogServer
from mcpfleet_contracts.mcpserver import API_VERSION, KIND, MCPServerSpec, MCPServerStatus, ToolsStatus
from mcpfleet_contracts.report import TOOLS_DIGEST_ANNOTATION, is_digest, tools_digest
from mcpfleet_operator.builders.catalog import ServerEntry, build_server_entry, catalog_key
from mcpfleet_operator.builders.children import PORT_NAME, reports_tools
from mcpfleet_operator.builders.defaults import effective_path
from mcpfleet_operator.builders.model import Owner
from mcpfleet_operator.builders.status import TOOLS_DRIFTED, TOOLS_SYNCED, Observation, compute_status, set_condition
from mcpfleet_operator.catalog_store import CatalogStore
from mcpfleet_operator.kube import KubeError
from mcpfleet_operator.metrics import OperatorMetrics
from mcpfleet_operator.reconcile import StatusWriter
from mcpfleet_operator.settings import OperatorSettings
from mcpfleet_operator.toolsource import EndpointWatcher, ListFailed, list_tools

log = logging.getLogger("mcpfleet.operator.catalog")

Key = tuple[str, str]  # (namespace, name) of an MCPServer
Lister = Callable[..., Awaitable[list[dict[str, Any]]]]
MAX_STATUS_NAMES = 200
_CONFIRM_BACKOFF = (0.5, 1, 2, 5, 10, 30)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ----------------------------------------------------------------------------------------------- writing


class CatalogWriter:
    """The desired catalog, written on change: debounced, deduplicated, retried."""

    def __init__(
        self,
        store: CatalogStore,
        metrics: OperatorMetrics,
        *,
        debounce: float,
        max_delay: float = 1.0,
        separator: str = ":",
        on_written: Callable[[int, Mapping[str, CatalogServer], float | None], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._debounce = debounce
        self._max_delay = max(max_delay, debounce)
        self.separator = separator
        self.on_written = on_written
        self._servers: dict[str, CatalogServer] = {}
        self._changes = 0
        self._oldest_change: float | None = None  # monotonic time of the oldest change not yet written
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.revision = 0
        self.writes = 0

    async def start(self) -> None:
        """Begin from the stored catalog, so that an operator restart changes (and writes) nothing.

        Until it is read nothing can be judged (drift and approval compare with it), so reading is retried until
        it succeeds; the operator does nothing useful without its API server anyway.
        """
        delay = 0.5
        while True:
            try:
                stored = await self._store.read()
                break
            except (KubeError, OSError) as exc:
                log.warning("reading the stored catalog failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        if stored is not None:
            self._servers = {server.name: server for server in stored.catalog.servers}
            self.revision = stored.catalog.revision
            self.separator = stored.catalog.separator
            self._metrics.catalog_revision.set(self.revision)
        self._task = asyncio.create_task(self._run(), name="catalog-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def entry(self, name: str) -> CatalogServer | None:
        return self._servers.get(name)

    def names(self) -> set[str]:
        return set(self._servers)

    def put(self, server: CatalogServer, since: float | None = None) -> bool:
        """Set one server's entry; True when that changes the catalog."""
        if self._servers.get(server.name) == server:
            return False
        self._servers[server.name] = server
        self._changed(since)
        return True

    def remove(self, name: str) -> bool:
        if self._servers.pop(name, None) is None:
            return False
        self._changed(None)
        return True

    def _changed(self, since: float | None) -> None:
        self._changes += 1
        at = since if since is not None else time.monotonic()
        self._oldest_change = at if self._oldest_change is None else min(self._oldest_change, at)
        self._dirty.set()

    async def _settle(self) -> None:
        """Wait for a quiet period of ``debounce`` seconds, at most ``max_delay`` after the first change."""
        started = time.monotonic()
        seen = self._changes
        while True:
            await asyncio.sleep(self._debounce)
            if self._changes == seen or time.monotonic() - started >= self._max_delay:
                return
            seen = self._changes

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            await self._settle()
            self._dirty.clear()
            snapshot = dict(self._servers)
            oldest, self._oldest_change = self._oldest_change, None
            try:
                result = await self._store.write(
                    [snapshot[name] for name in sorted(snapshot)], separator=self.separator
                )
            except (KubeError, OSError, ValueError) as exc:
                failures += 1
                self._metrics.catalog_writes.labels("error").inc()
                delay = min(30.0, 0.5 * 2**failures) * random.uniform(0.8, 1.2)
                log.error("writing the catalog failed (%s); retrying in %.1f s", exc, delay)
                self._oldest_change = oldest if self._oldest_change is None else min(oldest or 0, self._oldest_change)
                self._dirty.set()
                await asyncio.sleep(delay)
                continue
            failures = 0
            if result.revision is not None:
                self.revision = result.revision
                self.writes += 1
                self._metrics.catalog_writes.labels("written").inc()
                self._metrics.catalog_revision.set(self.revision)
                log.info("catalog revision %d written: %d servers", self.revision, len(snapshot))
            else:
                self._metrics.catalog_writes.labels(result.skipped or "unchanged").inc()
                if result.skipped == "pinned":
                    log.warning("the catalog is pinned (a rollback); not writing. `mcpfleet catalog unpin` resumes")
            if oldest is not None:
                self._metrics.catalog_sync_seconds.observe(time.monotonic() - oldest)
            if self.on_written is not None:
                try:
                    await self.on_written(self.revision, snapshot, oldest)
                except Exception:  # a status write failing must not stop the catalog writer
                    log.exception("after writing catalog revision %d", self.revision)


# ----------------------------------------------------------------------------------------------- syncing


@dataclass
class Subject:
    """What the sync knows of one MCPServer."""

    owner: Owner
    spec: MCPServerSpec
    status: Mapping[str, Any]


@dataclass
class Outcome:
    """The latest confirmation of a server's tools, waiting to reach the status."""

    entry: ServerEntry | None = None
    failure: ListFailed | None = None
    mismatch: str | None = None  # a message when a report disagreed with what the server serves
    source: str = ""


@dataclass
class _Pod:
    reported: str | None  # the Pod's latest report
    url: str
    checked: bool = False  # ``reported`` has been confirmed (or found to be a lie)
    confirmed: str | None = None  # the digest of what the Pod served when last listed
    task: asyncio.Task[None] | None = None
    newer: bool = False  # a report arrived while the running confirmation listed


@dataclass
class _Server:
    subject: Subject
    pods: dict[str, _Pod] = field(default_factory=dict)
    serving_pod: str | None = None  # the pod whose tools are cataloged
    watcher: EndpointWatcher | None = None
    watcher_task: asyncio.Task[None] | None = None
    watched_url: str | None = None
    outcome: Outcome = field(default_factory=Outcome)
    last_tools: list[dict[str, Any]] | None = None  # what the server last served, to re-shape on a spec change
    recorded: CatalogServer | None = None  # the entry whose catalog revision the status names
    revision: int = 0


def pod_url(pod: Mapping[str, Any], spec: MCPServerSpec) -> str | None:
    """Where the operator lists the tools of one server Pod: its IP, the port it declares, the server's path.

    The Pod's own port, not spec.port: during a rollout after a port change, old Pods still listen on the old one.
    """
    ip = (pod.get("status") or {}).get("podIP")
    path = effective_path(spec)
    if not ip or path is None:
        return None
    declared = [
        port.get("containerPort")
        for container in (pod.get("spec") or {}).get("containers") or ()
        for port in container.get("ports") or ()
        if port.get("name") == PORT_NAME
    ]
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    return f"http://{host}:{declared[0] if declared else spec.port}{path}"


def _event(owner: Owner, type_: str, reason: str, message: str) -> None:
    body = kopf.Body({"apiVersion": API_VERSION, "kind": KIND, "metadata": owner_ref(owner)})  # type: ignore[typeddict-item]
    try:
        kopf.event(body, type=type_, reason=reason, message=message[:1024])
    except LookupError:  # outside kopf's context (unit tests, shutdown): the log line is the record
        log.info("event %s %s/%s %s: %s", reason, owner.namespace, owner.name, type_, message)


def owner_ref(owner: Owner) -> dict[str, str]:
    return {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid}


class ToolSync:
    """From tool reports and endpoint watches to catalog entries, conditions, Events and metrics."""

    def __init__(
        self,
        writer: CatalogWriter,
        status: StatusWriter,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        *,
        lister: Lister = list_tools,
        on_status_changed: Callable[[Key], Awaitable[None]] | None = None,
    ) -> None:
        self.writer = writer
        self._status = status
        self._settings = settings
        self._metrics = metrics
        self._lister = lister
        self._on_status_changed = on_status_changed
        self._servers: dict[Key, _Server] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- what the handlers call -----------------------------------------------------------------------

    def observe(self, subject: Subject) -> None:
        """The MCPServer as last seen (spec and stored status); starts or moves an external watch."""
        key = (subject.owner.namespace, subject.owner.name)
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = _Server(subject)
        spec_changed = server.subject.spec != subject.spec
        server.subject = subject
        if subject.spec.endpoint is not None:
            self._watch(key, server)
        elif server.watcher is not None:
            self._unwatch(server)
        if _scaled_to_zero(subject.spec):
            self._stop_pods(server)
            self._drop_entry(key, server)
            return
        if spec_changed and server.outcome.entry is not None:
            # A new prefix, allow/deny list or approval re-shapes the entry without asking the server again.
            self._rebuild_from_last(key, server)

    def pod_changed(self, key: Key, pod: Mapping[str, Any]) -> None:
        """A server Pod was added or changed: confirm its report when it carries a new digest."""
        server = self._servers.get(key)
        meta = pod.get("metadata") or {}
        name = str(meta.get("name"))
        if server is None or meta.get("deletionTimestamp") or _scaled_to_zero(server.subject.spec):
            if server is not None:
                self.pod_gone(key, name)
            return
        reported = (meta.get("annotations") or {}).get(TOOLS_DIGEST_ANNOTATION)
        if reported is not None and not is_digest(reported):
            reported = None
        if reported is None and reports_tools(server.subject.spec):
            return  # a built-in server reports once it serves; until then there is nothing to confirm
        if reported is None and not _is_ready(pod):
            return
        url = pod_url(pod, server.subject.spec)
        if url is None:
            return
        state = server.pods.setdefault(name, _Pod(reported, url))
        if state.task is not None:
            # Never cancelled for a newer report: under a burst nothing would ever finish. The running
            # confirmation lists once more when it is done.
            state.newer = state.newer or (reported, url) != (state.reported, state.url)
            state.reported, state.url = reported, url
            return
        if state.checked and (reported, url) == (state.reported, state.url):
            return  # Pod status updates repeat a report already confirmed
        state.reported, state.url = reported, url
        state.task = asyncio.create_task(self._confirm(key, name), name=f"confirm {name}")

    def pod_gone(self, key: Key, pod_name: str) -> None:
        server = self._servers.get(key)
        if server is None:
            return
        state = server.pods.pop(pod_name, None)
        if state is not None and state.task is not None:
            state.task.cancel()
        if server.serving_pod == pod_name:
            server.serving_pod = None
            if not server.pods:
                log.info("%s/%s: no server Pod left; its tools leave the catalog", *key)
                self._drop_entry(key, server)

    @staticmethod
    def _stop_pods(server: _Server) -> None:
        for state in server.pods.values():
            if state.task is not None:
                state.task.cancel()
        server.pods.clear()
        server.serving_pod = None

    def forget(self, key: Key) -> None:
        """The MCPServer is gone: its entries leave the catalog, its watch stops."""
        server = self._servers.pop(key, None)
        if server is not None:
            self._unwatch(server)
            for state in server.pods.values():
                if state.task is not None:
                    state.task.cancel()
        self.writer.remove(f"{key[0]}/{key[1]}")

    def prune(self, known: set[Key]) -> None:
        """Remove catalog entries of MCPServers that no longer exist (deleted while the operator was down)."""
        wanted = {f"{namespace}/{name}" for namespace, name in known}
        for name in self.writer.names() - wanted:
            log.info("catalog entry %s has no MCPServer any more; removing it", name)
            self.writer.remove(name)

    def confirmed_pods(self, key: Key) -> int:
        """How many Pods of this server have had their report confirmed (for status and tests)."""
        server = self._servers.get(key)
        return sum(1 for pod in server.pods.values() if pod.confirmed) if server is not None else 0

    def digest(self, key: Key) -> str | None:
        server = self._servers.get(key)
        entry = server.outcome.entry if server is not None else None
        return entry.server.tools_digest if entry is not None and entry.server is not None else None

    async def close(self) -> None:
        tasks = list(self._background)
        for server in self._servers.values():
            self._unwatch(server)
            tasks += [state.task for state in server.pods.values() if state.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- confirmation ---------------------------------------------------------------------------------

    async def _confirm(self, key: Key, pod_name: str) -> None:
        """List the Pod's tools until what was listed answers its latest report; catalog each listing."""
        while True:
            since = time.monotonic()
            server = self._servers.get(key)
            state = server.pods.get(pod_name) if server is not None else None
            if server is None or state is None:
                return
            state.newer = False
            reported = state.reported
            tools = await self._list_pod(key, server, pod_name, state.url)
            server = self._servers.get(key)
            state = server.pods.get(pod_name) if server is not None else None
            if tools is None or server is None or state is None:
                return  # the server or the Pod went away while it was listed
            newer = state.newer
            if not newer:
                state.task, state.checked = None, True
            # A listing overtaken by a newer report is still the truth of its moment: catalog it (a server that
            # changes nonstop still moves forward), but judge the report only against a listing that is current.
            await self._accept_listing(key, server, pod_name, tools, None if newer else reported, since)
            if not newer:
                return

    async def _list_pod(self, key: Key, server: _Server, pod_name: str, url: str) -> list[dict[str, Any]] | None:
        """tools/list of one Pod, retried with backoff while it fails; None when the server is gone meanwhile."""
        attempt = 0
        current: _Server | None = server
        while current is not None and pod_name in current.pods:
            try:
                return await self._lister(
                    url, current.subject.spec.transport, timeout=self._settings.tools_list_timeout_seconds
                )
            except ListFailed as exc:
                self._metrics.tool_reports.labels(exc.reason.lower()).inc()
                await self._failed(key, current, exc, f"Pod {pod_name}")
                delay = _CONFIRM_BACKOFF[min(attempt, len(_CONFIRM_BACKOFF) - 1)]
                attempt += 1
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                current = self._servers.get(key)
        return None

    async def _accept_listing(
        self,
        key: Key,
        server: _Server,
        pod_name: str,
        tools: list[dict[str, Any]],
        reported: str | None,
        since: float,
    ) -> None:
        actual = tools_digest(tools)
        server.pods[pod_name].confirmed = actual
        server.serving_pod = pod_name
        mismatch = None
        if reported is not None and reported != actual:
            mismatch = (
                f"Pod {pod_name} reported tools {reported[:19]}… but serves {actual[:19]}…; "
                "the catalog follows what it serves"
            )
            self._metrics.tool_reports.labels("mismatch").inc()
            _event(server.subject.owner, "Warning", "ReportMismatch", mismatch)
            log.warning("%s/%s: %s", *key, mismatch)
        else:
            self._metrics.tool_reports.labels("confirmed").inc()
        await self._accept(key, server, tools, actual, f"Pod {pod_name}", since, mismatch)

    async def _accept(
        self,
        key: Key,
        server: _Server,
        tools: list[dict[str, Any]],
        digest: str,
        source: str,
        since: float | None,
        mismatch: str | None = None,
    ) -> None:
        if self._servers.get(key) is not server or _scaled_to_zero(server.subject.spec):
            return  # forgotten or scaled to zero while this listing ran: its tools must not come back
        subject = server.subject
        name = catalog_key(subject.owner)
        entry = build_server_entry(
            subject.owner,
            subject.spec,
            tools,
            digest,
            self.writer.entry(name),
            separator=self.writer.separator,
            safe_cache_seconds=self._settings.safe_cache_seconds,
        )
        server.outcome = Outcome(entry=entry, mismatch=mismatch, source=source)
        server.last_tools = tools
        if entry.drifted:
            self._metrics.tool_drift.inc(len(entry.drifted))
            verb = "held for approval" if entry.pending else "cataloged"
            message = f"tools changed their description or input schema ({verb}): {', '.join(entry.drifted[:20])}"
            _event(subject.owner, "Warning", "ToolDrift", message)
        self._metrics.tools_pending.set(
            sum(len(s.outcome.entry.pending) for s in self._servers.values() if s.outcome.entry)
        )
        changed = entry.server is not None and self.writer.put(entry.server, since)
        if not changed:
            if entry.server is not None and server.recorded is None:
                # Already in the stored catalog (an operator restart): the status names the revision that
                # brought it, unless it has none yet.
                stored = (subject.status.get("tools") or {}).get("catalogRevision")
                server.recorded, server.revision = entry.server, int(stored or self.writer.revision)
            await self._write_status(key, server, server.revision)

    def _rebuild_from_last(self, key: Key, server: _Server) -> None:
        tools = server.last_tools
        entry = server.outcome.entry
        if tools is None or entry is None or entry.server is None:
            return
        self._spawn(
            self._accept(
                key, server, tools, entry.server.tools_digest, server.outcome.source, None, server.outcome.mismatch
            )
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, holding a reference until it ends (the loop keeps only weak ones)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _failed(self, key: Key, server: _Server, failure: ListFailed, source: str) -> None:
        previous = server.outcome
        server.outcome = Outcome(entry=previous.entry, failure=failure, source=source)
        if previous.failure is None or previous.failure.reason != failure.reason:
            log.warning("%s/%s: listing tools of %s failed: %s", *key, source, failure.message)
            _event(server.subject.owner, "Warning", f"Tools{failure.reason}", f"{source}: {failure.message}")
        await self._write_status(key, server, server.revision)

    def _drop_entry(self, key: Key, server: _Server) -> None:
        server.outcome = Outcome()
        server.recorded = None
        self.writer.remove(f"{key[0]}/{key[1]}")

    # -- external endpoints ---------------------------------------------------------------------------

    def _watch(self, key: Key, server: _Server) -> None:
        url = server.subject.spec.endpoint
        if url is None or (server.watcher is not None and server.watched_url == url):
            return
        self._unwatch(server)

        async def on_tools(tools: list[dict[str, Any]], digest: str) -> None:
            current = self._servers.get(key)
            if current is not None:
                self._metrics.tool_reports.labels("confirmed").inc()
                await self._accept(key, current, tools, digest, f"endpoint {url}", time.monotonic())

        async def on_error(failure: ListFailed) -> None:
            current = self._servers.get(key)
            if current is not None:
                self._metrics.tool_reports.labels(failure.reason.lower()).inc()
                await self._failed(key, current, failure, f"endpoint {url}")

        server.watcher = EndpointWatcher(
            url,
            server.subject.spec.transport,
            poll_seconds=self._settings.external_poll_seconds,
            timeout=self._settings.tools_list_timeout_seconds,
            on_tools=on_tools,
            on_error=on_error,
        )
        server.watched_url = url
        server.watcher_task = asyncio.get_running_loop().create_task(server.watcher.run(), name=f"watch {url}")

    @staticmethod
    def _unwatch(server: _Server) -> None:
        if server.watcher is not None:
            server.watcher.stop()
        if server.watcher_task is not None:
            server.watcher_task.cancel()
        server.watcher = server.watcher_task = server.watched_url = None

    # -- status ---------------------------------------------------------------------------------------

    async def written(self, revision: int, servers: Mapping[str, CatalogServer], _since: float | None) -> None:
        """After a catalog write: a server whose entry changed in it records the revision in its status.

        Servers whose entries did not change keep the revision that last changed them, so one server's change
        costs one status write, not one per server.
        """
        for key, server in list(self._servers.items()):
            entry = server.outcome.entry
            if entry is None or entry.server is None or servers.get(entry.server.name) != entry.server:
                continue
            if server.recorded != entry.server:
                server.recorded, server.revision = entry.server, revision
                await self._write_status(key, server, revision)

    async def _write_status(self, key: Key, server: _Server, revision: int) -> None:
        subject = server.subject
        outcome = server.outcome

        def make(previous: MCPServerStatus, now: str) -> MCPServerStatus:
            updated = tools_status(previous, outcome, revision, subject.owner, subject.spec, now)
            if subject.spec.endpoint is not None:
                # An external server is Ready when it answers: recompute Ready from the new ToolsSynced.
                return compute_status(subject.owner, subject.spec, Observation(), updated, now)
            return updated

        try:
            await self._status.update(subject.owner, subject.status, make)
        except KubeError as exc:
            log.warning("%s/%s: could not write the tools status: %s", *key, exc)
            return
        if self._on_status_changed is not None:
            await self._on_status_changed(key)


def _scaled_to_zero(spec: MCPServerSpec) -> bool:
    """spec.replicas 0 on a server mcpfleet runs: its Pods are going, and its tools leave the catalog."""
    return spec.endpoint is None and spec.replicas == 0


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def tools_status(
    previous: MCPServerStatus, outcome: Outcome, revision: int, owner: Owner, spec: MCPServerSpec, now: str
) -> MCPServerStatus:
    """status.tools and the ToolsSynced / ToolsDrifted conditions from the latest confirmation."""
    generation = owner.generation
    entry = outcome.entry
    tools = previous.tools
    conditions = list(previous.conditions or ())
    if entry is not None and entry.server is not None:
        names = sorted(tool.upstream_name for tool in entry.server.tools)
        unchanged = tools is not None and tools.digest == entry.server.tools_digest
        tools = ToolsStatus(
            count=len(names),
            digest=entry.server.tools_digest,
            names=names[:MAX_STATUS_NAMES],
            pending_digest=entry.pending_digest,
            pending=list(entry.pending[:MAX_STATUS_NAMES]) or None,
            drifted=list(entry.drifted[:MAX_STATUS_NAMES]) or None,
            catalog_revision=revision or None,
            # When the tools last changed: a restart confirming the same tools is not news (and writes nothing).
            synced_at=tools.synced_at if unchanged and tools is not None else now,
        )
        conditions = set_condition(conditions, TOOLS_DRIFTED, *_drift_condition(entry), generation, now)
    if outcome.failure is not None:
        synced = ("False", outcome.failure.reason, f"{outcome.source}: {outcome.failure.message}")
    elif outcome.mismatch is not None:
        synced = ("False", "ReportMismatch", outcome.mismatch)
    elif entry is not None and entry.pending:
        patch = '{"spec":{"tools":{"approvedDigest":"' + str(entry.pending_digest) + '"}}}'
        synced = (
            "False",
            "AwaitingApproval",
            f"{len(entry.pending)} new or changed tools wait for approval ({', '.join(entry.pending[:10])}); "
            f"approve with: kubectl patch mcps {owner.name} -n {owner.namespace} --type merge -p '{patch}'",
        )
    elif entry is not None and entry.server is not None:
        synced = (
            "True",
            "Synced",
            f"{len(entry.server.tools)} tools from {outcome.source} in catalog revision {revision}",
        )
    elif entry is not None:
        synced = ("False", "NotReachable", "stdio servers cannot be cataloged: use streamable-http or sse")
    else:
        return previous
    conditions = set_condition(conditions, TOOLS_SYNCED, *synced, generation, now)
    return previous.model_copy(update={"tools": tools, "conditions": conditions})


def _drift_condition(entry: ServerEntry) -> tuple[str, str, str]:
    if entry.drifted and entry.pending:
        return "True", "HeldForApproval", f"changed and held until approved: {', '.join(entry.drifted[:20])}"
    if entry.drifted:
        return "True", "DefinitionsChanged", f"changed description or input schema: {', '.join(entry.drifted[:20])}"
    return "False", "NoDrift", "no tool changed its definition under the same name"


__all__ = ["CatalogWriter", "Subject", "ToolSync", "pod_url", "tools_status"]
