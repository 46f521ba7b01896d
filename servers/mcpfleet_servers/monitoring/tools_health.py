"""health_check(service, namespace): Kubernetes endpoints, Prometheus `up` and firing alerts in one verdict.

Which series and alerts belong to a service (documented in docs/monitoring.md):
- `up` series with ``namespace`` and ``service`` labels naming it (the Prometheus Operator's ServiceMonitor
  targets), or with ``job`` equal to the service name or ``<namespace>/<service>`` and no other namespace;
- firing alerts whose ``service`` label is the service, or whose ``job`` label is the service name or
  ``<namespace>/<service>``, and whose ``namespace`` label, when present, is the namespace.
Each source may be missing (no credentials, a backend down); the answer then says so and judges on the rest.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.toolkit import NotFound, ToolFailure, Toolset
from mcpfleet_servers.monitoring.client import HttpBackend
from mcpfleet_servers.monitoring.cluster import ServiceCluster, ServiceEndpoints
from mcpfleet_servers.monitoring.models import AlertSummary
from mcpfleet_servers.monitoring.tools_alerts import alertmanager_alert, prometheus_alert
from mcpfleet_servers.monitoring.tools_prometheus import prometheus_data

MAX_TARGETS = 50
MAX_ALERTS = 20
# Alerts of these severities are reported but do not make a service degraded: they inform, they do not page.
INFORMATIONAL_SEVERITIES = frozenset({"info", "none", "informational"})
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Verdict = Literal["healthy", "degraded", "down", "unknown"]
ServiceArg = Annotated[
    str, Field(min_length=1, max_length=63, pattern=_DNS_LABEL, description="The Kubernetes Service's name.")
]
NamespaceArg = Annotated[
    str, Field(min_length=1, max_length=63, pattern=_DNS_LABEL, description="The Service's namespace.")
]


class KubernetesPart(BaseModel):
    available: bool = Field(description="False when the cluster could not be asked; see detail.")
    service_exists: bool | None = None
    ready_endpoints: int | None = None
    not_ready_endpoints: int | None = None
    source: str | None = Field(default=None, description="EndpointSlice or Endpoints.")
    ready_addresses: list[str] = Field(default_factory=list)
    not_ready_targets: list[str] = Field(default_factory=list, description="Pods behind the not-ready endpoints.")
    detail: str = ""


class TargetUp(BaseModel):
    job: str
    instance: str
    up: bool


class PrometheusPart(BaseModel):
    available: bool
    query: str = Field(description="The PromQL that selected the service's `up` series.")
    targets: list[TargetUp] = Field(default_factory=list, description=f"At most {MAX_TARGETS}.")
    total_targets: int = 0
    targets_down: int = 0
    detail: str = ""


class AlertsPart(BaseModel):
    available: bool
    source: str = ""
    firing: list[AlertSummary] = Field(default_factory=list, description=f"At most {MAX_ALERTS}, by severity.")
    total_firing: int = 0
    detail: str = ""


class HealthReport(BaseModel):
    """One service's health from every source the server can ask."""

    service: str
    namespace: str
    verdict: Verdict = Field(description="healthy, degraded, down, or unknown when no source could tell.")
    reasons: list[str] = Field(description="Why, one line per finding.")
    kubernetes: KubernetesPart
    prometheus: PrometheusPart
    alerts: AlertsPart


def up_query(service: str, namespace: str) -> str:
    """The `up` series of a service's targets; service and namespace are DNS labels, safe inside PromQL strings."""
    return (
        f'up{{namespace="{namespace}",service="{service}"}} or '
        f'up{{job=~"{service}|{namespace}/{service}",namespace=~"{namespace}|"}}'
    )


def names_service(alert: AlertSummary, service: str, namespace: str) -> bool:
    labels = alert.labels
    if labels.get("namespace", namespace) != namespace:
        return False
    return labels.get("service") == service or labels.get("job") in (service, f"{namespace}/{service}")


def _severity_rank(alert: AlertSummary) -> int:
    return {"critical": 0, "error": 1, "page": 1, "warning": 2}.get(alert.severity or "", 3)


