"""kmock's Kubernetes emulator with the bookkeeping an operator relies on.

kmock stores objects as merged JSON and leaves metadata alone; its docs invite
subclassing for anything more. An operator needs a little more: uid (owner
references), resourceVersion (to prove that nothing was written), generation
(observedGeneration), creationTimestamp, server-side apply creating an
object that does not exist yet, PUT (a whole replacement, refused with
409 Conflict on a stale resourceVersion), and watch=True read as a watch (as
kubernetes-asyncio asks for one). Everything else is kmock's.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import uuid
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest
from kmock._internal import dicts, enums, parsing, rendering

APPLY_PATCH = "application/apply-patch+yaml"

CRD_RESOURCE = "mcpfleet.io/v1alpha1/mcpservers"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)

    def _stamp_new(self, data: dict[str, Any], namespace: str | None) -> None:
        meta = data.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["generation"] = 1
        meta["resourceVersion"] = str(next(self._versions))
        if namespace is not None:
            meta.setdefault("namespace", namespace)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.method == enums.method.PUT and request.resource is not None and request.name is not None:
            return aiohttp.web.json_response(await self._replace(request))
        if request.action == enums.action.LIST and str(request.params.get("watch", "")).lower() in ("true", "1"):
            # The API server parses booleans like Go (watch=True is a watch); kubernetes-asyncio sends "True".
            request = self._as_watch(request)
        data = request.data
        if request.resource is not None and isinstance(data, dict):
            if request.action == enums.action.CREATE:
                self._stamp_new(data, request.namespace)
            elif request.action == enums.action.UPDATE and request.name is not None:
                self._stamp_update(request, data)
        return await super()._handle(request)

    def _stamp_update(self, request: rendering.Request, data: dict[str, Any]) -> None:
        assert request.resource is not None
        key = (request.resource, request.namespace, str(request.name))
        existing = self.objects[key] if key in self.objects else None  # noqa: SIM401 - no .get() there
        if existing is None or existing.deleted:
            if request.headers.get("Content-Type", "").startswith(APPLY_PATCH):
                # Server-side apply creates what does not exist; store it, then patch it as usual.
                created = copy.deepcopy(data)
                self._stamp_new(created, request.namespace)
                self.objects[key] = created
                data.setdefault("metadata", {})["uid"] = created["metadata"]["uid"]
            return
        old = existing.raw
        meta = data.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._versions))
        is_status = request.url.path.endswith("/status")
        if is_status:
            for key_name in list(data):
                if key_name not in ("status", "metadata"):
                    data.pop(key_name)
            return
        merged = dicts.patch_dict(copy.deepcopy(old), data)
        generation = int(old.get("metadata", {}).get("generation") or 1)
        spec_changed = any(merged.get(k) != old.get(k) for k in merged if k not in ("metadata", "status"))
        meta["generation"] = generation + 1 if spec_changed else generation

    def _as_watch(self, request: rendering.Request) -> rendering.Request:
        watch = attrs.evolve(request, action=enums.action.WATCH)
        # kmock's reactions see only the requests it recorded (by identity): record the watch in its place.
        for index in range(len(self._requests) - 1, -1, -1):
            if self._requests[index] is request:
                self._requests[index] = watch
                break
        return watch

    async def _replace(self, request: rendering.Request) -> dict[str, Any]:
        """PUT as the API server does it: the body replaces the object whole (kmock only merges patches),
        and a stale ``metadata.resourceVersion`` is a 409 Conflict instead of a lost update."""
        assert request.resource is not None
        data = request.data if isinstance(request.data, dict) else {}
        key = (request.resource, request.namespace, str(request.name))
        async with self._lock:
            existing = self.objects[key] if key in self.objects else None  # noqa: SIM401 - no .get() there
            if existing is None or existing.deleted or request.subresource:
                raise kmock.KubernetesObjectNotFoundError()
            old = copy.deepcopy(existing.last.raw)
            old_meta = old.get("metadata") or {}
            sent_version = (data.get("metadata") or {}).get("resourceVersion")
            if sent_version and str(sent_version) != str(old_meta.get("resourceVersion")):
                raise kmock.KubernetesError(
                    status=409,
                    reason="Conflict",
                    message=f'Operation cannot be fulfilled on {request.resource.plural} "{request.name}": '
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            new = copy.deepcopy(data)
            meta = new.setdefault("metadata", {})
            for immutable in ("uid", "creationTimestamp", "name", "namespace"):
                if immutable in old_meta:
                    meta[immutable] = old_meta[immutable]
            meta["resourceVersion"] = str(next(self._versions))
            generation = int(old_meta.get("generation") or 1)
            spec_changed = any(new.get(k) != old.get(k) for k in {*new, *old} - {"metadata", "status"})
            meta["generation"] = generation + 1 if spec_changed else generation
            existing.create(new)
            raw: dict[str, Any] = existing.last.raw
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return raw

    # kmock answers fetch/create/update/delete by scanning every stored object (O(N) per request);
    # at a thousand MCPServers that made the emulator, not the operator, the bottleneck. Keyed lookups:

    def _stored(self, request: rendering.Request) -> Any:
        data = request.data if isinstance(request.data, dict) else {}
        meta = data.get("metadata") or {}
        key = (request.resource, request.namespace or meta.get("namespace"), request.name or meta.get("name"))
        return self.objects[key] if key in self.objects else None  # type: ignore[index,operator]  # noqa: SIM401

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        obj = self._stored(request)
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj.raw  # type: ignore[no-any-return]

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        return self._stored(request).raw  # type: ignore[no-any-return]

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        return self._stored(request).last.raw  # type: ignore[no-any-return]

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        return self._stored(request).last.raw  # type: ignore[no-any-return]

    def writes(self, methods: tuple[str, ...] = ("POST", "PATCH", "PUT", "DELETE")) -> list[rendering.Request]:
        """Every write request received so far."""
        return [req for req in self._requests if str(req.method.value) in methods]


def declare_resources(emulator: kmock.KubernetesEmulator) -> None:
    """The built-in kinds plus MCPServer, as kopf discovers them."""
    emulator.resources.load_bundled()
    info = emulator.resources[CRD_RESOURCE]
    info.kind = "MCPServer"
    info.singular = "mcpserver"
    info.namespaced = True
    info.shortnames = {"mcps"}
    info.categories = {"mcpfleet"}
    info.subresources = {"status"}
    info.verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}


def store_object(
    emulator: ApiServerEmulator, plural: str, obj: dict[str, Any], group: str = "", version: str = "v1"
) -> None:
    """Store an object directly (as if created), stamped like the emulator stamps creations: fast fixtures."""
    meta = obj.setdefault("metadata", {})
    emulator._stamp_new(obj, meta.get("namespace"))
    emulator.objects[
        (kmock.resource(group=group, version=version, plural=plural), meta.get("namespace"), meta["name"])
    ] = obj


_parse_path = parsing.parse_path


def _parse_path_with_namespaces(path: str) -> parsing.ParsedPath:
    """kmock 0.8 reads /api/v1/namespaces[/NAME] as a namespace prefix and fails; these are Namespace objects."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) in (3, 4) and parts[2] == "namespaces":
        return parsing.ParsedPath("", parts[1], "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _parse_path(path)


def serve_namespace_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the emulator serve Namespace objects at /api/v1/namespaces (for servers that read namespaces)."""
    monkeypatch.setattr(parsing, "parse_path", _parse_path_with_namespaces)
