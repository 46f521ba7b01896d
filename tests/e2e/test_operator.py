"""`mcpfleet operator` as a real process, with only the RBAC the project declares, on a real API server.

The controller manager runs beside it, so Deployments get ReplicaSets and Pods, ownerReferences
are honoured by the real garbage collector, and a Pod marked ready flows back into the status.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpfleet_operator.builders.operator_rbac import OPERATOR_NAME
from mcpfleet_operator.settings import OperatorSettings
from tests.e2e.conftest import OPERATOR_NAMESPACE, SAMPLES_DIR, Cluster, OperatorProcess, eventually, table

pytestmark = pytest.mark.timeout(300)

MANAGED = "app.kubernetes.io/managed-by=mcpfleet-operator"
NAMESPACED_KINDS = "deployments,services,serviceaccounts,configmaps,roles,rolebindings,networkpolicies"
COPIES = 40
FIELD_MANAGER = OperatorSettings.model_fields["field_manager"].default
SAMPLES = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(SAMPLES_DIR.glob("*.yaml"))}


def apply_samples(cluster: Cluster, namespace: str) -> None:
    for sample in SAMPLES.values():
        result = cluster.apply(sample, "-n", namespace)
        assert result.returncode == 0, result.stderr


def mcpservers(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    listed = cluster.get("mcps", "-n", namespace, "--show-managed-fields")["items"]
    return {item["metadata"]["name"]: item for item in listed}


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def all_reconciled(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    servers = mcpservers(cluster, namespace)
    for name, server in servers.items():
        observed = server.get("status", {}).get("observedGeneration")
        assert observed == server["metadata"]["generation"], f"{name}: observed {observed}"
        assert conditions(server).get("Deployed", {}).get("status") == "True", f"{name}: {server.get('status')}"
    return servers


def children(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get(
        NAMESPACED_KINDS, "-n", namespace, "-l", MANAGED, "--show-managed-fields"
    )["items"]
    return items


def cluster_children(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    selector = f"{MANAGED},mcpfleet.io/owner-namespace={namespace}"
    items: list[dict[str, Any]] = cluster.get(
        "clusterroles,clusterrolebindings", "-l", selector, "--show-managed-fields"
    )["items"]
    return items


Fingerprint = tuple[Any, tuple[str, ...], str | None]


def writes_by_the_operator(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Fingerprint]:
    """Per object, what changes when the operator writes it.

    The controller manager keeps writing Deployment status (its resourceVersion moves without the
    operator), so a Deployment is compared by generation and the operator's managedFields times;
    everything else, MCPServers included, by resourceVersion too.
    """
    prints: dict[tuple[str, str], Fingerprint] = {}
    for obj in objects:
        meta = obj["metadata"]
        ours = tuple(sorted(f.get("time", "") for f in meta.get("managedFields", []) if f["manager"] == FIELD_MANAGER))
        version = None if obj["kind"] == "Deployment" else meta["resourceVersion"]
        prints[(obj["kind"], meta["name"])] = (meta.get("generation"), ours, version)
    return prints


def test_every_sample_is_reconciled_into_owned_children_and_a_status(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    apply_samples(cluster, namespace)
    servers = eventually(lambda: all_reconciled(cluster, namespace), within=60, what="every sample reconciled")
    owned = children(cluster, namespace)
    by_owner: dict[str, set[str]] = {}
    for child in owned:
        refs = child["metadata"].get("ownerReferences", [])
        assert len(refs) == 1, f"{child['kind']}/{child['metadata']['name']}: {refs}"
        ref = refs[0]
        owner = servers[ref["name"]]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("MCPServer", owner["metadata"]["uid"], True)
        by_owner.setdefault(ref["name"], set()).add(child["kind"])

    base = {"Deployment", "Service", "ServiceAccount", "ConfigMap"}
    # Built-in servers get a namespaced Role for their tool report (get/patch of Pods), besides their own rules.
    report = {"Role", "RoleBinding"}
    assert by_owner["k8s-ops"] == base | report
    assert by_owner["monitoring"] == base | report
    assert by_owner["cmdb"] == base | report | {"NetworkPolicy"}, "cmdb reads the cluster: a ClusterRole"
    assert by_owner["tickets"] == base | {"Role", "RoleBinding"}, "a custom image: its own rules, no report"
    # Cluster-wide read access cannot carry an ownerReference to a namespaced owner; labels tie it instead.
    cluster_wide = {
        (c["kind"], c["metadata"]["labels"]["mcpfleet.io/server"]) for c in cluster_children(cluster, namespace)
    }
    assert cluster_wide == {
        (k, s) for k in ("ClusterRole", "ClusterRoleBinding") for s in ("k8s-ops", "monitoring", "cmdb")
    }
    assert "docs-search" not in by_owner, "an external endpoint gets no pods"

    # The controller manager turned each Deployment into a ReplicaSet and Pods (which never run here).
    def replica_sets() -> list[str]:
        sets = cluster.get("replicasets", "-n", namespace, "-l", "mcpfleet.io/server")["items"]
        assert len(sets) == 4, [s["metadata"]["name"] for s in sets]
        return [s["metadata"]["name"] for s in sets]

    eventually(replica_sets, within=30, what="a ReplicaSet per Deployment")

    rows = table(cluster.ok("get", "mcps", "-n", namespace, "-o", "wide"))
    assert rows["k8s-ops"] | {"AGE": ""} == {
        "NAME": "k8s-ops",
        "TYPE": "k8s-ops",
        "READY": "False",
        "TOOLS": "",  # filled once the server reports its tools
        "ENDPOINT": f"http://k8s-ops.{namespace}.svc:8080/mcp",
        "AGE": "",
        "PHASE": "Deploying",
        "PREFIX": "k8s",
    }
    assert rows["docs-search"]["ENDPOINT"] == "https://mcp.docs.example.com/mcp"

    def unreachable() -> dict[str, Any]:
        ready = conditions(mcpservers(cluster, namespace)["docs-search"])["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "EndpointUnreachable"), ready
        return ready

    # The name does not resolve here: the operator's tools/list fails, and Ready says so.
    assert "mcp.docs.example.com" in eventually(unreachable, within=30, what="docs-search not Ready")["message"]
    assert conditions(servers["k8s-ops"])["Ready"]["reason"] in {"NoPodsAvailable", "Deploying"}
    operator.assert_alive()


def mark_pods_ready(cluster: Cluster, namespace: str, server: str) -> int:
    """Stand in for the kubelet: report the server's Pods as running and ready."""
    pods = cluster.get("pods", "-n", namespace, "-l", f"mcpfleet.io/server={server}")["items"]
    assert pods, f"no Pods for {server} yet"
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    status = {"status": {"phase": "Running", "conditions": [ready]}}
    for pod in pods:
        cluster.ok(
            "patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps(status),
        )  # fmt: skip
    return len(pods)


