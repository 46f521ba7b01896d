"""`mcpfleet release cleanup`: what `helm uninstall` cannot do by itself, run by the chart's pre-delete hook.

Helm deletes the operator together with the chart's MCPServers, and nothing would then remove the operator's
finalizer from them: they would stay, and so would the cluster-wide grants the finalizer removes. So while the
operator still runs, this deletes the MCPServers of a label selector and waits (bounded) until the operator has
finalized them. Their removal changes the catalog; once the operator has written that revision (the catalog no
longer lists them), the catalog's history copies ``<name>-r<N>`` go too: the operator writes them, not Helm, so
uninstall would leave them behind.

Only the operator's own history copies are deleted: a ConfigMap qualifies when its label
``mcpfleet.io/catalog`` names the catalog, its ``mcpfleet.io/catalog-revision`` label is a number N, and its
name is exactly ``<catalog>-r<N>``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mcpfleet_contracts.catalog import CATALOG_CONFIGMAP, CATALOG_KEY, Catalog

if TYPE_CHECKING:
    from mcpfleet_operator.kube import KubeClient

Echo = Callable[[str], None]

# Seconds between listings while waiting; each listing is one small request.
POLL_INTERVAL = 0.5
# Bound on the objects one listing reads; more are handled by the next listing, after these are deleted.
LIST_LIMIT = 1000
# The operator keeps a revision as history right after writing it; waiting longer means there will be no copy
# (a catalog edited by hand), not that it is late.
HISTORY_GRACE_SECONDS = 5.0
# Passes over the history: a copy written while the first pass deleted is caught by the next.
HISTORY_PASSES = 3
# Objects named in one report line before the rest is counted.
MAX_NAMED = 20

LABEL_CATALOG = "mcpfleet.io/catalog"
LABEL_REVISION = "mcpfleet.io/catalog-revision"
ANNOTATION_PINNED = "mcpfleet.io/catalog-pinned"

# Equality-based terms only: key=value, key==value, key!=value, key, !key.
_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_TERM = re.compile(rf"^(?P<negated>!)?(?P<key>{_KEY})(?:(?P<op>==|!=|=)(?P<value>{_VALUE}))?$")


class SelectorError(ValueError):
    """A label selector this command does not accept; the message says what to change."""


class CleanupIncomplete(Exception):
    """The wait ran out: ``lines`` name what is still there and why."""

    def __init__(self, summary: str, lines: tuple[str, ...]) -> None:
        super().__init__(summary)
        self.summary = summary
        self.lines = lines


@dataclass(frozen=True)
class LabelSelector:
    """An equality-based label selector, checked again on what the API server returns."""

    text: str
    equal: tuple[tuple[str, str], ...] = ()
    unequal: tuple[tuple[str, str], ...] = ()
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse ``text``; a selector that would not pin down a release (no key=value term) is refused."""
        equal: list[tuple[str, str]] = []
        unequal: list[tuple[str, str]] = []
        present: list[str] = []
        absent: list[str] = []
        terms = [term.strip() for term in text.split(",")] if text.strip() else []
        for term in terms:
            match = _TERM.match(term)
            if match is None:
                raise SelectorError(
                    f"selector term {term!r} is not key=value, key!=value, key or !key "
                    "(set-based terms such as `key in (a,b)` are not accepted here)"
                )
            key, op, value = match["key"], match["op"], match["value"] or ""
            if match["negated"] and op is not None:
                raise SelectorError(f"selector term {term!r}: `!` goes only before a bare key (!key)")
            if op in ("=", "=="):
                equal.append((key, value))
            elif op == "!=":
                unequal.append((key, value))
            elif match["negated"]:
                absent.append(key)
            else:
                present.append(key)
        if not equal:
            raise SelectorError(
                f"selector {text!r} has no key=value term: it could match MCPServers of other releases; "
                "name the release, e.g. app.kubernetes.io/instance=<release>,app.kubernetes.io/managed-by=Helm"
            )
        return cls(",".join(terms), tuple(equal), tuple(unequal), tuple(present), tuple(absent))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (
            all(labels.get(key) == value for key, value in self.equal)
            and all(labels.get(key) != value for key, value in self.unequal)
            and all(key in labels for key in self.present)
            and all(key not in labels for key in self.absent)
        )


@dataclass(frozen=True)
class CleanupOptions:
    selector: LabelSelector
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    catalog_namespace: str = "mcpfleet-system"
    catalog_name: str = CATALOG_CONFIGMAP
    delete_current_catalog: bool = False
    timeout: float = 120.0
    interval: float = POLL_INTERVAL


