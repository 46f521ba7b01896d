"""Policy against the emulator: no secret value in any output or error, protected namespaces refuse every
change before anything is written, an unreachable cluster is named, the server still starts and lists tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer

from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.toolkit import BackendUnavailable, InvalidArgument, Refused, ToolFailure
from mcpfleet_servers.k8s_ops.server import K8sOpsServer
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from tests.integration.k8s_ops.conftest import K8sOpsEmulator, call, pod, put

pytestmark = pytest.mark.integration

SECRET_VALUES = (
    "aHVudGVyMg==",  # base64 of the Secret's password
    "s3cr3t-db-pass",  # a literal env value under a credential name
    "cm-password-123",  # a ConfigMap value under a password key
    "tok_live_9f8e7d6c",  # a bearer token in log lines and events
    "kc-client-token-42",  # a token inside a kubeconfig held by an annotation
    "applied-secret-xyz",  # stringData of a Secret sent through apply_manifest
)
KUBECONFIG_TEXT = (
    "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://x'}\n"
    "users:\n- name: u\n  user: {token: kc-client-token-42}\n"
)


def seed_secrets(emulator: K8sOpsEmulator) -> None:
    put(
        emulator,
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": "db",
                "namespace": "team-a",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"password":"aHVudGVyMg=="}}'
                },
            },
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="},
        },
    )
    web = pod("web-1")
    web["metadata"]["annotations"] = {"example.com/kubeconfig": KUBECONFIG_TEXT}
    web["spec"]["containers"][0]["env"] = [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "ADMIN_PASSWORD", "value": "s3cr3t-db-pass"},
    ]
    put(emulator, "pods", web)
    put(
        emulator,
        "configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "team-a"},
            "data": {"db_password": "cm-password-123", "mode": "fast"},
        },
    )
    put(
        emulator,
        "events",
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e1", "namespace": "team-a"},
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "reason": "Failed",
            "message": "probe failed: Authorization: Bearer tok_live_9f8e7d6c",
            "lastTimestamp": "2026-01-01T00:00:00Z",
        },
    )
    emulator.logs[("team-a", "web-1")] = (
        b"starting\nGET /api Authorization: Bearer tok_live_9f8e7d6c\nlogin password=s3cr3t-db-pass ok\n"
    )


async def test_no_secret_value_in_any_tool_output_or_error(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    seed_secrets(emulator)
    secret_manifest = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: api-key}\ntype: Opaque\nstringData: {key: applied-secret-xyz}\n"
    )
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_resource", {"kind": "Secret", "name": "db"}),
        ("get_resource", {"kind": "secrets", "name": "db", "api_version": "v1"}),
        ("list_resources", {"kind": "Secret"}),
        ("describe_resource", {"kind": "Secret", "name": "db"}),
        ("get_resource", {"kind": "ConfigMap", "name": "cfg"}),
        ("describe_resource", {"kind": "Pod", "name": "web-1"}),
        ("get_pod", {"name": "web-1"}),
        ("list_events", {}),
        ("get_pod_logs", {"name": "web-1"}),
        ("apply_manifest", {"manifest": secret_manifest, "dry_run_only": True}),
        ("apply_manifest", {"manifest": secret_manifest}),
        ("get_resource", {"kind": "Secret", "name": "api-key"}),
    ]
    outputs = []
    for tool, args in calls:
        result = await call(server, tool, **args)
        outputs.append(result.model_dump_json())
    blob = "\n".join(outputs)
    for value in SECRET_VALUES:
        assert value not in blob, value
    secret = json.loads(outputs[0])["object"]
    assert secret["keys"] == 2
    assert secret["type"] == "Opaque"
    assert "data" not in secret
    env = json.loads(outputs[6])["object"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "password"}}
    assert "tok_live" not in blob
    assert "Bearer <redacted>" in blob
    assert emulator.stored("secrets", "team-a", "api-key")["stringData"] == {"key": "applied-secret-xyz"}  # applied

    # Errors carry no secret either: an API error echoing a token is masked at the boundary.
    (
        emulator["get /api/v1/namespaces/team-a/pods/leaky"]
        << 500
        << {
            "kind": "Status",
            "code": 500,
            "message": "upstream said Bearer tok_live_9f8e7d6c",
        }
    )
    with pytest.raises(ToolFailure) as failure:
        await call(server, "get_pod", name="leaky")
    assert "tok_live_9f8e7d6c" not in str(failure.value)
    assert "Bearer <redacted>" in str(failure.value)


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("scale_deployment", {"name": "coredns", "replicas": 0}),
        ("restart_deployment", {"name": "coredns"}),
        ("rollback_deployment", {"name": "coredns"}),
        ("delete_resource", {"kind": "Pod", "name": "etcd"}),
        ("delete_resource", {"kind": "Namespace", "name": "kube-system"}),
        (
            "apply_manifest",
            {"manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: kube-system}"},
        ),
        ("apply_manifest", {"manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}"}),
        ("exec_in_pod", {"name": "etcd", "command": ["sh"]}),
    ],
)
async def test_protected_namespaces_refuse_every_change_before_writing(
    server: K8sOpsServer, emulator: K8sOpsEmulator, tool: str, args: dict[str, Any]
) -> None:
    namespace = {} if tool == "delete_resource" and args["kind"] == "Namespace" else {"namespace": "kube-system"}
    if tool == "apply_manifest" and "namespace: kube-system" in args["manifest"]:
        namespace = {}
    with pytest.raises(Refused) as refused:
        await call(server, tool, **args, **namespace)
    assert "kube-system" in str(refused.value)
    assert "K8S_PROTECTED_NAMESPACES" in str(refused.value)
    assert emulator.writes() == []


async def test_reads_in_protected_namespaces_are_allowed(server: K8sOpsServer, emulator: K8sOpsEmulator) -> None:
    put(emulator, "pods", pod("etcd", namespace="kube-system"))
    assert (await call(server, "get_pod", name="etcd", namespace="kube-system")).summary.name == "etcd"


async def test_allowed_namespaces_limit_changes(kubeconfig: Path, emulator: K8sOpsEmulator, budget: Budget) -> None:
    settings = K8sOpsSettings(kubeconfig_path=str(kubeconfig), namespace="team-a", allowed_namespaces=("team-a",))
    module = K8sOpsServer(settings, budget)
    await module.start()
    try:
        with pytest.raises(Refused, match="K8S_ALLOWED_NAMESPACES"):
            await call(module, "scale_deployment", name="web", replicas=1, namespace="team-b")
        with pytest.raises(Refused, match="cluster-scoped"):
            await call(module, "delete_resource", kind="Node", name="node-1")
        assert emulator.writes() == []
    finally:
        await module.close()


async def test_unreachable_cluster_is_named_and_the_server_still_starts(closed_port_server: K8sOpsServer) -> None:
    status = await closed_port_server.backend_status()
    assert not status.reachable
    assert status.name.startswith("Kubernetes API at http://127.0.0.1:")
    with pytest.raises(BackendUnavailable) as down:
        await call(closed_port_server, "list_pods")
    assert str(down.value).startswith(status.name)
    assert "is unavailable" in str(down.value)
    mcp = MCPServer("k8s-test")
    for tool in closed_port_server.toolset():
        mcp.add_tool(tool.fn, name=tool.name, description=tool.description)
    closed_port_server.register_extras(mcp)
    assert len(await mcp.list_tools()) == len(closed_port_server.toolset())


async def test_a_missing_kubeconfig_is_reported_on_use(tmp_path: Path, budget: Budget) -> None:
    module = K8sOpsServer(K8sOpsSettings(kubeconfig_path=str(tmp_path / "absent")), budget)
    await module.start()
    try:
        assert not (await module.backend_status()).reachable
        with pytest.raises(BackendUnavailable, match="kubeconfig"):
            await call(module, "list_pods")
    finally:
        await module.close()


async def test_bad_arguments_name_the_field(server: K8sOpsServer) -> None:
    with pytest.raises(InvalidArgument) as unknown:
        await call(server, "list_resources", kind="Widget")
    assert unknown.value.field == "kind"
    with pytest.raises(InvalidArgument) as token:
        await call(server, "list_pods", continue_token="not-a-token")
    assert token.value.field == "continue_token"
