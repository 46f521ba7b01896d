"""The operator as a whole: kopf.testing.KopfRunner against kmock's Kubernetes emulator.

Every test drives the operator only through the API (create, patch, delete
objects) and asserts on what the API then holds, as a user would see it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mcpfleet_operator.builders.model import (
    CHILD_KINDS,
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    CONFIG_MAP,
    DEPLOYMENT,
    MCPSERVER,
    NETWORK_POLICY,
    ROLE,
    ROLE_BINDING,
    SERVICE,
    SERVICE_ACCOUNT,
    ResourceKind,
)
from mcpfleet_operator.handlers import OperatorState
from mcpfleet_operator.kube import KubeClient
from tests.emulator import ApiServerEmulator
from tests.integration.conftest import NAMESPACE, create_mcpserver, eventually, running_operator

pytestmark = pytest.mark.integration

MONITORING_CONFIG = {"monitoring": {"prometheusUrl": "http://prometheus.monitoring:9090"}}

SPECS: dict[str, dict[str, Any]] = {
    "k8s-ops": {"type": "k8s-ops"},
    "monitoring": {"type": "monitoring", "config": MONITORING_CONFIG},
    "cmdb": {"type": "cmdb", "config": {"cmdb": {"backend": "kubernetes"}}},
    "custom": {"type": "custom", "image": "registry.example/tools/mcp:1.2", "config": {"custom": {"MODE": "fast"}}},
}

# Which children each type gets by default: built-in servers also get a namespaced Role for their tool
# report (get/patch of their own Pods); k8s-ops and monitoring read cluster-wide.
BUILT_IN = {SERVICE_ACCOUNT, ROLE, ROLE_BINDING, CONFIG_MAP, DEPLOYMENT, SERVICE}
EXPECTED_KINDS: dict[str, set[ResourceKind]] = {
    "k8s-ops": BUILT_IN | {CLUSTER_ROLE, CLUSTER_ROLE_BINDING},
    "monitoring": BUILT_IN | {CLUSTER_ROLE, CLUSTER_ROLE_BINDING},
    "cmdb": BUILT_IN | {CLUSTER_ROLE, CLUSTER_ROLE_BINDING},
    "custom": {SERVICE_ACCOUNT, CONFIG_MAP, DEPLOYMENT, SERVICE},
}
ALL_KINDS = CHILD_KINDS


def child_name(kind: ResourceKind, owner: str) -> str:
    if not kind.namespaced:
        return f"mcpfleet:{NAMESPACE}:{owner}"
    return f"{owner}-config" if kind == CONFIG_MAP else owner


async def get_child(api: KubeClient, kind: ResourceKind, owner: str) -> dict[str, Any] | None:
    return await api.get(kind, NAMESPACE if kind.namespaced else None, child_name(kind, owner))


async def wait_status(api: KubeClient, name: str, **expected: Any) -> dict[str, Any]:
    """Wait until the MCPServer's status has the expected top-level values; return the object."""

    async def check() -> dict[str, Any]:
        obj = await api.get(MCPSERVER, NAMESPACE, name)
        assert obj is not None, f"{name} is gone"
        status = obj.get("status") or {}
        for key, value in expected.items():
            assert status.get(key) == value, f"status.{key} is {status.get(key)!r}, want {value!r}: {status}"
        assert status.get("observedGeneration") == obj["metadata"]["generation"]
        return obj

    result: dict[str, Any] = await eventually(check)
    return result


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in obj["status"]["conditions"] if c["type"] == type_]
    assert len(found) == 1, obj["status"]["conditions"]
    return found[0]


async def settle(emulator: ApiServerEmulator, quiet: float = 1.0, within: float = 20.0) -> int:
    """Wait until no write arrives for ``quiet`` seconds; return the number of writes so far."""
    deadline = asyncio.get_running_loop().time() + within
    count = len(emulator.writes())
    while True:
        await asyncio.sleep(quiet)
        now = len(emulator.writes())
        if now == count:
            return now
        count = now
        assert asyncio.get_running_loop().time() < deadline, "the operator never stopped writing"