def judge(kube: KubernetesPart, prometheus: PrometheusPart, alerts: AlertsPart) -> tuple[Verdict, list[str]]:
    """The verdict: down when nothing serves, degraded when part of it fails or alerts page, healthy when
    some source saw it working and none saw a problem, unknown when no source could tell."""
    reasons: list[str] = []
    down = degraded = False
    known_good = False
    if not kube.available:
        reasons.append(f"Kubernetes: not checked ({kube.detail})")
    elif not kube.service_exists:
        down = True
        reasons.append("Kubernetes: the Service does not exist")
    elif not kube.ready_endpoints:
        down = True
        reasons.append(f"Kubernetes: no ready endpoints ({kube.not_ready_endpoints or 0} not ready)")
    elif kube.not_ready_endpoints:
        degraded = True
        reasons.append(f"Kubernetes: {kube.ready_endpoints} ready, {kube.not_ready_endpoints} not ready endpoints")
    else:
        known_good = True
        reasons.append(f"Kubernetes: {kube.ready_endpoints} ready endpoints")

    if not prometheus.available:
        reasons.append(f"Prometheus: not checked ({prometheus.detail})")
    elif prometheus.total_targets == 0:
        reasons.append("Prometheus: no `up` series name this service (not scraped, or labelled otherwise)")
    elif prometheus.targets_down == prometheus.total_targets:
        down = True
        reasons.append(f"Prometheus: all {prometheus.total_targets} targets are down")
    elif prometheus.targets_down:
        degraded = True
        reasons.append(f"Prometheus: {prometheus.targets_down} of {prometheus.total_targets} targets are down")
    else:
        known_good = True
        reasons.append(f"Prometheus: {prometheus.total_targets} targets up")

    if not alerts.available:
        reasons.append(f"alerts: not checked ({alerts.detail})")
    else:
        paging = [a for a in alerts.firing if (a.severity or "").lower() not in INFORMATIONAL_SEVERITIES]
        informational = alerts.total_firing - len(paging)
        if paging:
            degraded = True
            names = ", ".join(sorted({f"{a.name} ({a.severity or 'no severity'})" for a in paging}))
            reasons.append(f"alerts: firing {names}")
        if informational:
            reasons.append(f"alerts: {informational} informational alerts firing (not counted against health)")
        if not alerts.total_firing:
            reasons.append("alerts: none firing")

    if down:
        return "down", reasons
    if degraded:
        return "degraded", reasons
    return ("healthy" if known_good else "unknown"), reasons


async def kubernetes_part(cluster: ServiceCluster, service: str, namespace: str) -> KubernetesPart:
    if not cluster.configured:
        return KubernetesPart(available=False, detail=cluster.missing_reason)
    try:
        found: ServiceEndpoints = await cluster.service_endpoints(service, namespace)
    except NotFound:
        return KubernetesPart(available=True, service_exists=False, detail=f"no Service {namespace}/{service}")
    except ToolFailure as exc:
        return KubernetesPart(available=False, detail=str(exc))
    return KubernetesPart(
        available=True,
        service_exists=True,
        ready_endpoints=found.ready,
        not_ready_endpoints=found.not_ready,
        source=found.source,
        ready_addresses=found.ready_addresses,
        not_ready_targets=found.not_ready_targets,
    )


async def prometheus_part(prometheus: HttpBackend, service: str, namespace: str) -> PrometheusPart:
    query = up_query(service, namespace)
    try:
        data, _ = await prometheus_data(prometheus, "/api/v1/query", [("query", query)], "service", method="POST")
    except ToolFailure as exc:
        return PrometheusPart(available=False, query=query, detail=str(exc))
    targets = [
        TargetUp(
            job=str((item.get("metric") or {}).get("job", "")),
            instance=str((item.get("metric") or {}).get("instance", "")),
            up=str((item.get("value") or [0, "0"])[1]) == "1",
        )
        for item in (data or {}).get("result") or []
    ]
    targets.sort(key=lambda t: (t.up, t.job, t.instance))  # down targets first: they matter
    return PrometheusPart(
        available=True,
        query=query,
        targets=targets[:MAX_TARGETS],
        total_targets=len(targets),
        targets_down=sum(not t.up for t in targets),
    )


async def alerts_part(
    prometheus: HttpBackend, alertmanager: HttpBackend | None, service: str, namespace: str
) -> AlertsPart:
    try:
        if alertmanager is not None:
            answer = await alertmanager.request("GET", "/api/v2/alerts", params=[("active", "true")])
            found = [alertmanager_alert(raw) for raw in answer or []]
            source = alertmanager.label
        else:
            data, _ = await prometheus_data(prometheus, "/api/v1/alerts", [], "service")
            found = [prometheus_alert(raw) for raw in (data or {}).get("alerts") or []]
            source = prometheus.label
    except ToolFailure as exc:
        return AlertsPart(available=False, detail=str(exc))
    firing = [a for a in found if a.state == "firing" and names_service(a, service, namespace)]
    firing.sort(key=lambda a: (_severity_rank(a), a.name))
    return AlertsPart(available=True, source=source, firing=firing[:MAX_ALERTS], total_firing=len(firing))


def register_health(
    toolset: Toolset, prometheus: HttpBackend, alertmanager: HttpBackend | None, cluster: ServiceCluster
) -> None:
    @toolset.tool(risk=Risk.SAFE, read_only=True, idempotent=True, title="Check a service's health")
    async def health_check(service: ServiceArg, namespace: NamespaceArg) -> HealthReport:
        """One answer on a Kubernetes Service's health: its ready endpoints, the `up` series of its Prometheus
        targets (labels namespace+service, or job = service or namespace/service) and firing alerts naming it
        (labels service or job, and namespace). Verdict healthy, degraded, down or unknown, with reasons; a
        source that cannot be asked is reported as such, not as a failure."""
        # Each part turns its own failures into "not checked": gather cannot raise for one of them.
        kube, scraped, alerts = await asyncio.gather(
            kubernetes_part(cluster, service, namespace),
            prometheus_part(prometheus, service, namespace),
            alerts_part(prometheus, alertmanager, service, namespace),
        )
        verdict, reasons = judge(kube, scraped, alerts)
        return HealthReport(
            service=service,
            namespace=namespace,
            verdict=verdict,
            reasons=reasons,
            kubernetes=kube,
            prometheus=scraped,
            alerts=alerts,
        )
