"""The Kubernetes side of health_check: a Service and its ready endpoints, read with the Pod's ServiceAccount.

Optional by design: without credentials or an API server the monitoring tools still work, and health_check
says that the Kubernetes part is missing instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from mcpfleet_servers.base.kube import api_client, call_json
from mcpfleet_servers.base.redact import redact_text
from mcpfleet_servers.base.toolkit import BackendUnavailable, NotFound, Refused
from mcpfleet_servers.monitoring.settings import MonitoringSettings

# EndpointSlices of one Service: a few per hundred endpoints; this bounds a pathological answer.
MAX_SLICES = 100
MAX_ADDRESSES = 20
_SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class ServiceEndpoints:
    """How many endpoints of a Service are ready, and from which API (EndpointSlice or Endpoints)."""

    ready: int
    not_ready: int
    source: str
    ready_addresses: list[str] = field(default_factory=list)  # at most MAX_ADDRESSES
    not_ready_targets: list[str] = field(default_factory=list)  # pods (or addresses), at most MAX_ADDRESSES


def _target(endpoint: dict[str, Any], address: str) -> str:
    ref = endpoint.get("targetRef") or {}
    return f"{str(ref.get('kind', 'Pod')).lower()}/{ref['name']}" if ref.get("name") else address


def count_slices(slices: list[dict[str, Any]]) -> ServiceEndpoints:
    """Ready and not-ready endpoints over EndpointSlices; an endpoint without conditions.ready counts as ready
    (the API's documented default), addresses counted once each."""
    ready: dict[str, None] = {}
    not_ready: dict[str, str] = {}
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            addresses = [str(a) for a in endpoint.get("addresses") or []]
            is_ready = (endpoint.get("conditions") or {}).get("ready")
            for address in addresses:
                if is_ready is False:
                    not_ready[address] = _target(endpoint, address)
                else:
                    ready[address] = None
    return ServiceEndpoints(
        ready=len(ready),
        not_ready=len(not_ready),
        source="EndpointSlice",
        ready_addresses=sorted(ready)[:MAX_ADDRESSES],
        not_ready_targets=sorted(not_ready.values())[:MAX_ADDRESSES],
    )


def count_endpoints(endpoints: dict[str, Any]) -> ServiceEndpoints:
    """The same from a core/v1 Endpoints object (clusters or RBAC without EndpointSlices)."""
    ready: dict[str, None] = {}
    not_ready: dict[str, str] = {}
    for subset in endpoints.get("subsets") or []:
        for address in subset.get("addresses") or []:
            ready[str(address.get("ip", ""))] = None
        for address in subset.get("notReadyAddresses") or []:
            ip = str(address.get("ip", ""))
            not_ready[ip] = _target(address, ip)
    return ServiceEndpoints(
        ready=len(ready),
        not_ready=len(not_ready),
        source="Endpoints",
        ready_addresses=sorted(ready)[:MAX_ADDRESSES],
        not_ready_targets=sorted(not_ready.values())[:MAX_ADDRESSES],
    )


class ServiceCluster:
    """An ApiClient created in start() and closed in close(); unusable credentials are remembered, not raised."""

    def __init__(self, settings: MonitoringSettings) -> None:
        self._settings = settings
        self._api: k8s.ApiClient | None = None
        self._config_error: str | None = None
        self.label = "Kubernetes API"

    @property
    def configured(self) -> bool:
        return self._api is not None

    @property
    def missing_reason(self) -> str:
        return (
            f"no usable kubeconfig or in-cluster credentials ({self._config_error}); set MON_KUBECONFIG "
            "or run the server in a Pod"
        )

    async def start(self) -> None:
        kubeconfig = str(self._settings.kubeconfig) if self._settings.kubeconfig is not None else None
        try:
            self._api = await api_client(kubeconfig, self._settings.kube_context)
        except (k8s_config.ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            self._config_error = redact_text(str(exc) or type(exc).__name__)
            return
        self.label = f"Kubernetes API at {self._api.configuration.host}"

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def service_endpoints(self, service: str, namespace: str) -> ServiceEndpoints:
        """The Service's endpoints; NotFound when there is no such Service."""
        await self._get(f"/api/v1/namespaces/{namespace}/services/{service}", f"Service {namespace}/{service}")
        try:
            answer = await self._get(
                f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                f"EndpointSlices of {namespace}/{service}",
                query=[("labelSelector", f"{_SERVICE_NAME_LABEL}={service}"), ("limit", str(MAX_SLICES))],
            )
        except (NotFound, Refused):
            answer = {}  # no EndpointSlice API, or no permission on it: the Endpoints object says the same
        slices = [
            item
            for item in (answer.get("items") or [])[:MAX_SLICES]
            if isinstance(item, dict)
            and ((item.get("metadata") or {}).get("labels") or {}).get(_SERVICE_NAME_LABEL) == service
        ]
        if slices:
            return count_slices(slices)
        # No slice: endpoints maintained by hand or by an older controller live only in the Endpoints object.
        try:
            endpoints = await self._get(
                f"/api/v1/namespaces/{namespace}/endpoints/{service}", f"Endpoints {namespace}/{service}"
            )
        except NotFound:
            return ServiceEndpoints(ready=0, not_ready=0, source="EndpointSlice")
        return count_endpoints(endpoints)

    async def _get(self, path: str, what: str, query: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        if self._api is None:
            raise BackendUnavailable("Kubernetes API", self.missing_reason)
        return await call_json(
            self._api,
            "GET",
            path,
            what=what,
            server=self.label,
            denied=lambda message: (
                f"the server's ServiceAccount may not read {path}: {message}; the MCPServer's rbac preset "
                "(read-only) grants services, endpoints and endpointslices"
            ),
            request_timeout=self._settings.request_timeout_seconds,
            query=query,
        )
