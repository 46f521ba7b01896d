"""health_check through a real MCP client session: Services and endpoints in kmock's Kubernetes emulator, the
`up` series and the firing alert of the real Prometheus and Alertmanager (tests/prometheus_stack.py), whose
exporter target is labelled as the Service shop/checkout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcpfleet_cli.devcluster.cluster import free_port
from tests.emulator import ApiServerEmulator
from tests.integration.conftest import eventually
from tests.integration.monitoring.conftest import MakeFleet, Session, service_with_slice
from tests.prometheus_stack import ALERT_NAME, SERVICE_NAME, SERVICE_NAMESPACE, PrometheusStack

pytestmark = pytest.mark.integration


async def test_a_serving_service_is_healthy(
    scraped: PrometheusStack, make_fleet: MakeFleet, emulator: ApiServerEmulator, kubeconfig: Path
) -> None:
    service_with_slice(emulator, SERVICE_NAMESPACE, SERVICE_NAME, [True, True])
    fleet = await make_fleet(mon={"kubeconfig": kubeconfig})
    async with Client(fleet.mcp) as client:
        session = Session(client)

        async def alert_delivered() -> dict[str, Any]:
            report = await session.ok("health_check", service=SERVICE_NAME, namespace=SERVICE_NAMESPACE)
            assert report["alerts"]["total_firing"] == 1, report
            return report

        report = await eventually(alert_delivered, within=60, interval=0.5)
    assert report["verdict"] == "healthy", report["reasons"]
    kube = report["kubernetes"]
    assert kube["available"] is True
    assert kube["service_exists"] is True
    assert (kube["ready_endpoints"], kube["not_ready_endpoints"], kube["source"]) == (2, 0, "EndpointSlice")
    assert kube["ready_addresses"] == ["10.0.0.10", "10.0.0.11"]
    prometheus = report["prometheus"]
    assert prometheus["targets"] == [{"job": "exporter", "instance": f"127.0.0.1:{scraped.exporter_port}", "up": True}]
    assert (prometheus["total_targets"], prometheus["targets_down"]) == (1, 0)
    [alert] = report["alerts"]["firing"]
    assert alert["name"] == ALERT_NAME
    assert alert["labels"]["service"] == SERVICE_NAME
    assert report["alerts"]["source"] == f"Alertmanager at {scraped.alertmanager_url}"
    assert report["reasons"] == [
        "Kubernetes: 2 ready endpoints",
        "Prometheus: 1 targets up",
        "alerts: 1 informational alerts firing (not counted against health)",
    ]


async def test_a_service_without_ready_endpoints_is_down(
    scraped: PrometheusStack, make_fleet: MakeFleet, emulator: ApiServerEmulator, kubeconfig: Path
) -> None:
    service_with_slice(emulator, SERVICE_NAMESPACE, "payments", [False, False])
    fleet = await make_fleet(mon={"kubeconfig": kubeconfig})
    async with Client(fleet.mcp) as client:
        report = await Session(client).ok("health_check", service="payments", namespace=SERVICE_NAMESPACE)
    assert report["verdict"] == "down"
    assert report["kubernetes"]["ready_endpoints"] == 0
    assert report["kubernetes"]["not_ready_endpoints"] == 2
    assert report["kubernetes"]["not_ready_targets"] == ["pod/payments-0", "pod/payments-1"]
    assert report["prometheus"]["total_targets"] == 0
    assert report["alerts"]["total_firing"] == 0
    assert report["reasons"][0] == "Kubernetes: no ready endpoints (2 not ready)"
    assert "no `up` series name this service" in report["reasons"][1]


async def test_endpoints_without_slices_and_a_missing_service(
    scraped: PrometheusStack, make_fleet: MakeFleet, emulator: ApiServerEmulator, kubeconfig: Path
) -> None:
    service_with_slice(emulator, "shop", "cart", [True, False], slices=False)
    fleet = await make_fleet(mon={"kubeconfig": kubeconfig})
    async with Client(fleet.mcp) as client:
        session = Session(client)
        cart = await session.ok("health_check", service="cart", namespace="shop")
        missing = await session.ok("health_check", service="ghost", namespace="shop")
        error = await session.invalid("health_check", service="Not_A_Name", namespace="shop")
    assert cart["verdict"] == "degraded"
    assert (cart["kubernetes"]["ready_endpoints"], cart["kubernetes"]["not_ready_endpoints"]) == (1, 1)
    assert cart["kubernetes"]["source"] == "Endpoints"
    assert cart["kubernetes"]["not_ready_targets"] == ["pod/cart-1"]
    assert missing["verdict"] == "down"
    assert missing["kubernetes"]["service_exists"] is False
    assert missing["reasons"][0] == "Kubernetes: the Service does not exist"
    assert error.error.data["field"] == "service"


async def test_without_kubernetes_the_answer_is_partial(
    scraped: PrometheusStack, make_fleet: MakeFleet, tmp_path: Path
) -> None:
    fleet = await make_fleet(mon={"kubeconfig": tmp_path / "no-such-kubeconfig"})
    async with Client(fleet.mcp) as client:
        report = await Session(client).ok("health_check", service=SERVICE_NAME, namespace=SERVICE_NAMESPACE)
    assert report["kubernetes"]["available"] is False
    assert "MON_KUBECONFIG" in report["kubernetes"]["detail"]
    assert report["reasons"][0].startswith("Kubernetes: not checked (no usable kubeconfig")
    assert report["prometheus"]["total_targets"] == 1
    assert report["verdict"] == "healthy"  # Prometheus saw it serving; nothing saw a problem


async def test_with_no_source_reachable_the_verdict_is_unknown(make_fleet: MakeFleet, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    fleet = await make_fleet(
        mon={"prometheus_url": nowhere, "alertmanager_url": nowhere, "kubeconfig": tmp_path / "none"}
    )
    async with Client(fleet.mcp) as client:
        report = await Session(client).ok("health_check", service=SERVICE_NAME, namespace=SERVICE_NAMESPACE)
    assert report["verdict"] == "unknown"
    assert report["prometheus"]["available"] is False
    assert f"Prometheus at {nowhere} is unavailable" in report["prometheus"]["detail"]
    assert f"Alertmanager at {nowhere} is unavailable" in report["alerts"]["detail"]