@dataclass
class CleanupReport:
    servers: list[str] = field(default_factory=list)  # "namespace/name" of each MCPServer deleted
    history: list[str] = field(default_factory=list)  # names of the history ConfigMaps deleted
    current_deleted: bool = False


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _key(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def _named(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_NAMED])
    return shown + (f" and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else "")


def _stuck_line(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    finalizers = ", ".join(meta.get("finalizers") or ()) or "none"
    since = f"deletion requested {meta['deletionTimestamp']}" if meta.get("deletionTimestamp") else "not deleted yet"
    return f"MCPServer {_key(obj)}: {since}, finalizers: {finalizers}"


class Cleanup:
    """One run against the cluster; every wait shares one deadline, ``options.timeout`` from the start."""

    def __init__(self, client: KubeClient, options: CleanupOptions, echo: Echo) -> None:
        self._client = client
        self._options = options
        self._echo = echo
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + options.timeout
        self.report = CleanupReport()

    @property
    def _catalog(self) -> str:
        return f"{self._options.catalog_namespace}/{self._options.catalog_name}"

    def _expired(self) -> bool:
        return self._loop.time() >= self._deadline

    async def run(self) -> CleanupReport:
        await self.delete_servers()
        await self.wait_for_catalog()
        await self.delete_history()
        if self._options.delete_current_catalog:
            await self.delete_current()
        return self.report

    # -- MCPServers -------------------------------------------------------------------------------

    async def _matching_servers(self) -> list[dict[str, Any]] | None:
        """The MCPServers of the selector in the namespaces; None when the API serves no MCPServers."""
        from mcpfleet_operator.builders.model import MCPSERVER  # noqa: PLC0415
        from mcpfleet_operator.kube import NotFound  # noqa: PLC0415

        found: list[dict[str, Any]] = []
        selector = self._options.selector
        for namespace in self._options.namespaces or (None,):
            try:
                items = await self._client.list(MCPSERVER, namespace, label_selector=selector.text, limit=LIST_LIMIT)
            except NotFound:
                return None
            # The selector is the API server's job; checking again keeps a lax server from widening it.
            found.extend(obj for obj in items if selector.matches(_labels(obj)))
        return found

    async def delete_servers(self) -> None:
        """Delete the selector's MCPServers and wait until they are gone (their finalizers cleared)."""
        from mcpfleet_operator.builders.model import MCPSERVER  # noqa: PLC0415

        where = ", ".join(self._options.namespaces) or "every namespace"
        servers = await self._matching_servers()
        if servers is None:
            self._echo("mcpservers: the API server serves no MCPServers (CRD not installed): nothing to delete")
            return
        self._echo(f"mcpservers: {len(servers)} match {self._options.selector.text} in {where}")
        waiting: set[str] = set()
        while servers:
            for obj in servers:
                key, meta = _key(obj), _meta(obj)
                if key not in waiting:
                    waiting.add(key)
                    self.report.servers.append(key)
                # One created meanwhile is deleted too; one already being deleted only waits for its finalizers.
                deleting = bool(meta.get("deletionTimestamp"))
                if not deleting and await self._client.delete(MCPSERVER, meta.get("namespace"), str(meta["name"])):
                    self._echo(f"  deleting MCPServer {key}")
            listed = {_key(obj) for obj in servers}
            for key in sorted(waiting - listed):
                self._echo(f"  MCPServer {key} is gone")
            waiting &= listed
            if self._expired():
                raise CleanupIncomplete(
                    f"{len(servers)} MCPServer(s) still present after {self._options.timeout:.0f}s; the operator "
                    "removes its finalizer (mcpfleet.io/finalizer) once it has deleted what it made for each: check "
                    "that it runs and read its log; any other finalizer belongs to another controller",
                    tuple(_stuck_line(obj) for obj in servers[:MAX_NAMED]),
                )
            await asyncio.sleep(self._options.interval)
            servers = await self._matching_servers() or []
        for key in sorted(waiting):
            self._echo(f"  MCPServer {key} is gone")
        self._echo(f"mcpservers: none left of {self._options.selector.text}")

    # -- the catalog ------------------------------------------------------------------------------

    async def _history(self) -> list[dict[str, Any]]:
        """The catalog's history copies, exactly: label, numeric revision label, and the name they make."""
        from mcpfleet_operator.builders.model import CONFIG_MAP  # noqa: PLC0415

        name = self._options.catalog_name
        items = await self._client.list(
            CONFIG_MAP, self._options.catalog_namespace, label_selector=f"{LABEL_CATALOG}={name}", limit=LIST_LIMIT
        )
        copies = []
        for obj in items:
            labels = _labels(obj)
            revision = labels.get(LABEL_REVISION, "")
            if (
                labels.get(LABEL_CATALOG) == name
                and revision.isascii()
                and revision.isdigit()
                and _meta(obj).get("name") == f"{name}-r{revision}"
            ):
                copies.append(obj)
        return copies

    async def _still_listed(self) -> tuple[list[str], int] | None:
        """The deleted servers the current catalog still lists, and its revision; None when the operator will
        not write it again for them (no catalog, none of them listed, pinned, or not a catalog it can read)."""
        from mcpfleet_operator.builders.model import CONFIG_MAP  # noqa: PLC0415

        current = await self._client.get(CONFIG_MAP, self._options.catalog_namespace, self._options.catalog_name)
        if current is None:
            return None
        if (_meta(current).get("annotations") or {}).get(ANNOTATION_PINNED) == "true":
            self._echo(f"catalog: {self._catalog} is pinned: the operator leaves it as it is")
            return None
        text = (current.get("data") or {}).get(CATALOG_KEY)
        try:
            catalog = Catalog.model_validate_json(str(text)) if text is not None else None
        except ValidationError:
            catalog = None
        if catalog is None:
            return None
        deleted = set(self.report.servers)
        return sorted(s.name for s in catalog.servers if s.name in deleted), catalog.revision

    async def wait_for_catalog(self) -> None:
        """Wait until the catalog no longer lists the deleted servers and that revision is kept as history, so
        that no copy is written after the history is deleted."""
        announced = False
        while True:
            state = await self._still_listed()
            if state is None:
                return
            listed, revision = state
            if not listed:
                break
            if not announced:
                announced = True
                self._echo(
                    f"catalog: {self._catalog} revision {revision} still lists {len(listed)} deleted server(s); "
                    "waiting for the operator to write the next revision"
                )
            if self._expired():
                raise CleanupIncomplete(
                    f"catalog {self._catalog} revision {revision} still lists deleted servers after "
                    f"{self._options.timeout:.0f}s; the operator writes the next revision once it has finalized "
                    "them: check that it runs and read its log",
                    (f"listed: {_named(listed)}",),
                )
            await asyncio.sleep(self._options.interval)
        self._echo(f"catalog: {self._catalog} revision {revision} lists none of the deleted servers")
        if revision == 0:
            return  # the chart's empty bootstrap catalog: never kept as history
        grace = min(self._deadline, self._loop.time() + HISTORY_GRACE_SECONDS)
        expected = f"{self._options.catalog_name}-r{revision}"
        while not any(_meta(obj).get("name") == expected for obj in await self._history()):
            if self._loop.time() >= grace:
                self._echo(f"catalog: revision {revision} is not kept as {expected} (edited by hand?); going on")
                return
            await asyncio.sleep(self._options.interval)

    async def delete_history(self) -> None:
        from mcpfleet_operator.builders.model import CONFIG_MAP  # noqa: PLC0415

        namespace = self._options.catalog_namespace
        for _ in range(HISTORY_PASSES):
            copies = await self._history()
            if not copies:
                break
            for obj in copies:
                name = str(_meta(obj).get("name"))
                if await self._client.delete(CONFIG_MAP, namespace, name):
                    self.report.history.append(name)
                    self._echo(f"  deleted ConfigMap {namespace}/{name}")
        self._echo(f"catalog: {len(self.report.history)} history ConfigMap(s) of {self._catalog} deleted")

    async def delete_current(self) -> None:
        from mcpfleet_operator.builders.model import CONFIG_MAP  # noqa: PLC0415

        namespace, name = self._options.catalog_namespace, self._options.catalog_name
        self.report.current_deleted = await self._client.delete(CONFIG_MAP, namespace, name)
        self._echo(f"catalog: ConfigMap {self._catalog} {'deleted' if self.report.current_deleted else 'not found'}")


async def cleanup(client: KubeClient, options: CleanupOptions, echo: Echo) -> CleanupReport:
    """Delete the selector's MCPServers, wait for the operator to finalize them and to write the catalog without
    them, then delete the catalog's history copies. CleanupIncomplete when ``options.timeout`` passes first."""
    return await Cleanup(client, options, echo).run()


class NoCredentials(Exception):
    """Neither in-cluster credentials nor a usable kubeconfig."""


def run(options: CleanupOptions, kubeconfig: Path | None, context: str | None, echo: Echo, echo_error: Echo) -> int:
    """The command: 0 when everything is gone, 1 when something is left (named) or the API failed, 2 without
    credentials."""
    import aiohttp  # noqa: PLC0415 - the client is heavy to import
    from kubernetes_asyncio.config import ConfigException  # noqa: PLC0415

    from mcpfleet_operator.kube import KubeClient, KubeError, load_api_client  # noqa: PLC0415

    async def main() -> CleanupReport:
        try:
            api = await load_api_client(str(kubeconfig) if kubeconfig else None, context)
        except (ConfigException, OSError) as exc:
            raise NoCredentials(str(exc)) from exc
        client = KubeClient(api, "mcpfleet-cleanup")
        try:
            return await cleanup(client, options, echo)
        finally:
            await client.close()

    try:
        report = asyncio.run(main())
    except NoCredentials as exc:
        echo_error(f"error: no cluster credentials: {exc}; run in a Pod, pass --kubeconfig or set KUBECONFIG")
        return 2
    except CleanupIncomplete as exc:
        echo_error(f"error: {exc.summary}")
        for line in exc.lines:
            echo_error(f"  {line}")
        return 1
    except KubeError as exc:
        hint = "; the credentials lack a permission (the chart's cleanup Role grants it)" if exc.status == 403 else ""
        echo_error(f"error: {exc}{hint}")
        return 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        echo_error(f"error: cannot reach the cluster: {exc or type(exc).__name__}")
        return 1
    deleted = f"{len(report.servers)} MCPServer(s) and {len(report.history)} catalog history ConfigMap(s) deleted"
    echo(f"cleanup done: {deleted}" + (", and the catalog itself" if report.current_deleted else ""))
    return 0
