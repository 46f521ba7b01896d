"""A thin async client over kubernetes_asyncio's ApiClient: raw paths, discovery, paging, logs, exec.

Every call goes through ``K8sBackend.request`` (or ``stream``), which classifies API and transport
errors once, here, into the base's tool errors: unreachable or 5xx -> BackendUnavailable naming the API
server; 404 -> NotFound naming the object; 403 -> Refused naming the permission the ServiceAccount
lacks; 400/422 -> InvalidArgument naming the field the API server's Status names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.stream import WsApiClient

from mcpfleet_servers.base.kube import kubeconfig_loader
from mcpfleet_servers.base.paging import CONTINUE_FIELD, Budget, Page, decode_token, encode_token
from mcpfleet_servers.base.toolkit import BackendUnavailable, InvalidArgument, NotFound, Refused, ToolFailure
from mcpfleet_servers.k8s_ops.redact import redact_text
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings

T = TypeVar("T")

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
_MAX_CONTEXTS = 8
_DISCOVERY_TTL = 300.0

# kubernetes_asyncio logs every whole response body at DEBUG: Secrets' data, literal env values, kubeconfigs
# in annotations. The log filter's free-text redaction cannot know those fields, so at MCP_LOG_LEVEL=DEBUG
# they reached the server log; start() holds these records back at the source instead.
_RESPONSE_BODY_LOGGER = "kubernetes_asyncio.client.rest"


@dataclass(frozen=True)
class ResourceType:
    """One kind the API server serves, from discovery."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str] = frozenset()
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """``plural.group`` as RBAC and kubectl name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            prefix += f"/namespaces/{namespace}"
        path = f"{prefix}/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


POD = ResourceType("", "v1", "Pod", "pods", True, frozenset({"get", "list"}), ("po",))
NAMESPACE = ResourceType("", "v1", "Namespace", "namespaces", False, frozenset({"get", "list"}), ("ns",))
NODE = ResourceType("", "v1", "Node", "nodes", False, frozenset({"get", "list"}), ("no",))
SERVICE = ResourceType("", "v1", "Service", "services", True, frozenset({"get", "list"}), ("svc",))
EVENT = ResourceType("", "v1", "Event", "events", True, frozenset({"get", "list"}), ("ev",))
DEPLOYMENT = ResourceType("apps", "v1", "Deployment", "deployments", True, frozenset({"get", "list"}), ("deploy",))
REPLICASET = ResourceType("apps", "v1", "ReplicaSet", "replicasets", True, frozenset({"get", "list"}), ("rs",))
POD_METRICS = ResourceType("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", True, frozenset({"get", "list"}))
NODE_METRICS = ResourceType("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", False, frozenset({"get", "list"}))


@dataclass(frozen=True)
class Target:
    """What a call is about, for error messages: verb, resource, namespace, name."""

    verb: str
    resource: ResourceType | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str = ""

    def describe(self) -> str:
        kind = self.resource.kind if self.resource else "object"
        where = f"{self.namespace}/" if self.namespace and self.resource and self.resource.namespaced else ""
        return f"{kind} {where}{self.name}" if self.name else f"{kind} list"

    def permission(self) -> str:
        res = self.resource.resource if self.resource else "the resource"
        if self.subresource:
            res += f"/{self.subresource}"
        scope = f" in namespace {self.namespace}" if self.namespace else " cluster-wide"
        return f"'{self.verb}' on {res}{scope}"


@dataclass
class _Cluster:
    api: k8s.ApiClient
    server: str
    discovered_at: float = 0.0
    types: list[ResourceType] = field(default_factory=list)


def _status_body(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body or "{}")
    except (TypeError, ValueError):
        return {"message": str(body or "")[:500]}
    return data if isinstance(data, dict) else {}


def classify(status: int, body: Any, target: Target, server: str) -> ToolFailure | InvalidArgument:
    """The tool error for one failed API response: the single place API statuses become tool errors."""
    status_obj = _status_body(body)
    message = redact_text(str(status_obj.get("message") or status_obj.get("reason") or f"HTTP {status}"))
    backend = f"Kubernetes API at {server}"
    if status == 404:
        return NotFound(f"{target.describe()} not found ({message})")
    if status == 403:
        return Refused(
            f"the server's ServiceAccount lacks permission {target.permission()}: {message}. "
            "Grant it in the MCPServer's spec.rbac (e.g. preset: operator) or a Role bound to that ServiceAccount."
        )
    if status == 401:
        return Refused(f"{backend} rejected the server's credentials: {message}")
    if status in (400, 422):
        causes = (status_obj.get("details") or {}).get("causes") or []
        fields = [str(c.get("field")) for c in causes if isinstance(c, dict) and c.get("field")]
        return InvalidArgument(fields[0] if fields else "manifest", message, {"causes": causes, "status": status})
    if status == 409:
        return ToolFailure(f"conflict on {target.describe()}: {message}")
    if status == 429:
        return BackendUnavailable(backend, f"throttled (429): {message}")
    if status >= 500 and target.subresource in ("log", "exec"):
        # The API server proxies logs and exec to the node's kubelet; a 5xx here is (almost always) the
        # kubelet being unreachable, and blaming the API server would send the user the wrong way.
        return ToolFailure(
            f"the API server could not reach the kubelet of {target.describe()}'s node for its "
            f"{'logs' if target.subresource == 'log' else 'exec'} (HTTP {status}): {message}. The node may be "
            "down or unreachable from the control plane; check list_nodes and get_pod."
        )
    if status >= 500 or status == 0:
        return BackendUnavailable(backend, f"HTTP {status}: {message}")
    return ToolFailure(f"{target.describe()}: HTTP {status}: {message}")


class K8sBackend:
    """The Kubernetes API for the k8s-ops tools; one ApiClient per kubeconfig context, created in start()."""

    def __init__(self, settings: K8sOpsSettings) -> None:
        self._settings = settings
        self._clusters: OrderedDict[str | None, _Cluster] = OrderedDict()
        self._lock = asyncio.Lock()
        self._contexts: list[str] = []
        self._current_context: str | None = None
        self._in_cluster = False
        self._config_error: str | None = None

    @property
    def contexts(self) -> list[str]:
        return list(self._contexts)

    @property
    def current_context(self) -> str | None:
        return self._current_context

    async def start(self) -> None:
        """Load credentials (no network); a missing config is reported on use, never raised here."""
        logging.getLogger(_RESPONSE_BODY_LOGGER).setLevel(logging.INFO)
        kubeconfig = self._settings.kubeconfig_path
        try:
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                self._in_cluster = True
            else:
                contexts, active = await asyncio.to_thread(k8s_config.list_kube_config_contexts, kubeconfig)
                self._contexts = [str(c.get("name")) for c in contexts]
                self._current_context = self._settings.context or (str(active.get("name")) if active else None)
            await self._client(None)
        except (k8s_config.ConfigException, OSError, BackendUnavailable, ValueError, KeyError, TypeError) as exc:
            self._config_error = str(exc)

    async def close(self) -> None:
        async with self._lock:
            clusters = list(self._clusters.values())
            self._clusters.clear()
        for cluster in clusters:
            await cluster.api.close()

    async def _client(self, context: str | None) -> _Cluster:
        key = context or None
        async with self._lock:
            if key in self._clusters:
                self._clusters.move_to_end(key)
                return self._clusters[key]
            if key is not None and self._in_cluster:
                raise InvalidArgument("context", "the server runs with in-cluster credentials and has no contexts")
            if key is not None and self._contexts and key not in self._contexts:
                raise InvalidArgument("context", f"unknown kubeconfig context; known: {', '.join(self._contexts)}")
            configuration = k8s.Configuration()
            try:
                if self._in_cluster:
                    k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                else:
                    # Reading and parsing the file happens off the event loop; load_kube_config would block on it.
                    loader = await asyncio.to_thread(
                        kubeconfig_loader, self._settings.kubeconfig_path, key or self._settings.context
                    )
                    await loader.load_and_set(configuration)
            except (k8s_config.ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
                raise BackendUnavailable(
                    "Kubernetes API", f"no usable kubeconfig or in-cluster credentials: {exc}"
                ) from exc
            cluster = _Cluster(k8s.ApiClient(configuration=configuration), str(configuration.host))
            self._clusters[key] = cluster
            while len(self._clusters) > _MAX_CONTEXTS:
                _, old = self._clusters.popitem(last=False)
                await old.api.close()
            return cluster

    async def server_url(self, context: str | None = None) -> str:
        return (await self._client(context)).server

    async def request(
        self,
        method: str,
        path: str,
        target: Target,
        *,
        context: str | None = None,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """One API call returning the decoded JSON object; every failure is a classified tool error."""
        if self._config_error is not None and not self._clusters:
            raise BackendUnavailable("Kubernetes API", f"no usable kubeconfig: {self._config_error}")
        cluster = await self._client(context)
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            result = await cluster.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=request_timeout or self._settings.request_timeout_seconds,
            )
        except ApiException as exc:
            raise classify(int(exc.status or 0), exc.body, target, cluster.server) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(
                f"Kubernetes API at {cluster.server}", redact_text(str(exc) or type(exc).__name__)
            ) from None
        if result is None:
            return {}
        if not isinstance(result, dict):
            raise BackendUnavailable(
                f"Kubernetes API at {cluster.server}", f"answered {target.describe()} with a {type(result).__name__}"
            )
        return result

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, target: Target, *, context: str | None = None, query: list[tuple[str, str]] | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A streamed GET (logs): yields an iterator of byte chunks; errors classified like ``request``."""
        cluster = await self._client(context)
        try:
            response = await cluster.api.call_api(
                path,
                "GET",
                query_params=query or [],
                header_params={"Accept": "*/*"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=self._settings.request_timeout_seconds,
            )
        except ApiException as exc:
            raise classify(int(exc.status or 0), exc.body, target, cluster.server) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"Kubernetes API at {cluster.server}", str(exc) or type(exc).__name__) from None
        try:
            if not 200 <= response.status <= 299:
                raise classify(response.status, await response.read(), target, cluster.server)
            yield response.content.iter_chunked(64 * 1024)
        finally:
            response.release()

    async def exec(
        self, namespace: str, pod: str, command: list[str], container: str | None, context: str | None
    ) -> str:
        """Run a command through the pods/exec subresource over a websocket; stdout+stderr as text."""
        cluster = await self._client(context)
        target = Target("create", POD, namespace, pod, "exec")
        query: list[tuple[str, Any]] = [("command", command), ("stdout", "true"), ("stderr", "true")]
        if container:
            query.append(("container", container))
        ws = WsApiClient(configuration=cluster.api.configuration)
        try:
            result = await asyncio.wait_for(
                ws.call_api(
                    POD.path(namespace, pod, "exec"),
                    "GET",
                    query_params=query,
                    header_params={"Accept": "*/*"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                    _preload_content=True,
                    response_types_map={200: "str"},
                ),
                self._settings.request_timeout_seconds,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 400:
                # The upgrade's 400 body (e.g. "does not have a host assigned") is not kept by aiohttp.
                raise await self._exec_refused(namespace, pod, context) from None
            if exc.status >= 400:
                raise classify(exc.status, exc.message, target, cluster.server) from None
            raise ToolFailure(
                f"Kubernetes API at {cluster.server} did not upgrade the pods/exec request of {namespace}/{pod} "
                f"to a websocket (HTTP {exc.status}); exec needs an API server that serves pods/exec"
            ) from None
        except ApiException as exc:
            raise classify(int(exc.status or 0), exc.body, target, cluster.server) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"Kubernetes API at {cluster.server}", str(exc) or type(exc).__name__) from None
        finally:
            await ws.close()
        return result if isinstance(result, str) else str(result or "")

    async def _exec_refused(self, namespace: str, pod: str, context: str | None) -> ToolFailure:
        """Why the API server refused to upgrade a pods/exec request (HTTP 400), from the pod itself."""
        reason = "the container must be running on a node"
        try:
            obj = await self.request(
                "GET", POD.path(namespace, pod), Target("get", POD, namespace, pod), context=context
            )
        except (ToolFailure, InvalidArgument):
            obj = {}
        if obj and not (obj.get("spec") or {}).get("nodeName"):
            phase = (obj.get("status") or {}).get("phase") or "Unknown"
            reason = f"the pod has no node assigned (phase {phase}), so no container runs to exec into"
        return ToolFailure(
            f"the API server refused to exec in pod {namespace}/{pod} (HTTP 400): {reason}. "
            "Check get_pod and list_events."
        )

    # --- discovery -------------------------------------------------------------------------------

    async def discover(self, context: str | None = None) -> list[ResourceType]:
        """Every kind the API server serves (preferred versions first), cached for a few minutes."""
        cluster = await self._client(context)
        if cluster.types and time.monotonic() - cluster.discovered_at < _DISCOVERY_TTL:
            return cluster.types
        target = Target("get", None, None, "discovery")
        core = await self.request("GET", "/api", target, context=context)
        groups = await self.request("GET", "/apis", target, context=context)
        lists: list[tuple[str, str, bool]] = [("", str(v), True) for v in core.get("versions") or []]
        for group in groups.get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("version")
            for version in group.get("versions") or []:
                v = str(version.get("version"))
                lists.append((str(group.get("name")), v, v == preferred))

        async def fetch(group: str, version: str) -> dict[str, Any]:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            try:
                return await self.request("GET", path, target, context=context)
            except (ToolFailure, InvalidArgument):
                return {}

        answers = await asyncio.gather(*(fetch(g, v) for g, v, _ in lists))
        preferred_first = sorted(zip(lists, answers, strict=True), key=lambda pair: not pair[0][2])
        types: list[ResourceType] = []
        for (group, version, _), answer in preferred_first:
            for res in answer.get("resources") or []:
                name = str(res.get("name") or "")
                if not name or "/" in name:
                    continue
                types.append(
                    ResourceType(
                        group,
                        version,
                        str(res.get("kind") or ""),
                        name,
                        bool(res.get("namespaced")),
                        frozenset(res.get("verbs") or ()),
                        tuple(res.get("shortNames") or ()),
                    )
                )
        cluster.types = types
        cluster.discovered_at = time.monotonic()
        return types

    async def resolve(self, kind: str, api_version: str | None = None, context: str | None = None) -> ResourceType:
        """A kind, plural, short name or ``plural.group`` -> its ResourceType; InvalidArgument('kind') if unknown."""
        wanted = kind.strip().lower()
        group_hint: str | None = None
        if "." in wanted:
            wanted, group_hint = wanted.split(".", 1)
        version_hint: str | None = None
        if api_version:
            group_hint, _, version_hint = api_version.rpartition("/")
            group_hint = group_hint or ""
        for rtype in await self.discover(context):
            names = {rtype.kind.lower(), rtype.plural, *rtype.short_names}
            if wanted not in names:
                continue
            if group_hint is not None and rtype.group != group_hint:
                continue
            if version_hint is not None and rtype.version != version_hint:
                continue
            return rtype
        where = f" in {api_version}" if api_version else ""
        raise InvalidArgument(
            "kind", f"the API server serves no kind {kind!r}{where}; use list_resources to see what it serves"
        )

    # --- lists with bounded pages --------------------------------------------------------------------

    async def list_page(
        self,
        rtype: ResourceType,
        *,
        namespace: str | None,
        convert: Callable[[dict[str, Any]], T | None],
        budget: Budget,
        limit: int | None,
        token: str | None,
        fingerprint: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        context: str | None = None,
    ) -> Page[T]:
        """One page of a list, using the API server's limit/continue; falls back to paging in memory
        when the server ignores ``limit``. ``convert`` makes the compact summary (None drops an item).

        A token holds the server's continue value of the chunk being read and how many items of that
        chunk were already returned, so a page cut by the byte budget resumes exactly where it stopped.
        """
        position = decode_token(token, fingerprint)
        if position is not None and not isinstance(position, dict):
            raise InvalidArgument(CONTINUE_FIELD, "not a continuation token of this list")
        position = position or {}
        wanted = budget.items(limit)
        query: list[tuple[str, str]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        target = Target("list", rtype, namespace)
        path = rtype.path(namespace)

        if "o" in position:  # the server does not chunk: the position is an offset into the whole list
            items = await self._whole_list(path, target, query, context, label_selector)
            return _page_in_memory(items, int(position["o"]), wanted, budget, convert, fingerprint)

        server_continue = position.get("c")
        skip = int(position.get("s", 0))
        chunk_query = [*query, ("limit", str(wanted + skip))]
        if server_continue:
            chunk_query.append(("continue", str(server_continue)))
        answer = await self.request("GET", path, target, context=context, query=chunk_query)
        raw_items = answer.get("items") or []
        meta = answer.get("metadata") or {}
        if len(raw_items) > wanted + skip and not meta.get("continue"):
            # The server ignored limit; page the whole list in memory (selectors applied here too).
            items = [i for i in raw_items if _labels_match(i, label_selector)]
            return _page_in_memory(items, 0, wanted, budget, convert, fingerprint)

        page: list[T] = []
        used = 0
        consumed = skip
        cut_note: str | None = None
        for item in raw_items[skip:]:
            summary = convert(item)
            if summary is not None:
                size = _size(summary)
                if page and used + size > budget.max_bytes:
                    cut_note = f"cut at {len(page)} items to stay within {budget.max_bytes} bytes"
                    break
                page.append(summary)
                used += size
            consumed += 1
        next_position: dict[str, Any] | None = None
        if consumed < len(raw_items):
            next_position = {"c": server_continue, "s": consumed}
        elif meta.get("continue"):
            next_position = {"c": meta["continue"], "s": 0}
        remaining = meta.get("remainingItemCount")
        note = cut_note
        if next_position is not None and note is None:
            note = "more items exist; pass continue_token for the next page"
        return Page[T](
            items=page,
            truncated=next_position is not None,
            continue_token=encode_token(next_position, fingerprint) if next_position else None,
            total=None if remaining is None else len(raw_items) + int(remaining),
            note=note,
        )

    async def _whole_list(
        self,
        path: str,
        target: Target,
        query: list[tuple[str, str]],
        context: str | None,
        label_selector: str | None,
    ) -> list[dict[str, Any]]:
        answer = await self.request("GET", path, target, context=context, query=query)
        return [i for i in answer.get("items") or [] if _labels_match(i, label_selector)]


def _size(item: Any) -> int:
    dump = getattr(item, "model_dump_json", None)
    return len(dump()) if dump is not None else len(json.dumps(item, default=str))


def _page_in_memory(
    items: list[dict[str, Any]],
    start: int,
    wanted: int,
    budget: Budget,
    convert: Callable[[dict[str, Any]], T | None],
    fingerprint: str,
) -> Page[T]:
    if start < 0 or start > len(items):
        raise InvalidArgument(CONTINUE_FIELD, "the token points outside the list; start again without it")
    page: list[T] = []
    used = 0
    index = start
    note: str | None = None
    while index < len(items) and len(page) < wanted:
        summary = convert(items[index])
        if summary is not None:
            size = _size(summary)
            if page and used + size > budget.max_bytes:
                note = f"cut at {len(page)} items to stay within {budget.max_bytes} bytes"
                break
            page.append(summary)
            used += size
        index += 1
    more = index < len(items)
    if more and note is None:
        note = f"showing items {start + 1}-{index} of {len(items)}; pass continue_token for more"
    return Page[T](
        items=page,
        truncated=more,
        continue_token=encode_token({"o": index}, fingerprint) if more else None,
        total=len(items),
        note=note,
    )


_SET_EXPR = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def labels_match(labels: dict[str, str], selector: str | None) -> bool:
    """Kubernetes label-selector semantics (=, ==, !=, in, notin, exists, !exists)."""
    if not selector:
        return True
    for term in _split_selector(selector):
        set_match = _SET_EXPR.match(term)
        if set_match:
            key, op, values = set_match.groups()
            options = {v.strip() for v in values.split(",")}
            if (labels.get(key) in options) != (op == "in"):
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _labels_match(item: dict[str, Any], selector: str | None) -> bool:
    return labels_match((item.get("metadata") or {}).get("labels") or {}, selector)
