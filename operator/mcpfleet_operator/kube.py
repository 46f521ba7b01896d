"""A small async client for the objects the operator manages, as plain dicts.

It wraps kubernetes_asyncio's ApiClient (auth, TLS, kubeconfig or in-cluster)
with the handful of calls reconciliation needs, and classifies API errors
once, here, at the boundary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from mcpfleet_operator.builders.model import ResourceKind

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
_TIMEOUT = 30
# A listing asks for pages of at most this many objects, and for at most this many pages.
_PAGE_SIZE = 500
_MAX_PAGES = 100


class KubeError(Exception):
    """An API call failed; ``retryable`` says whether trying again can help."""

    def __init__(self, status: int, reason: str, message: str, causes: tuple[str, ...] = ()) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = causes

    @property
    def namespace_terminating(self) -> bool:
        """The namespace is being deleted: nothing may be created in it, and nothing needs to be."""
        return self.status == 403 and "NamespaceTerminating" in self.causes

    @property
    def retryable(self) -> bool:
        # Conflicts, throttling, timeouts and server-side failures pass; bad requests do not.
        return self.status in (409, 429) or self.status >= 500 or self.status == 0

    @classmethod
    def from_api(cls, exc: ApiException) -> KubeError:
        message = exc.reason or ""
        causes: tuple[str, ...] = ()
        try:
            body = json.loads(exc.body or "{}")
            message = body.get("message") or message
            reason = body.get("reason") or exc.reason or ""
            causes = tuple(str(c.get("reason", "")) for c in (body.get("details") or {}).get("causes") or ())
        except (ValueError, TypeError, AttributeError):
            reason = exc.reason or ""
        return cls(int(exc.status or 0), str(reason), str(message), causes)


class NotFound(KubeError):
    pass


def _raise(exc: ApiException) -> None:
    error = KubeError.from_api(exc)
    if error.status == 404:
        raise NotFound(error.status, error.reason, error.message, error.causes) from exc
    raise error from exc


def object_path(kind: ResourceKind, namespace: str | None, name: str | None = None, subresource: str = "") -> str:
    prefix = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    if kind.namespaced and namespace is not None:
        prefix += f"/namespaces/{namespace}"
    path = f"{prefix}/{kind.plural}"
    if name is not None:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


async def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """An ApiClient from in-cluster credentials, or from a kubeconfig outside a cluster."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        await k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    return k8s.ApiClient(configuration=configuration)


class KubeClient:
    """get/list/create/apply/replace/patch/delete of objects as dicts, writing as one field manager."""

    def __init__(self, api: k8s.ApiClient, field_manager: str) -> None:
        self._api = api
        self.field_manager = field_manager

    def connection(self) -> dict[str, Any]:
        """Server, TLS and credentials of this client, for kopf's own login (one source of truth)."""
        cfg = self._api.configuration
        token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        if token and token.lower().startswith("bearer "):
            token = token[len("bearer ") :]
        return {
            "server": cfg.host,
            "ca_path": cfg.ssl_ca_cert,
            "insecure": not cfg.verify_ssl,
            "certificate_path": cfg.cert_file,
            "private_key_path": cfg.key_file,
            "username": cfg.username or None,
            "password": cfg.password or None,
            "token": token or None,
        }

    async def close(self) -> None:
        await self._api.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            result = await self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=_TIMEOUT,
            )
        except ApiException as exc:
            _raise(exc)
        return dict(result or {})

    async def get(self, kind: ResourceKind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", object_path(kind, namespace, name))
        except NotFound:
            return None

    async def create(self, kind: ResourceKind, manifest: Mapping[str, Any]) -> dict[str, Any]:
        namespace = manifest["metadata"].get("namespace")
        return await self._call(
            "POST",
            object_path(kind, namespace),
            body=manifest,
            query=[("fieldManager", self.field_manager)],
        )

    async def apply(self, kind: ResourceKind, manifest: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply as the operator's field manager (creating the object when it is missing).

        ``force`` takes over fields a person edited; without it such a field is a 409 Conflict.
        """
        meta = manifest["metadata"]
        query = [("fieldManager", self.field_manager)] + ([("force", "true")] if force else [])
        return await self._call(
            "PATCH",
            object_path(kind, meta.get("namespace"), meta["name"]),
            body=manifest,
            query=query,
            content_type=APPLY,
        )

    async def delete(self, kind: ResourceKind, namespace: str | None, name: str) -> bool:
        try:
            await self._call(
                "DELETE",
                object_path(kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except NotFound:
            return False
        return True

    async def patch(
        self, kind: ResourceKind, namespace: str | None, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch of the object itself."""
        return await self._call("PATCH", object_path(kind, namespace, name), body=patch, content_type=MERGE)

    async def patch_status(
        self, kind: ResourceKind, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await self._call(
            "PATCH",
            object_path(kind, namespace, name, "status"),
            body={"status": status},
            content_type=MERGE,
        )

    async def replace(self, kind: ResourceKind, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the whole object; with ``metadata.resourceVersion`` set, a write by someone else since then
        is answered 409 Conflict (KubeError.status == 409) instead of being overwritten."""
        meta = manifest["metadata"]
        return await self._call(
            "PUT",
            object_path(kind, meta.get("namespace"), meta["name"]),
            body=manifest,
            query=[("fieldManager", self.field_manager)],
        )

    async def list(
        self,
        kind: ResourceKind,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """At most ``limit`` objects (all namespaces when ``namespace`` is None), following the API
        server's ``continue`` token page by page; a listing longer than that is cut at ``limit``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        items: list[dict[str, Any]] = []
        token = ""
        for _ in range(_MAX_PAGES):
            query = [("limit", str(min(limit - len(items), _PAGE_SIZE)))]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            page = await self._call("GET", object_path(kind, namespace), query=query)
            items.extend(page.get("items") or ())
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token or len(items) >= limit:
                break
        return items[:limit]
