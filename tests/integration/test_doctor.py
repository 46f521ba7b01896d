"""`mcpfleet doctor`'s checks against real components: redis-server, a Consul agent, Prometheus, the gateway, the
operator's own metrics endpoint, and kmock's Kubernetes emulator for the API server, the CRD and the operator's
Deployment. Each passes while its component answers and fails, with the fix, once it does not."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import start_http_server

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_cli.doctor import (
    Outcome,
    Targets,
    check_consul,
    check_gateway,
    check_operator_metrics,
    check_prometheus,
    check_redis,
    exit_code,
    run_checks,
)
from mcpfleet_contracts.crd import build_crd
from mcpfleet_operator.metrics import OperatorMetrics
from tests.consul_agent import ConsulAgent, running_consul
from tests.emulator import ApiServerEmulator, store_object
from tests.integration.gateway.harness import base_url, config_document, gateway_at, write_config
from tests.prometheus_stack import running_prometheus_stack
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        yield client


async def test_redis_passes_while_it_answers_and_fails_with_the_fix_once_killed(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        result = await check_redis(server.url, 2.0)
        assert result.outcome is Outcome.PASS, result
        assert result.detail.startswith(f"{server.url} answers PING (Redis ")
    finally:
        server.kill()
    result = await check_redis(server.url, 2.0)
    assert result.outcome is Outcome.FAIL
    assert "unreachable" in result.detail
    assert result.fix is not None
    assert "--redis" in result.fix


async def test_a_redis_url_that_is_not_one_fails_saying_how_to_write_it() -> None:
    result = await check_redis("http://127.0.0.1:6379", 2.0)
    assert result.outcome is Outcome.FAIL
    assert result.fix == "write it as redis://[user:password@]host:port/db"


@pytest.fixture
def consul_agent(tmp_path: Path) -> Iterator[ConsulAgent]:
    with running_consul(tmp_path / "consul") as agent:
        yield agent


async def test_consul_passes_with_a_leader_and_fails_once_the_agent_is_gone(consul_agent: ConsulAgent) -> None:
    result = await check_consul(consul_agent.address, None)
    assert result.outcome is Outcome.PASS, result
    assert "leader 127.0.0.1:" in result.detail
    consul_agent.stop()
    result = await check_consul(consul_agent.address, None)
    assert result.outcome is Outcome.FAIL
    assert "unreachable" in result.detail


async def test_prometheus_passes_when_ready_counting_its_targets(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    with running_prometheus_stack(tmp_path / "prometheus", series=10) as stack:
        result = await check_prometheus(session, stack.prometheus_url)
        assert result.outcome is Outcome.PASS, result
        assert result.detail.startswith(f"{stack.prometheus_url} ready, ")
        assert "scrape targets up" in result.detail
        url = stack.prometheus_url
    result = await check_prometheus(session, url)
    assert result.outcome is Outcome.FAIL
    assert result.fix is not None
    assert "--prometheus" in result.fix


async def test_a_running_gateway_passes(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    config = write_config(tmp_path / "gateway.json", config_document(tmp_path))
    async with gateway_at(config) as runner:
        result = await check_gateway(session, base_url(runner))
    assert result.outcome is Outcome.PASS, result
    assert "healthy and ready" in result.detail


@contextlib.asynccontextmanager
async def serving(routes: dict[str, tuple[int, Any]]) -> AsyncIterator[str]:
    """A small HTTP server answering each path with a fixed status and JSON body: a gateway that is not ready,
    which the real one only is while it starts."""
    app = web.Application()
    for path, (status, body) in routes.items():

        async def answer(request: web.Request, status: int = status, body: Any = body) -> web.Response:
            return web.json_response(body, status=status)

        app.router.add_get(path, answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_gateway_that_is_not_ready_fails_naming_its_problems(session: aiohttp.ClientSession) -> None:
    problem = "catalog configmap mcpfleet-system/mcpfleet-catalog does not exist"
    routes = {"/health": (200, {"status": "ok"}), "/ready": (503, {"ready": False, "problems": [problem]})}
    async with serving(routes) as url:
        result = await check_gateway(session, url)
    assert result.outcome is Outcome.FAIL
    assert problem in result.detail


async def test_nothing_listening_is_an_unreachable_gateway(session: aiohttp.ClientSession) -> None:
    result = await check_gateway(session, f"http://127.0.0.1:{free_port()}")
    assert result.outcome is Outcome.FAIL
    assert "unreachable" in result.detail


async def test_the_operators_metrics_endpoint_passes_and_another_one_fails(session: aiohttp.ClientSession) -> None:
    metrics = OperatorMetrics()
    metrics.managed_objects.set(2)
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=metrics.registry)
    try:
        result = await check_operator_metrics(session, f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert result.outcome is Outcome.PASS, result
    assert result.detail.endswith("manages 2 MCPServer(s)")

    async with serving({"/metrics": (200, {"not": "prometheus"})}) as url:
        result = await check_operator_metrics(session, f"{url}/metrics")
    assert result.outcome is Outcome.FAIL


def operator_deployment(ready: int) -> dict[str, Any]:
    container = {"name": "operator", "image": "ghcr.io/mcpfleet/mcpfleet:0.1.0", "args": ["operator"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mcpfleet-operator", "namespace": "mcpfleet-system"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [container]}}},
        "status": {"readyReplicas": ready},
    }


def lines(results: list[Any]) -> dict[str, str]:
    return {result.check: result.line() for result in results}


async def test_the_cluster_checks_follow_what_the_api_server_holds(
    emulator: ApiServerEmulator, kubeconfig: Path
) -> None:
    targets = Targets(kubeconfig=kubeconfig)
    results = await run_checks(targets, 5.0)
    assert [r.check for r in results] == ["api-server", "crd", "operator", "gateway", "redis", "consul", "prometheus"]
    found = lines(results)
    assert found["api-server"].startswith(f"PASS api-server: {str(emulator.url).rstrip('/')} (kubeconfig {kubeconfig})")
    assert found["crd"] == (
        "FAIL crd: mcpservers.mcpfleet.io is not installed -- fix: kubectl apply -f crds/ "
        "(or: mcpfleet crd print | kubectl apply -f -, or helm install)"
    )
    assert found["operator"].startswith("FAIL operator: no Deployment running `mcpfleet operator` in namespace")
    assert found["redis"] == "SKIP redis: nothing to check: no --redis URL given (nor by a running `mcpfleet dev`)"
    assert exit_code(results) == 1

    crd = build_crd()
    crd["status"] = {"conditions": [{"type": "Established", "status": "True"}]}
    store_object(emulator, "customresourcedefinitions", crd, group="apiextensions.k8s.io")
    store_object(emulator, "deployments", operator_deployment(ready=1), group="apps")
    found = lines(await run_checks(targets, 5.0))
    assert found["crd"].startswith("PASS crd: mcpservers.mcpfleet.io established, serves v1alpha1 (storage)")
    assert found["operator"] == "PASS operator: Deployment mcpfleet-system/mcpfleet-operator: 1/1 replicas ready"


async def test_an_unreachable_api_server_fails_and_skips_what_depends_on_it(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    server = f"http://127.0.0.1:{free_port()}"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        f"clusters: [{{name: gone, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: u}}]\n"
    )
    results = await run_checks(Targets(kubeconfig=kubeconfig), 5.0)
    found = lines(results)
    assert found["api-server"].startswith(f"FAIL api-server: {server} is unreachable")
    assert "-- fix: start the API server" in found["api-server"]
    assert found["crd"] == "SKIP crd: the API server does not answer"
    assert found["operator"] == "SKIP operator: the API server does not answer"


async def test_no_kubeconfig_at_all_fails_with_how_to_get_one(tmp_path: Path) -> None:
    results = await run_checks(Targets(kubeconfig=tmp_path / "missing"), 5.0)
    found = lines(results)
    assert found["api-server"].startswith("FAIL api-server: no cluster credentials")
    assert found["api-server"].endswith(
        "-- fix: set KUBECONFIG or pass --kubeconfig (or start the local platform: make run)"
    )
