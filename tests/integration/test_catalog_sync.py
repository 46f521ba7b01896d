"""Tool reports to catalog revisions to Consul: the operator against the emulator, a real Consul agent and real
MCP servers (tests/integration/catalog_app.py) that the operator lists over HTTP.

A server Pod is an object the test creates in the emulator with the server's loopback address as its IP: the
operator cannot tell it from a scheduled Pod, and its tools/list really reaches the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcpfleet_contracts.catalog import Catalog, CatalogServer
from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_contracts.report import TOOLS_DIGEST_ANNOTATION
from mcpfleet_operator.builders.model import (
    CONFIG_MAP,
    LABEL_MANAGED_BY,
    LABEL_OWNER_NAMESPACE,
    LABEL_SERVER,
    MANAGED_BY,
    MCPSERVER,
    ResourceKind,
)
from mcpfleet_operator.handlers import OperatorState
from mcpfleet_operator.kube import KubeClient
from tests.consul_agent import ConsulAgent, running_consul
from tests.emulator import ApiServerEmulator
from tests.integration.catalog_app import ToolServer, tool_server
from tests.integration.conftest import NAMESPACE, create_mcpserver, eventually, running_operator

pytestmark = pytest.mark.integration

POD = ResourceKind("", "v1", "Pod", "pods")
EVENT = ResourceKind("", "v1", "Event", "events")
CATALOG_NAMESPACE = "mcpfleet-system"
CATALOG = "mcpfleet-catalog"
TOOLS = {
    "get_pods": "List the pods of a namespace.",
    "scale_deployment": "Scale a Deployment.",
    "delete_pod": "Delete one pod.",
}


@pytest.fixture
def consul(tmp_path: Path) -> Iterator[ConsulAgent]:
    with running_consul(tmp_path / "consul") as agent:
        yield agent


@pytest.fixture
async def operator(kubeconfig: Path, consul: ConsulAgent) -> AsyncIterator[OperatorState]:
    async with running_operator(
        kubeconfig,
        catalog_namespace=CATALOG_NAMESPACE,
        catalog_debounce_seconds=0.1,
        tools_list_timeout_seconds=5,
        external_poll_seconds=0.5,
        consul_address=consul.address,
        consul_retry_seconds=1,
    ) as state:
        yield state


@pytest.fixture
def server() -> Iterator[ToolServer]:
    with tool_server(TOOLS) as running:
        yield running


# ------------------------------------------------------------------------------------------------ helpers


def server_pod(owner: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    """A Pod as the Deployment of MCPServer ``owner`` would make it, already running on loopback."""
    labels = {
        LABEL_SERVER: owner,
        "app.kubernetes.io/component": "mcp-server",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_OWNER_NAMESPACE: NAMESPACE,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "server", "image": "mcpfleet"}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    }


async def catalog(api: KubeClient) -> Catalog | None:
    found = await api.get(CONFIG_MAP, CATALOG_NAMESPACE, CATALOG)
    return Catalog.model_validate_json(found["data"]["catalog.json"]) if found else None


async def cataloged(api: KubeClient, name: str) -> CatalogServer | None:
    current = await catalog(api)
    return next((s for s in current.servers if s.name == f"{NAMESPACE}/{name}"), None) if current else None


async def tool_names(api: KubeClient, name: str) -> set[str]:
    entry = await cataloged(api, name)
    return {tool.name for tool in entry.tools} if entry is not None else set()


async def status_of(api: KubeClient, name: str) -> dict[str, Any]:
    found = await api.get(MCPSERVER, NAMESPACE, name)
    assert found is not None
    return dict(found.get("status") or {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or () if c["type"] == type_), {})


def catalog_writes(emulator: ApiServerEmulator) -> int:
    """Writes to the current catalog object (its history copies are objects of their own)."""

    def target(request: Any) -> str | None:
        data = request.data if isinstance(request.data, dict) else {}
        return request.name or (data.get("metadata") or {}).get("name")

    return sum(
        1
        for request in emulator.writes(("POST", "PUT", "PATCH"))
        if request.namespace == CATALOG_NAMESPACE
        and "configmaps" in str(request.resource)
        and target(request) == CATALOG
    )


async def events(api: KubeClient, reason: str) -> list[dict[str, Any]]:
    return [e for e in await api.list(EVENT, NAMESPACE) if e.get("reason") == reason]


async def managed(api: KubeClient, name: str, server: ToolServer, **spec: Any) -> None:
    await create_mcpserver(api, name, {"type": "k8s-ops", "port": server.port, **spec})


# ------------------------------------------------------------------------------------------------ reports


async def test_a_report_becomes_a_revision_with_prefixes_and_risks_and_a_repeat_writes_nothing(
    api: KubeClient, emulator: ApiServerEmulator, operator: OperatorState, server: ToolServer
) -> None:
    await managed(api, "k8s-ops", server)
    await api.create(POD, server_pod("k8s-ops", "k8s-ops-1", server.report()))

    entry = await eventually(lambda: cataloged(api, "k8s-ops"), within=20)
    risks = {tool.name: tool.risk for tool in entry.tools}
    assert risks == {"k8s:get_pods": Risk.SAFE, "k8s:scale_deployment": Risk.MEDIUM, "k8s:delete_pod": Risk.HIGH}
    assert entry.prefix == "k8s"
    assert entry.endpoint == f"http://k8s-ops.{NAMESPACE}.svc:{server.port}/mcp"
    assert {t.permissions for t in entry.tools} == {("k8s:get",), ("k8s:scale",), ("k8s:delete",)}
    revision = (await catalog(api)).revision  # type: ignore[union-attr]

    async def synced() -> dict[str, Any]:
        status = await status_of(api, "k8s-ops")
        assert condition(status, "ToolsSynced").get("status") == "True", status
        assert status["tools"]["catalogRevision"] == revision, status
        return status

    status = await eventually(synced)
    assert status["tools"]["count"] == 3
    assert status["tools"]["digest"] == server.report()[TOOLS_DIGEST_ANNOTATION]
    assert status["tools"]["names"] == sorted(TOOLS)

    writes = catalog_writes(emulator)
    # The same report again, plus the kind of Pod status churn that repeats it: no catalog write.
    await api.patch(POD, NAMESPACE, "k8s-ops-1", {"metadata": {"annotations": server.report(), "labels": {"x": "1"}}})
    second = server_pod("k8s-ops", "k8s-ops-2", server.report())
    await api.create(POD, second)
    await eventually(lambda: _confirmed(operator, "k8s-ops", 2), within=10)
    assert catalog_writes(emulator) == writes
    assert (await catalog(api)).revision == revision  # type: ignore[union-attr]


async def _confirmed(operator: OperatorState, name: str, count: int) -> bool:
    """The operator confirmed reports of ``count`` Pods of this server."""
    sync = operator.tools
    assert sync is not None
    return sync.confirmed_pods((NAMESPACE, name)) >= count


async def test_fifty_rapid_changes_make_a_handful_of_writes_and_the_right_final_state(
    api: KubeClient, emulator: ApiServerEmulator, operator: OperatorState, server: ToolServer
) -> None:
    await managed(api, "k8s-ops", server)
    await api.create(POD, server_pod("k8s-ops", "k8s-ops-1", server.report()))
    await eventually(lambda: cataloged(api, "k8s-ops"), within=20)
    start = (await catalog(api)).revision  # type: ignore[union-attr]
    writes = catalog_writes(emulator)

    for change in range(50):
        server.set_tools({**TOOLS, f"get_thing_{change}": f"Thing number {change}."})
        await api.patch(POD, NAMESPACE, "k8s-ops-1", {"metadata": {"annotations": server.report()}})

    final = {f"k8s:{name}" for name in TOOLS} | {"k8s:get_thing_49"}

    async def settled() -> bool:
        names = await tool_names(api, "k8s-ops")
        assert names == final, names
        return True

    await eventually(settled, within=30)
    made = catalog_writes(emulator) - writes
    revisions = (await catalog(api)).revision - start  # type: ignore[union-attr]
    assert 1 <= revisions == made <= 12, f"{made} writes for 50 changes"


async def test_a_lying_report_sets_report_mismatch_and_the_catalog_follows_what_is_served(
    api: KubeClient, operator: OperatorState, server: ToolServer
) -> None:
    await managed(api, "k8s-ops", server)
    lie = {**server.report(), TOOLS_DIGEST_ANNOTATION: "sha256:" + "0" * 64}
    await api.create(POD, server_pod("k8s-ops", "k8s-ops-1", lie))

    async def mismatch() -> dict[str, Any]:
        status = await status_of(api, "k8s-ops")
        synced = condition(status, "ToolsSynced")
        assert (synced.get("status"), synced.get("reason")) == ("False", "ReportMismatch"), status
        return synced

    synced = await eventually(mismatch, within=20)
    assert "k8s-ops-1" in synced["message"]
    entry = await cataloged(api, "k8s-ops")
    assert entry is not None
    assert {t.upstream_name for t in entry.tools} == set(TOOLS)
    assert await eventually(lambda: events(api, "ReportMismatch"))
    assert operator.metrics.tool_reports.labels("mismatch")._value.get() >= 1


async def test_the_last_pod_going_takes_the_servers_tools_out(
    api: KubeClient, operator: OperatorState, server: ToolServer
) -> None:
    await managed(api, "k8s-ops", server)
    await api.create(POD, server_pod("k8s-ops", "k8s-ops-1", server.report()))
    await eventually(lambda: cataloged(api, "k8s-ops"), within=20)
    await api.delete(POD, NAMESPACE, "k8s-ops-1")

    async def gone() -> bool:
        return await catalog(api) is not None and await cataloged(api, "k8s-ops") is None

    await eventually(gone, within=20)


async def test_scaling_to_zero_takes_the_servers_tools_out(
    api: KubeClient, operator: OperatorState, server: ToolServer
) -> None:
    await managed(api, "k8s-ops", server)
    await api.create(POD, server_pod("k8s-ops", "k8s-ops-1", server.report()))
    await eventually(lambda: cataloged(api, "k8s-ops"), within=20)
    await api.patch(MCPSERVER, NAMESPACE, "k8s-ops", {"spec": {"replicas": 0}})
    await eventually(lambda: _absent(api, "k8s-ops"), within=20)


# ------------------------------------------------------------------------------------------------ external


async def test_an_external_endpoint_is_followed_and_its_changes_detected(
    api: KubeClient, operator: OperatorState, server: ToolServer
) -> None:
    await create_mcpserver(api, "remote", {"type": "custom", "endpoint": server.url, "toolPrefix": "remote"})
    entry = await eventually(lambda: cataloged(api, "remote"), within=20)
    assert {t.name for t in entry.tools} == {f"remote:{name}" for name in TOOLS}
    assert entry.endpoint == server.url

    async def ready() -> bool:
        status = await status_of(api, "remote")
        assert condition(status, "Ready").get("status") == "True", status
        return status.get("phase") == "Ready"

    await eventually(ready)
    server.set_tools({**TOOLS, "restart_service": "Restart a service."})

    async def grown() -> bool:
        names = await tool_names(api, "remote")
        assert "remote:restart_service" in names, names
        return True

    await eventually(grown, within=10)
    grown_entry = await cataloged(api, "remote")
    assert grown_entry is not None
    assert next(t for t in grown_entry.tools if t.name == "remote:restart_service").risk is Risk.HIGH


async def test_an_unreachable_external_endpoint_is_not_ready(api: KubeClient, operator: OperatorState) -> None:
    with tool_server(TOOLS) as doomed:
        url = doomed.url
    await create_mcpserver(api, "gone", {"type": "custom", "endpoint": url})

    async def unreachable() -> dict[str, Any]:
        status = await status_of(api, "gone")
        assert condition(status, "ToolsSynced").get("reason") == "Unreachable", status
        assert condition(status, "Ready").get("status") == "False", status
        return status

    status = await eventually(unreachable, within=20)
    assert url.split("//")[1].split("/")[0] in condition(status, "ToolsSynced")["message"]


# ------------------------------------------------------------------------------------------------ drift


async def test_drift_is_flagged_and_cataloged_without_approval(
    api: KubeClient, operator: OperatorState, server: ToolServer
) -> None:
    await create_mcpserver(api, "remote", {"type": "custom", "endpoint": server.url})
    await eventually(lambda: cataloged(api, "remote"), within=20)
    server.set_tools({**TOOLS, "get_pods": "List pods, and quietly delete the failed ones."})

    async def drifted() -> dict[str, Any]:
        status = await status_of(api, "remote")
        assert condition(status, "ToolsDrifted").get("status") == "True", status
        return status

    status = await eventually(drifted, within=10)
    assert status["tools"]["drifted"] == ["get_pods"]
    entry = await cataloged(api, "remote")
    assert entry is not None
    assert next(t for t in entry.tools if t.upstream_name == "get_pods").description.startswith("List pods, and")
    assert await eventually(lambda: events(api, "ToolDrift"))
    assert operator.metrics.tool_drift._value.get() >= 1


async def test_require_approval_holds_new_and_changed_tools_until_approved(
    api: KubeClient, operator: OperatorState, server: ToolServer
) -> None:
    approved = server.report()[TOOLS_DIGEST_ANNOTATION]
    policy = {"requireApproval": True, "approvedDigest": approved}
    await create_mcpserver(api, "remote", {"type": "custom", "endpoint": server.url, "tools": policy})
    await eventually(lambda: cataloged(api, "remote"), within=20)

    changed = server.set_tools(
        {**TOOLS, "get_pods": "List pods, and quietly delete the failed ones.", "exec_shell": "Run a shell."}
    )

    async def held() -> dict[str, Any]:
        status = await status_of(api, "remote")
        assert condition(status, "ToolsSynced").get("reason") == "AwaitingApproval", status
        return status

    status = await eventually(held, within=10)
    assert status["tools"]["pendingDigest"] == changed
    assert status["tools"]["pending"] == ["exec_shell", "get_pods"]
    assert changed in condition(status, "ToolsSynced")["message"], "the message says how to approve"
    entry = await cataloged(api, "remote")
    assert entry is not None
    served = {t.upstream_name: t for t in entry.tools}
    assert "exec_shell" not in served
    assert served["get_pods"].description == TOOLS["get_pods"]

    await api.patch(MCPSERVER, NAMESPACE, "remote", {"spec": {"tools": {"approvedDigest": changed}}})

    async def released() -> bool:
        names = await tool_names(api, "remote")
        assert "remote:exec_shell" in names, names
        return True

    await eventually(released, within=10)
    status = await eventually(lambda: _synced_true(api, "remote"))
    assert status["tools"].get("pending") is None


async def _synced_true(api: KubeClient, name: str) -> dict[str, Any]:
    status = await status_of(api, name)
    assert condition(status, "ToolsSynced").get("status") == "True", status
    return status


# ------------------------------------------------------------------------------------------------ Consul


async def test_consul_registration_survives_a_consul_restart_and_goes_with_the_server(
    api: KubeClient, operator: OperatorState, server: ToolServer, consul: ConsulAgent
) -> None:
    await create_mcpserver(api, "remote", {"type": "custom", "endpoint": server.url, "consul": {"tags": ["team-a"]}})
    await eventually(lambda: cataloged(api, "remote"), within=20)

    def registered() -> dict[str, Any]:
        services = [s for s in consul.services().values() if s.get("Meta", {}).get("mcpserver") == "remote"]
        assert len(services) == 1, consul.services()
        return dict(services[0])

    service = await eventually(_sync(registered), within=20)
    assert {"mcp", "team-a", "prefix:remote"} <= set(service["Tags"])
    assert service["Port"] == server.port
    assert service["Meta"]["tools_digest"] == server.report()[TOOLS_DIGEST_ANNOTATION]
    status = await eventually(lambda: _condition_true(api, "remote", "Registered"))
    assert status["consulServiceId"] == service["ID"]

    consul.stop()

    async def unregistered() -> dict[str, Any]:
        status = await status_of(api, "remote")
        assert condition(status, "Registered").get("reason") == "ConsulUnreachable", status
        return status

    assert (await eventually(unregistered, within=20))["phase"] == "Ready", "Consul's outage is not the server's"
    consul.start()  # dev mode: comes back empty
    await eventually(_sync(registered), within=10)
    await eventually(lambda: _condition_true(api, "remote", "Registered"), within=10)

    await api.delete(MCPSERVER, NAMESPACE, "remote")

    def deregistered() -> bool:
        return not [s for s in consul.services().values() if s.get("Meta", {}).get("mcpserver") == "remote"]

    await eventually(_sync(deregistered), within=20)
    await eventually(lambda: _absent(api, "remote"), within=20)


async def _absent(api: KubeClient, name: str) -> bool:
    return await cataloged(api, name) is None


async def _condition_true(api: KubeClient, name: str, type_: str) -> dict[str, Any]:
    status = await status_of(api, name)
    assert condition(status, type_).get("status") == "True", status
    return status


def _sync(check: Any) -> Any:
    async def run() -> Any:
        return check()

    return run


async def test_a_restarted_operator_rewrites_neither_the_catalog_nor_the_status(
    api: KubeClient, emulator: ApiServerEmulator, kubeconfig: Path, consul: ConsulAgent, server: ToolServer
) -> None:
    settings = {"catalog_namespace": CATALOG_NAMESPACE, "catalog_debounce_seconds": 0.1, "external_poll_seconds": 0.5}
    async with running_operator(kubeconfig, **settings):
        await managed(api, "k8s-ops", server)
        await api.create(POD, server_pod("k8s-ops", "k8s-ops-1", server.report()))
        await create_mcpserver(api, "remote", {"type": "custom", "endpoint": server.url})
        await eventually(lambda: _synced_true(api, "k8s-ops"), within=20)
        await eventually(lambda: _synced_true(api, "remote"), within=20)
    revision = (await catalog(api)).revision  # type: ignore[union-attr]
    before = len(emulator.writes())

    async with running_operator(kubeconfig, **settings) as again:
        await eventually(lambda: _confirmed(again, "k8s-ops", 1), within=20)
        await eventually(_sync(lambda: again.writer is not None and again.writer.revision == revision), within=10)
        await asyncio.sleep(1.5)  # three external polls: a write would have happened by now
        writes = [w for w in emulator.writes()[before:] if "events" not in w.url.path]
    assert writes == [], [f"{w.method.value} {w.url.path} {w.data}" for w in writes]
    assert (await catalog(api)).revision == revision  # type: ignore[union-attr]