def test_pod_readiness_reaches_the_status_through_the_real_controllers(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(SAMPLES["mcpserver"], "-n", namespace)
    eventually(lambda: mark_pods_ready(cluster, namespace, "k8s-ops"), within=60, what="the k8s-ops Pod")

    def ready() -> dict[str, Any]:
        server = mcpservers(cluster, namespace)["k8s-ops"]
        assert conditions(server).get("Ready", {}).get("status") == "True", server.get("status")
        return server

    server = eventually(ready, within=60, what="Ready=True")
    assert server["status"]["phase"] == "Ready"
    assert server["status"]["readyReplicas"] == 1


def test_a_deleted_child_is_restored(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(SAMPLES["mcpserver"], "-n", namespace)
    eventually(lambda: all_reconciled(cluster, namespace), within=60)
    binding = f"mcpfleet:{namespace}:k8s-ops"

    def uids() -> dict[tuple[str, str], str]:
        every = children(cluster, namespace) + cluster_children(cluster, namespace)
        return {(c["kind"], c["metadata"]["name"]): c["metadata"]["uid"] for c in every}

    before = uids()
    cluster.ok("delete", "service", "k8s-ops", "-n", namespace)
    cluster.ok("delete", "configmap", "k8s-ops-config", "-n", namespace)
    cluster.ok("delete", "clusterrolebinding", binding)

    def restored() -> bool:
        now = uids()
        assert now.keys() == before.keys(), sorted(set(before) ^ set(now))
        renewed = {key for key in now if now[key] != before[key]}
        assert renewed == {("Service", "k8s-ops"), ("ConfigMap", "k8s-ops-config"), ("ClusterRoleBinding", binding)}
        return True

    eventually(restored, within=60, what="the deleted children restored")


def test_a_spec_change_rolls_out(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(SAMPLES["custom-image"], "-n", namespace)
    eventually(lambda: all_reconciled(cluster, namespace), within=60)
    patch = {"spec": {"image": "registry.example.com/acme/tickets-mcp:1.5.0", "replicas": 3}}
    cluster.ok("patch", "mcps", "tickets", "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def rolled_out() -> bool:
        deployment = cluster.get("deployment", "tickets", "-n", namespace)
        assert deployment["spec"]["replicas"] == 3
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.5.0")
        sets = cluster.get("replicasets", "-n", namespace, "-l", "mcpfleet.io/server=tickets")["items"]
        assert len(sets) == 2, "the controller manager starts a new ReplicaSet for the new template"
        server = mcpservers(cluster, namespace)["tickets"]
        assert server["status"]["observedGeneration"] == server["metadata"]["generation"] == 2
        return True

    eventually(rolled_out, within=60, what="the new image and replica count rolled out")


def test_a_port_change_replaces_the_port_in_every_child(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    # Server-side apply keeps list items it does not own: a child the operator had created with a POST kept its
    # old container port beside the new one, and the API server refused the Deployment (duplicate port name).
    cluster.apply(SAMPLES["mcpserver"], "-n", namespace)
    eventually(lambda: all_reconciled(cluster, namespace), within=60)
    cluster.ok("patch", "mcps", "k8s-ops", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"port": 9123}}))

    def moved() -> bool:
        container = cluster.get("deployment", "k8s-ops", "-n", namespace)["spec"]["template"]["spec"]["containers"][0]
        assert [port["containerPort"] for port in container["ports"]] == [9123], container["ports"]
        service = cluster.get("service", "k8s-ops", "-n", namespace)
        assert [port["port"] for port in service["spec"]["ports"]] == [9123], service["spec"]["ports"]
        server = mcpservers(cluster, namespace)["k8s-ops"]
        assert server["status"]["observedGeneration"] == server["metadata"]["generation"] == 2
        return True

    eventually(moved, within=60, what="the new port in the Deployment and the Service")


def test_deletion_garbage_collects_every_child(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    cluster.apply(SAMPLES["mcpserver"], "-n", namespace)
    eventually(lambda: all_reconciled(cluster, namespace), within=60)
    assert {c["kind"] for c in children(cluster, namespace)} >= {"Deployment", "Service", "ConfigMap"}
    assert {c["kind"] for c in cluster_children(cluster, namespace)} == {"ClusterRole", "ClusterRoleBinding"}
    eventually(lambda: cluster.get("replicasets", "-n", namespace)["items"], within=30, what="a ReplicaSet")

    cluster.ok("delete", "mcps", "k8s-ops", "-n", namespace, "--wait=true", "--timeout=60s")

    def collected() -> bool:
        # Namespaced children go through ownerReferences (the operator never deletes them);
        # ReplicaSets and Pods follow their Deployment; cluster-scoped ones go through the finalizer.
        assert children(cluster, namespace) == []
        assert cluster.get("replicasets,pods", "-n", namespace)["items"] == []
        assert cluster_children(cluster, namespace) == []
        return True

    eventually(collected, within=90, what="garbage collection of the children")


def test_a_restart_mid_reconcile_leaves_no_duplicates_and_a_clean_restart_writes_nothing(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    # Enough objects that the operator is still writing when it is killed.
    copies = [{**SAMPLES["mcpserver"], "metadata": {"name": f"k8s-ops-{i}"}} for i in range(COPIES)]
    result = cluster.apply([*copies, *SAMPLES.values()], "-n", namespace)
    assert result.returncode == 0, result.stderr
    expected_children = COPIES * 6 + 6 + 6 + 7 + 6  # k8s-ops copies, k8s-ops, monitoring, cmdb, tickets
    eventually(lambda: children(cluster, namespace), within=60, interval=0.05, what="the first child written")
    assert operator.process is not None
    operator.process.send_signal(signal.SIGKILL)
    operator.process.wait(10)
    at_kill = len(children(cluster, namespace))
    assert at_kill < expected_children, "the operator finished before it was killed: not a mid-reconcile restart"

    operator.start()
    eventually(lambda: all_reconciled(cluster, namespace), within=120, what="convergence after the crash")

    def settled() -> dict[tuple[str, str], Fingerprint]:
        owned = children(cluster, namespace)
        kinds = [(c["kind"], c["metadata"]["name"]) for c in owned]
        assert len(kinds) == len(set(kinds)) == expected_children, f"{len(kinds)} children, {len(set(kinds))} distinct"
        every = owned + cluster_children(cluster, namespace) + list(mcpservers(cluster, namespace).values())
        assert all(obj["metadata"].get("managedFields") for obj in every)
        return writes_by_the_operator(every)

    eventually(lambda: settled() == settled(), within=30, what="no more writes")
    before = settled()

    operator.stop()
    operator.start()
    # The restarted operator resumes every MCPServer (one reconcile each) before anything is compared.
    servers = COPIES + len(SAMPLES)
    eventually(lambda: operator.metric("mcpfleet_operator_reconciles_total") >= servers, within=60, what="resume")
    after = settled()
    assert after == before, "a restart rewrote: " + ", ".join(f"{k}" for k in after if after[k] != before.get(k))
    assert operator.metric("mcpfleet_operator_api_writes_total") == 0, "child writes after a clean restart"


def test_the_operator_runs_as_its_service_account_with_only_what_it_needs(
    cluster: Cluster, operator_kubeconfig: Path
) -> None:
    whoami = cluster.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=operator_kubeconfig
    )
    assert whoami.stdout == f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_NAME}", whoami.stderr

    def can(*args: str) -> bool:
        answer = cluster.kubectl("auth", "can-i", *args, "--all-namespaces", kubeconfig=operator_kubeconfig)
        return answer.stdout.strip() == "yes"

    assert can("patch", "deployments.apps")
    assert can("patch", "mcpservers.mcpfleet.io", "--subresource=status")
    assert can("escalate", "clusterroles.rbac.authorization.k8s.io")
    for denied in (
        ("get", "secrets"),
        ("create", "pods"),
        ("delete", "namespaces"),
        ("update", "mcpservers.mcpfleet.io"),
    ):
        assert not can(*denied), f"the operator may {' '.join(denied)}"