@pytest.mark.parametrize("server_type", sorted(SPECS))
async def test_every_type_gets_its_children_and_status(
    server_type: str, emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    name = f"srv-{server_type}"
    created = await create_mcpserver(api, name, SPECS[server_type])
    uid = created["metadata"]["uid"]

    obj = await wait_status(api, name, phase="Deploying")
    assert condition(obj, "Deployed")["status"] == "True"
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoPodsAvailable")
    assert obj["status"]["endpoint"] == f"http://{name}.{NAMESPACE}.svc:8080/mcp"
    assert "mcpfleet.io/finalizer" in obj["metadata"]["finalizers"]

    for kind in ALL_KINDS:
        child = await get_child(api, kind, name)
        if kind not in EXPECTED_KINDS[server_type]:
            assert child is None, f"{kind.kind} should not exist for {server_type}"
            continue
        assert child is not None, f"{kind.kind} is missing for {server_type}"
        labels = child["metadata"]["labels"]
        assert labels["mcpfleet.io/server"] == name
        assert labels["app.kubernetes.io/managed-by"] == "mcpfleet-operator"
        if kind.namespaced:
            (ref,) = child["metadata"]["ownerReferences"]
            assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("MCPServer", name, uid, True)
        else:
            assert "ownerReferences" not in child["metadata"]
            assert labels["mcpfleet.io/owner-uid"] == uid

    deployment = await get_child(api, DEPLOYMENT, name)
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    if server_type == "custom":
        assert container["image"] == "registry.example/tools/mcp:1.2"
        assert {"configMapRef": {"name": f"{name}-config"}} in container["envFrom"]
    else:
        assert container["args"][:2] == ["server", server_type]
    assert operator.metrics.reconciles.labels("create", "ok")._value.get() >= 1


async def test_external_endpoint_deploys_nothing(
    emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    url = "https://mcp.vendor.example/mcp"
    await create_mcpserver(api, "vendor", {"type": "custom", "endpoint": url, "toolPrefix": "vendor"})
    obj = await wait_status(api, "vendor", endpoint=url)
    assert condition(obj, "Deployed")["reason"] == "External"
    # The name does not resolve here: the server is not Ready, and the condition says why.
    ready = await eventually(lambda: _ready_false(api, "vendor"))
    assert "mcp.vendor.example" in ready["message"]
    for kind in ALL_KINDS:
        assert await get_child(api, kind, "vendor") is None
    child_writes = [w for w in emulator.writes() if not {"mcpservers", "events"} & set(w.url.path.split("/"))]
    assert child_writes == []


async def _ready_false(api: KubeClient, name: str) -> dict[str, Any]:
    obj = await api.get(MCPSERVER, NAMESPACE, name)
    assert obj is not None
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "EndpointUnreachable"), obj.get("status")
    return ready


async def test_nothing_is_written_when_nothing_changed(
    emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    await create_mcpserver(api, "quiet", SPECS["k8s-ops"])
    await wait_status(api, "quiet", phase="Deploying")
    before = await settle(emulator)
    versions = {
        kind: (await get_child(api, kind, "quiet") or {}).get("metadata", {}).get("resourceVersion")
        for kind in ALL_KINDS
    }

    # An unrelated label change re-runs the update handler: it must find nothing to do.
    await api.patch(MCPSERVER, NAMESPACE, "quiet", {"metadata": {"labels": {"team": "sre"}}})
    after = await settle(emulator)
    extra = [(str(w.method.value), w.url.path) for w in emulator.writes()[before:]]
    # The label patch itself, and kopf recording the handled configuration; no child, no status.
    assert all("/mcpservers/quiet" in path and not path.endswith("/status") for _, path in extra), extra
    assert after - before <= 2, extra
    for kind in ALL_KINDS:
        child = await get_child(api, kind, "quiet")
        assert (child or {}).get("metadata", {}).get("resourceVersion") == versions[kind], kind.kind


async def test_spec_changes_roll_out_to_the_right_children(
    emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    await create_mcpserver(api, "ops", {"type": "k8s-ops"})
    await wait_status(api, "ops", phase="Deploying")
    config_before = await get_child(api, CONFIG_MAP, "ops")
    deployment_before = await get_child(api, DEPLOYMENT, "ops")
    assert config_before is not None
    assert deployment_before is not None
    service_version = (await get_child(api, SERVICE, "ops") or {})["metadata"]["resourceVersion"]

    await api.patch(
        MCPSERVER,
        NAMESPACE,
        "ops",
        {"spec": {"image": "ghcr.io/mcpfleet/mcpfleet:0.2.0", "replicas": 3, "config": {"k8sOps": {"readOnly": True}}}},
    )

    async def rolled_out() -> bool:
        deployment = await get_child(api, DEPLOYMENT, "ops")
        assert deployment is not None
        spec = deployment["spec"]
        assert spec["replicas"] == 3
        assert spec["template"]["spec"]["containers"][0]["image"] == "ghcr.io/mcpfleet/mcpfleet:0.2.0"
        before_hash = deployment_before["spec"]["template"]["metadata"]["annotations"]["mcpfleet.io/config-hash"]
        assert spec["template"]["metadata"]["annotations"]["mcpfleet.io/config-hash"] != before_hash
        config = await get_child(api, CONFIG_MAP, "ops")
        assert config is not None
        assert '"readOnly": true' in config["data"]["config.json"]
        return True

    await eventually(rolled_out)
    await wait_status(api, "ops", replicas=3)
    assert (await get_child(api, SERVICE, "ops") or {})["metadata"]["resourceVersion"] == service_version

    # Turning on the NetworkPolicy adds it; moving RBAC to the namespace swaps ClusterRole for Role.
    await api.patch(
        MCPSERVER,
        NAMESPACE,
        "ops",
        {"spec": {"networkPolicy": {"enabled": True}, "rbac": {"scope": "Namespace", "preset": "operator"}}},
    )

    async def swapped() -> bool:
        assert await get_child(api, NETWORK_POLICY, "ops") is not None
        assert await get_child(api, ROLE, "ops") is not None
        assert await get_child(api, ROLE_BINDING, "ops") is not None
        assert await get_child(api, CLUSTER_ROLE, "ops") is None
        assert await get_child(api, CLUSTER_ROLE_BINDING, "ops") is None
        return True

    await eventually(swapped)
    role = await get_child(api, ROLE, "ops")
    assert role is not None
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert {"patch", "delete"} <= verbs
    assert all("secrets" not in rule["resources"] for rule in role["rules"])

    await api.patch(MCPSERVER, NAMESPACE, "ops", {"spec": {"networkPolicy": {"enabled": False}}})

    async def policy_gone() -> bool:
        assert await get_child(api, NETWORK_POLICY, "ops") is None
        return True

    await eventually(policy_gone)


@pytest.mark.parametrize("kind", [DEPLOYMENT, SERVICE, CONFIG_MAP, SERVICE_ACCOUNT, CLUSTER_ROLE_BINDING])
async def test_a_deleted_child_comes_back(
    kind: ResourceKind, emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    await create_mcpserver(api, "keep", SPECS["k8s-ops"])
    await wait_status(api, "keep", phase="Deploying")
    original = await get_child(api, kind, "keep")
    assert original is not None

    assert await api.delete(kind, NAMESPACE if kind.namespaced else None, child_name(kind, "keep"))

    async def restored() -> dict[str, Any]:
        child = await get_child(api, kind, "keep")
        assert child is not None, f"{kind.kind} not restored yet"
        return child

    child = await eventually(restored)
    assert child["metadata"]["uid"] != original["metadata"]["uid"]
    assert child["metadata"]["labels"] == original["metadata"]["labels"]


async def test_a_hand_edited_child_is_put_back(
    emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    await create_mcpserver(api, "edited", SPECS["cmdb"])
    await wait_status(api, "edited", phase="Deploying")

    await api.patch(DEPLOYMENT, NAMESPACE, "edited", {"spec": {"replicas": 7}})
    await api.patch(SERVICE, NAMESPACE, "edited", {"spec": {"type": "NodePort"}})
    await api.patch(CONFIG_MAP, NAMESPACE, "edited-config", {"data": {"config.json": "{}"}})

    async def put_back() -> bool:
        deployment = await get_child(api, DEPLOYMENT, "edited")
        service = await get_child(api, SERVICE, "edited")
        config = await get_child(api, CONFIG_MAP, "edited")
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 1
        assert service is not None
        assert service["spec"]["type"] == "ClusterIP"
        assert config is not None
        assert '"type": "cmdb"' in config["data"]["config.json"]
        return True

    await eventually(put_back)
    # A label someone else added is not the operator's field: it stays.
    await api.patch(DEPLOYMENT, NAMESPACE, "edited", {"metadata": {"labels": {"cost-center": "42"}}})
    before = await settle(emulator)
    assert (await get_child(api, DEPLOYMENT, "edited") or {})["metadata"]["labels"]["cost-center"] == "42"
    assert len(emulator.writes()) == before


async def test_deployment_readiness_flows_into_status(
    emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    await create_mcpserver(api, "live", {**SPECS["k8s-ops"], "replicas": 2})
    await wait_status(api, "live", phase="Deploying")
    deployment = await get_child(api, DEPLOYMENT, "live")
    assert deployment is not None
    generation = deployment["metadata"]["generation"]

    progress = {"observedGeneration": generation, "replicas": 2, "updatedReplicas": 2}
    await api.patch_status(DEPLOYMENT, NAMESPACE, "live", {**progress, "availableReplicas": 1})
    obj = await wait_status(api, "live", phase="Degraded", readyReplicas=1)
    assert condition(obj, "Ready")["reason"] == "PartiallyAvailable"

    await api.patch_status(DEPLOYMENT, NAMESPACE, "live", {**progress, "availableReplicas": 2})
    obj = await wait_status(api, "live", phase="Ready", readyReplicas=2)
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Available")

    await api.patch_status(DEPLOYMENT, NAMESPACE, "live", {**progress, "availableReplicas": 0})
    await wait_status(api, "live", phase="Deploying", readyReplicas=0)


async def test_deletion_runs_the_finalizer_and_leaves_no_orphans(
    emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    created = await create_mcpserver(api, "gone", SPECS["k8s-ops"])
    await wait_status(api, "gone", phase="Deploying")
    assert await get_child(api, CLUSTER_ROLE, "gone") is not None

    await api.delete(MCPSERVER, NAMESPACE, "gone")

    async def finalized() -> bool:
        assert await api.get(MCPSERVER, NAMESPACE, "gone") is None
        return True

    await eventually(finalized)
    # Cluster-scoped children cannot have a namespaced owner: the finalizer removed them.
    assert await get_child(api, CLUSTER_ROLE, "gone") is None
    assert await get_child(api, CLUSTER_ROLE_BINDING, "gone") is None
    # Namespaced children point at the deleted owner: the API server's garbage collector removes
    # them (the emulator has none; the e2e tier proves the real one does).
    for kind in (SERVICE_ACCOUNT, CONFIG_MAP, DEPLOYMENT, SERVICE):
        child = await get_child(api, kind, "gone")
        assert child is not None
        assert child["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    # Nothing was restored after the owner went away.
    await settle(emulator)
    assert await get_child(api, CLUSTER_ROLE, "gone") is None


async def test_an_unusable_spec_fails_with_a_message(
    emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    # The CRD would reject both; an emulator (or an outdated CRD) lets them through.
    await create_mcpserver(api, "broken", {"type": "custom", "transport": "stdio", "replicas": 3})
    obj = await wait_status(api, "broken", phase="Failed")
    message = condition(obj, "Ready")["message"]
    assert "type custom needs spec.image" in message
    assert "set spec.replicas to 1" in message
    assert condition(obj, "Ready")["reason"] == "InvalidSpec"

    await create_mcpserver(api, "typo", {"type": "k8s-ops", "replica": 2})
    obj = await wait_status(api, "typo", phase="Failed")
    assert "spec.replica: unknown field" in condition(obj, "Deployed")["message"]

    await create_mcpserver(api, "9lives", SPECS["cmdb"])
    obj = await wait_status(api, "9lives", phase="Failed")
    assert "it names the server's Service" in condition(obj, "Ready")["message"]

    for kind in ALL_KINDS:
        for name in ("broken", "typo", "9lives"):
            assert await get_child(api, kind, name) is None
    assert operator.metrics.errors.labels("permanent")._value.get() >= 3

    # Fixing the spec recovers the object.
    await api.patch(MCPSERVER, NAMESPACE, "typo", {"spec": {"replica": None, "replicas": 2}})
    await wait_status(api, "typo", phase="Deploying", replicas=2)


async def test_a_foreign_object_with_the_same_name_is_not_taken_over(
    emulator: ApiServerEmulator, api: KubeClient, operator: OperatorState
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "clash-config", "namespace": NAMESPACE},
        "data": {"owner": "someone else"},
    }
    await api.create(CONFIG_MAP, foreign)
    await create_mcpserver(api, "clash", SPECS["cmdb"])
    obj = await wait_status(api, "clash", phase="Degraded")
    deployed = condition(obj, "Deployed")
    assert deployed["status"] == "False"
    assert "ConfigMap 'clash-config' already exists and does not belong to this MCPServer" in deployed["message"]
    config = await get_child(api, CONFIG_MAP, "clash")
    assert config is not None
    assert config["data"] == {"owner": "someone else"}


async def test_a_restarted_operator_writes_nothing(
    emulator: ApiServerEmulator, api: KubeClient, kubeconfig: Path
) -> None:
    async with running_operator(kubeconfig):
        for server_type, spec in SPECS.items():
            await create_mcpserver(api, f"r-{server_type}", spec)
        for server_type in SPECS:
            await wait_status(api, f"r-{server_type}", phase="Deploying")
        await settle(emulator)
    children_before = {
        (kind.kind, name): obj["metadata"]["resourceVersion"]
        for kind in ALL_KINDS
        for server_type in SPECS
        if (obj := await get_child(api, kind, name := f"r-{server_type}")) is not None
    }
    writes_before = len(emulator.writes())

    async with running_operator(kubeconfig) as state:

        async def resumed() -> bool:
            assert state.metrics.reconciles.labels("resume", "ok")._value.get() == len(SPECS)
            return True

        await eventually(resumed)
        await settle(emulator)

    assert emulator.writes()[writes_before:] == []
    children_after = {
        (kind.kind, name): obj["metadata"]["resourceVersion"]
        for kind in ALL_KINDS
        for server_type in SPECS
        if (obj := await get_child(api, kind, name := f"r-{server_type}")) is not None
    }
    assert children_after == children_before
