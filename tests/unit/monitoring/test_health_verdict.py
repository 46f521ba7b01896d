"""health_check's pure parts: endpoint counting, the `up` selector, which alerts name a service, the verdict."""

from __future__ import annotations

from typing import Any

from mcpfleet_servers.monitoring.cluster import count_endpoints, count_slices
from mcpfleet_servers.monitoring.models import AlertSummary
from mcpfleet_servers.monitoring.tools_health import (
    AlertsPart,
    KubernetesPart,
    PrometheusPart,
    judge,
    names_service,
    up_query,
)


def _alert(severity: str | None, **labels: str) -> AlertSummary:
    return AlertSummary(name="A", state="firing", severity=severity, labels=labels, source="alertmanager")


def _kube(ready: int, not_ready: int = 0) -> KubernetesPart:
    return KubernetesPart(available=True, service_exists=True, ready_endpoints=ready, not_ready_endpoints=not_ready)


def _prom(total: int, down: int = 0) -> PrometheusPart:
    return PrometheusPart(available=True, query="up", total_targets=total, targets_down=down)


def _alerts(*firing: AlertSummary) -> AlertsPart:
    return AlertsPart(available=True, firing=list(firing), total_firing=len(firing))


def test_slices_count_each_address_once_and_ready_by_default() -> None:
    slices: list[dict[str, Any]] = [
        {"endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"], "conditions": {"ready": True}}]},
        {
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": False}, "targetRef": {"kind": "Pod", "name": "p3"}},
            ]
        },
    ]
    found = count_slices(slices)
    assert (found.ready, found.not_ready) == (2, 1)
    assert found.ready_addresses == ["10.0.0.1", "10.0.0.2"]
    assert found.not_ready_targets == ["pod/p3"]


def test_endpoints_object() -> None:
    found = count_endpoints({"subsets": [{"addresses": [{"ip": "1.1.1.1"}], "notReadyAddresses": [{"ip": "2.2.2.2"}]}]})
    assert (found.ready, found.not_ready, found.source) == (1, 1, "Endpoints")
    assert found.not_ready_targets == ["2.2.2.2"]


def test_up_query_names_the_documented_labels() -> None:
    assert up_query("api", "shop") == 'up{namespace="shop",service="api"} or up{job=~"api|shop/api",namespace=~"shop|"}'


def test_alerts_name_a_service_by_service_or_job_within_its_namespace() -> None:
    assert names_service(_alert(None, service="api"), "api", "shop")
    assert names_service(_alert(None, job="shop/api"), "api", "shop")
    assert names_service(_alert(None, job="api", namespace="shop"), "api", "shop")
    assert not names_service(_alert(None, service="api", namespace="other"), "api", "shop")
    assert not names_service(_alert(None, app="api"), "api", "shop")
    assert not names_service(_alert(None, namespace="shop"), "api", "shop")


def test_verdicts() -> None:
    assert judge(_kube(2), _prom(1), _alerts())[0] == "healthy"
    assert judge(_kube(2), _prom(1), _alerts(_alert("info")))[0] == "healthy"
    assert judge(_kube(2), _prom(1), _alerts(_alert("warning")))[0] == "degraded"
    assert judge(_kube(1, 1), _prom(1), _alerts())[0] == "degraded"
    assert judge(_kube(2), _prom(2, 1), _alerts())[0] == "degraded"
    assert judge(_kube(0, 2), _prom(0), _alerts())[0] == "down"
    assert judge(_kube(2), _prom(2, 2), _alerts())[0] == "down"
    missing = KubernetesPart(available=True, service_exists=False)
    assert judge(missing, _prom(0), _alerts())[0] == "down"
    unavailable = KubernetesPart(available=False, detail="no credentials")
    nothing = PrometheusPart(available=False, query="up", detail="down")
    assert judge(unavailable, nothing, AlertsPart(available=False, detail="down"))[0] == "unknown"
    assert judge(unavailable, _prom(0), _alerts())[0] == "unknown"  # nobody saw it serving
    verdict, reasons = judge(unavailable, _prom(1), _alerts(_alert("critical", service="api")))
    assert verdict == "degraded"
    assert reasons == [
        "Kubernetes: not checked (no credentials)",
        "Prometheus: 1 targets up",
        "alerts: firing A (critical)",
    ]
