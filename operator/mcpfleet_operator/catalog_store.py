"""Contract 3's storage: the catalog ConfigMap, its revisions, and rollback.

The current catalog is ConfigMap ``<name>`` key ``catalog.json`` (what the gateway watches or mounts).
Every revision written is also kept as its own ConfigMap ``<name>-r<revision>``, the newest ``keep`` of
them, so a rollback needs nothing but the API server and no single object grows toward the 1 MiB limit.

Writes never lose an update: the current ConfigMap is replaced with the resourceVersion it was read at,
and a 409 Conflict (someone wrote in between) means read again and decide again. Identical content is not
written at all, and a catalog a person pinned (a rollback with ``pin``) is left alone until unpinned.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mcpfleet_contracts.catalog import CATALOG_CONFIGMAP, CATALOG_KEY, DEFAULT_SEPARATOR, Catalog, CatalogServer
from mcpfleet_operator.builders.model import CONFIG_MAP
from mcpfleet_operator.kube import KubeClient, KubeError

logger = logging.getLogger(__name__)

LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_CATALOG = "mcpfleet.io/catalog"
LABEL_REVISION = "mcpfleet.io/catalog-revision"
ANNOTATION_REVISION = "mcpfleet.io/catalog-revision"
ANNOTATION_DIGEST = "mcpfleet.io/catalog-digest"
ANNOTATION_ROLLED_BACK_FROM = "mcpfleet.io/rolled-back-from"
ANNOTATION_PINNED = "mcpfleet.io/catalog-pinned"

# A ConfigMap holds at most 1 MiB in all; leave room for its metadata.
MAX_CATALOG_BYTES = 1_000_000
# Attempts at one write while other writers keep winning the race; then the 409 goes to the caller.
MAX_ATTEMPTS = 10
# Bound on the history objects one listing reads (keep is at most 50; leftovers are pruned as found).
_HISTORY_LIST_LIMIT = 500
_MANAGED_ANNOTATIONS = (ANNOTATION_REVISION, ANNOTATION_DIGEST, ANNOTATION_ROLLED_BACK_FROM, ANNOTATION_PINNED)


class CatalogUnreadable(ValueError):
    """The current ConfigMap holds a catalog.json that is not a valid catalog (edited by hand)."""


class RevisionNotFound(LookupError):
    """A revision that is not (or no longer) among the kept ones."""


class CatalogTooLarge(ValueError):
    """The catalog does not fit in one ConfigMap."""


@dataclass(frozen=True)
class StoredCatalog:
    catalog: Catalog
    resource_version: str
    pinned: bool


@dataclass(frozen=True)
class WriteResult:
    revision: int | None  # the revision written; None when skipped
    skipped: str | None  # "unchanged" | "pinned"
    conflicts: int  # 409 Conflicts met (and retried) on the way


@dataclass(frozen=True)
class CatalogRevision:
    """One kept revision with what a person needs to pick it for a rollback."""

    catalog: Catalog
    rolled_back_from: int | None
    pinned: bool


@dataclass(frozen=True)
class _Current:
    """The current ConfigMap as read: ``catalog`` is None when it is missing or does not parse."""

    obj: dict[str, Any] | None
    catalog: Catalog | None
    problem: str | None

    @property
    def resource_version(self) -> str:
        return str(((self.obj or {}).get("metadata") or {}).get("resourceVersion") or "")

    @property
    def annotations(self) -> dict[str, str]:
        return dict(((self.obj or {}).get("metadata") or {}).get("annotations") or {})

    @property
    def pinned(self) -> bool:
        return self.annotations.get(ANNOTATION_PINNED) == "true"


def content_digest(servers: Sequence[CatalogServer], separator: str) -> str:
    """sha256 over what clients see (servers and separator), blind to revision and time of writing."""
    document = {
        "separator": separator,
        "servers": [server.model_dump(mode="json", by_alias=True) for server in servers],
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _parse(text: str | None, what: str) -> tuple[Catalog | None, str | None]:
    if text is None:
        return None, None
    try:
        return Catalog.model_validate_json(text), None
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        location = ".".join(str(part) for part in first["loc"]) or "(top level)"
        return None, f"{what} key {CATALOG_KEY} is not a valid catalog: {location}: {first['msg']}"


def _catalog_text(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("data") or {}).get(CATALOG_KEY)
    return str(value) if value is not None else None


def _revision_label(obj: Mapping[str, Any]) -> int | None:
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class CatalogStore:
    """The catalog ConfigMap ``name`` in ``namespace`` with its newest ``keep`` revisions."""

    def __init__(self, client: KubeClient, namespace: str, name: str = CATALOG_CONFIGMAP, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError("keep at least one revision")
        self._client = client
        self.namespace = namespace
        self.name = name
        self.keep = keep

    def history_name(self, revision: int) -> str:
        return f"{self.name}-r{revision}"

    # -- reading ----------------------------------------------------------------------------------

    async def read(self, *, strict: bool = False) -> StoredCatalog | None:
        """The current catalog; None when there is none yet, or when the stored one does not parse (a warning:
        the next write overwrites it) — with ``strict``, CatalogUnreadable saying what is wrong instead."""
        current = await self._read_current()
        if current.problem is not None:
            if strict:
                raise CatalogUnreadable(current.problem)
            logger.warning("%s; it is overwritten with the next revision", current.problem)
            return None
        if current.catalog is None:
            return None
        return StoredCatalog(current.catalog, current.resource_version, current.pinned)

    async def revisions(self) -> list[CatalogRevision]:
        """The kept revisions, newest first, at most ``keep``."""
        kept: list[CatalogRevision] = []
        for obj in await self._history_objects():
            catalog, problem = _parse(_catalog_text(obj), f"ConfigMap {self.namespace}/{obj['metadata']['name']}")
            if catalog is None:
                logger.warning("skipping a catalog revision that cannot be read: %s", problem)
                continue
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            origin = annotations.get(ANNOTATION_ROLLED_BACK_FROM)
            kept.append(
                CatalogRevision(
                    catalog=catalog,
                    rolled_back_from=int(origin) if origin and origin.isdigit() else None,
                    pinned=annotations.get(ANNOTATION_PINNED) == "true",
                )
            )
        return kept[: self.keep]

    async def history(self) -> list[Catalog]:
        """The kept revisions' catalogs, newest first, at most ``keep``."""
        return [entry.catalog for entry in await self.revisions()]

    async def get_revision(self, revision: int) -> Catalog:
        """One kept revision; RevisionNotFound names the ones that are kept."""
        obj = await self._client.get(CONFIG_MAP, self.namespace, self.history_name(revision))
        if obj is not None:
            catalog, problem = _parse(_catalog_text(obj), f"ConfigMap {self.namespace}/{self.history_name(revision)}")
            if catalog is None:
                raise CatalogUnreadable(problem or f"{self.history_name(revision)} holds no {CATALOG_KEY}")
            return catalog
        current = await self._read_current()
        if current.catalog is not None and current.catalog.revision == revision:
            return current.catalog
        kept = sorted((r for r in map(_revision_label, await self._history_objects()) if r is not None), reverse=True)
        listing = ", ".join(str(r) for r in kept) or "none"
        raise RevisionNotFound(
            f"revision {revision} of catalog {self.namespace}/{self.name} is not kept (kept revisions: {listing})"
        )

    # -- writing ----------------------------------------------------------------------------------

    async def write(self, servers: Sequence[CatalogServer], *, separator: str = DEFAULT_SEPARATOR) -> WriteResult:
        """Write the servers as the next revision unless they are what is stored already or a person pinned
        the current revision; a concurrent writer costs a re-read, never an overwritten update."""
        servers = tuple(servers)
        digest = content_digest(servers, separator)
        conflicts = 0
        for _ in range(MAX_ATTEMPTS):
            current = await self._read_current()
            if current.catalog is not None:
                stored = current.catalog
                if content_digest(stored.servers, stored.separator) == digest:
                    await self._ensure_history(current, stored)
                    return WriteResult(None, "unchanged", conflicts)
                if current.pinned:
                    return WriteResult(None, "pinned", conflicts)
            try:
                written = await self._write_next(current, servers, separator, digest, {})
            except KubeError as exc:
                if exc.status != 409:
                    raise
                conflicts += 1
                logger.info("catalog %s/%s changed while writing; reading it again", self.namespace, self.name)
                continue
            return WriteResult(written.revision, None, conflicts)
        raise self._gave_up()

    async def rollback(self, revision: int, *, pin: bool = False) -> Catalog:
        """Write revision ``revision``'s servers again as a new revision (current + 1), marked as rolled back;
        with ``pin`` the operator leaves it in place until ``unpin``."""
        source = await self.get_revision(revision)
        annotations = {ANNOTATION_ROLLED_BACK_FROM: str(revision)}
        if pin:
            annotations[ANNOTATION_PINNED] = "true"
        digest = content_digest(source.servers, source.separator)
        for _ in range(MAX_ATTEMPTS):
            current = await self._read_current()
            try:
                written = await self._write_next(current, source.servers, source.separator, digest, annotations)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                continue
            logger.info(
                "catalog %s/%s rolled back to revision %d as revision %d%s",
                self.namespace,
                self.name,
                revision,
                written.revision,
                " (pinned)" if pin else "",
            )
            return written
        raise self._gave_up()

    async def unpin(self) -> None:
        """Let the operator write again; the next change it sees becomes the next revision."""
        for _ in range(MAX_ATTEMPTS):
            current = await self._read_current()
            if current.obj is None or not current.pinned:
                return
            obj = copy.deepcopy(current.obj)
            obj["metadata"]["annotations"].pop(ANNOTATION_PINNED, None)
            try:
                await self._client.replace(CONFIG_MAP, obj)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                continue
            return
        raise self._gave_up()

    # -- the parts --------------------------------------------------------------------------------

    async def _read_current(self) -> _Current:
        obj = await self._client.get(CONFIG_MAP, self.namespace, self.name)
        if obj is None:
            return _Current(None, None, None)
        catalog, problem = _parse(_catalog_text(obj), f"ConfigMap {self.namespace}/{self.name}")
        return _Current(obj, catalog, problem)

    async def _base_revision(self, current: _Current) -> int:
        """The revision the next one follows; without a readable current catalog, the newest kept one."""
        if current.catalog is not None:
            return current.catalog.revision
        kept = [r for r in map(_revision_label, await self._history_objects()) if r is not None]
        if current.problem is not None:
            logger.warning("%s; it is overwritten with the next revision", current.problem)
        return max(kept, default=0)

    async def _write_next(
        self,
        current: _Current,
        servers: Sequence[CatalogServer],
        separator: str,
        digest: str,
        extra_annotations: Mapping[str, str],
    ) -> Catalog:
        """Write revision base + 1 to the current ConfigMap (409 when someone else was quicker), then keep it
        as history and prune."""
        revision = await self._base_revision(current) + 1
        catalog = Catalog(
            revision=revision,
            generated_at=datetime.datetime.now(datetime.UTC),
            separator=separator,
            servers=tuple(servers),
        )
        text = catalog.dump()
        size = len(text.encode())
        if size > MAX_CATALOG_BYTES:
            raise CatalogTooLarge(
                f"catalog revision {revision} is {size} bytes, more than the {MAX_CATALOG_BYTES} a ConfigMap holds: "
                "deny tools (spec.tools.deny) or split servers so that fewer tools are cataloged"
            )
        annotations = {ANNOTATION_REVISION: str(revision), ANNOTATION_DIGEST: digest, **extra_annotations}
        if current.obj is None:
            await self._client.create(CONFIG_MAP, self._current_manifest(None, text, annotations))
        else:
            await self._client.replace(CONFIG_MAP, self._current_manifest(current.obj, text, annotations))
        logger.info("catalog %s/%s revision %d written", self.namespace, self.name, revision)
        await self._client.apply(CONFIG_MAP, self._history_manifest(revision, text, annotations))
        await self._prune()
        return catalog

    async def _ensure_history(self, current: _Current, catalog: Catalog) -> None:
        """Keep the current revision as history if an earlier write stopped between the two objects."""
        if await self._client.get(CONFIG_MAP, self.namespace, self.history_name(catalog.revision)) is not None:
            return
        annotations = {k: v for k, v in current.annotations.items() if k in _MANAGED_ANNOTATIONS}
        text = _catalog_text(current.obj or {}) or catalog.dump()
        await self._client.apply(CONFIG_MAP, self._history_manifest(catalog.revision, text, annotations))
        logger.info("catalog %s/%s revision %d kept as history", self.namespace, self.name, catalog.revision)

    def _current_manifest(
        self, existing: Mapping[str, Any] | None, text: str, annotations: Mapping[str, str]
    ) -> dict[str, Any]:
        """The current ConfigMap with the new catalog; what others put on it (labels, other keys) stays."""
        obj: dict[str, Any] = copy.deepcopy(dict(existing)) if existing is not None else {}
        obj["apiVersion"] = "v1"
        obj["kind"] = "ConfigMap"
        meta = obj.setdefault("metadata", {})
        meta["name"] = self.name
        meta["namespace"] = self.namespace
        labels = meta.get("labels") or {}
        labels.setdefault(LABEL_PART_OF, "mcpfleet")
        meta["labels"] = labels
        kept = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _MANAGED_ANNOTATIONS}
        meta["annotations"] = {**kept, **annotations}
        obj["data"] = {**(obj.get("data") or {}), CATALOG_KEY: text}
        return obj

    def _history_manifest(self, revision: int, text: str, annotations: Mapping[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.history_name(revision),
                "namespace": self.namespace,
                "labels": {LABEL_PART_OF: "mcpfleet", LABEL_CATALOG: self.name, LABEL_REVISION: str(revision)},
                "annotations": dict(annotations),
            },
            "data": {CATALOG_KEY: text},
        }

    async def _history_objects(self) -> list[dict[str, Any]]:
        """This catalog's history ConfigMaps, newest revision first."""
        items = await self._client.list(
            CONFIG_MAP, self.namespace, label_selector=f"{LABEL_CATALOG}={self.name}", limit=_HISTORY_LIST_LIMIT
        )
        # The selector is the API server's job; checking again keeps a lax server from mixing catalogs.
        ours = [
            obj
            for obj in items
            if ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_CATALOG) == self.name
            and _revision_label(obj) is not None
        ]
        return sorted(ours, key=lambda obj: _revision_label(obj) or 0, reverse=True)

    async def _prune(self) -> None:
        for obj in (await self._history_objects())[self.keep :]:
            name = obj["metadata"]["name"]
            if await self._client.delete(CONFIG_MAP, self.namespace, name):
                logger.info("catalog revision %s/%s pruned (keeping %d)", self.namespace, name, self.keep)

    def _gave_up(self) -> KubeError:
        return KubeError(
            409,
            "Conflict",
            f"catalog {self.namespace}/{self.name} kept changing during {MAX_ATTEMPTS} attempts to write it; "
            "another writer is busy (a second operator without peering?)",
        )
