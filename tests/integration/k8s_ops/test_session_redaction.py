"""Redaction through a real MCP client session: a corpus of secrets planted in the emulated cluster never
shows in any tool's structured content or text, in any error message, or in the server's own log."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from mcp import Client, MCPError

from tests.integration.k8s_ops.conftest import K8sOpsEmulator, MakeFleet, pod, put
from tests.integration.k8s_ops.session import ALL_TOOLS, Answers, Model, Session
from tests.integration.k8s_ops.test_reads import deployment, replicaset

pytestmark = pytest.mark.integration

SECRET_PLAIN = "s3cr3t-from-the-secret"
SECRET_B64 = base64.b64encode(SECRET_PLAIN.encode()).decode()
API_KEY_B64 = base64.b64encode(b"api-key-from-the-secret").decode()
ENV_LITERAL = "env-literal-pass-000"
URL_PASSWORD = "pg-url-pass-777"
CM_PASSWORD = "cm-db-pass-123"
CM_TOKEN = "cm-api-tok-456"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJtY3BmbGVldC1wbGFudGVkIiwiaWF0IjoxNzAwMDAwMDAwfQ."
    "cGxhbnRlZC1zaWduYXR1cmUtOTg3NjU0MzIx"
)
LOG_PASSWORD = "hunter2"
KUBECONFIG_KEY = base64.b64encode(b"-----BEGIN EC PRIVATE KEY-----planted-----END EC PRIVATE KEY-----").decode()
KUBECONFIG_TOKEN = "kc-user-token-789"
MODEL_PASSWORD = "model-wrote-pass-555"
APPLIED_PASSWORD = "applied-pass-xyz"
UPSTREAM_TOKEN = "upstream-tok-9f8e7d6c5b4a"

PLANTED = {
    "secret data (base64)": SECRET_B64,
    "secret data (decoded)": SECRET_PLAIN,
    "secret api key (base64)": API_KEY_B64,
    "env literal PASSWORD": ENV_LITERAL,
    "password in a URL": URL_PASSWORD,
    "configmap db_password": CM_PASSWORD,
    "configmap api_token": CM_TOKEN,
    "bearer JWT": JWT,
    "JWT payload": JWT.split(".")[1],
    "JWT signature": JWT.split(".")[2],
    "log password": LOG_PASSWORD,
    "kubeconfig client-key-data": KUBECONFIG_KEY,
    "kubeconfig token": KUBECONFIG_TOKEN,
    "password the model wrote": MODEL_PASSWORD,
    "password in an applied Secret": APPLIED_PASSWORD,
    "token echoed by the API server": UPSTREAM_TOKEN,
}

KUBECONFIG_TEXT = f"""\
apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {{server: "https://prod.example.com:6443"}}
users:
- name: admin
  user:
    client-key-data: {KUBECONFIG_KEY}
    token: {KUBECONFIG_TOKEN}
contexts:
- name: prod
  context: {{cluster: prod, user: admin}}
"""

SECRET_ENV = [
    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    {"name": "PASSWORD", "value": ENV_LITERAL},
    {"name": "DATABASE_URL", "value": f"postgres://app:{URL_PASSWORD}@db.team-a:5432/app"},
    {"name": "MODE", "value": "fast"},
]

MODEL_MANIFEST = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: modelled}}
spec:
  selector: {{matchLabels: {{app: modelled}}}}
  template:
    metadata: {{labels: {{app: modelled}}}}
    spec:
      containers:
      - name: app
        image: app:1
        env: [{{name: ADMIN_PASSWORD, value: {MODEL_PASSWORD}}}]
"""

APPLIED_SECRET = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: applied}}
type: Opaque
stringData: {{password: {APPLIED_PASSWORD}}}
"""
APPLIED_CONFIGMAP = f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: applied-cfg, annotations: {{example.com/kubeconfig: {json.dumps(KUBECONFIG_TEXT)}}}}}
data: {{db_password: {APPLIED_PASSWORD}, mode: slow}}
"""


def plant(emulator: K8sOpsEmulator) -> None:
    """The corpus: secrets where a cluster keeps them, and where careless workloads leave them."""
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
                    "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                        {"kind": "Secret", "data": {"password": SECRET_B64}}
                    )
                },
            },
            "data": {"password": SECRET_B64, "api-key": API_KEY_B64},
        },
    )
    put(
        emulator,
        "configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "team-a"},
            "data": {"db_password": CM_PASSWORD, "api_token": CM_TOKEN, "mode": "fast"},
        },
    )
    web = pod("web-1")
    web["metadata"]["annotations"] = {"example.com/kubeconfig": KUBECONFIG_TEXT, "example.com/owner": "team-a"}
    web["spec"]["containers"][0]["env"] = SECRET_ENV
    put(emulator, "pods", web)
    emulator.logs[("team-a", "web-1")] = (
        b"starting\n"
        + f"GET /api Authorization: Bearer {JWT}\n".encode()
        + f"login user=app password={LOG_PASSWORD} ok\n".encode()
        + f"connecting to postgres://app:{URL_PASSWORD}@db:5432/app\n".encode()
        + b"ready\n"
    )

    dep = deployment("web")
    dep["metadata"]["annotations"]["example.com/kubeconfig"] = KUBECONFIG_TEXT
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = SECRET_ENV
    put(emulator, "deployments", dep, group="apps")
    for revision, image in ((1, "web:1"), (2, "web:2")):
        rs = replicaset(dep, revision, image)
        rs["spec"]["template"]["spec"]["containers"][0]["env"] = SECRET_ENV
        put(emulator, "replicasets", rs, group="apps")
    put(
        emulator,
        "services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "team-a", "annotations": {"example.com/api-token": CM_TOKEN}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
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
            "reason": "Unhealthy",
            "type": "Warning",
            "message": f"probe failed: Authorization: Bearer {JWT} password={LOG_PASSWORD}",
            "lastTimestamp": "2026-01-01T00:00:00Z",
        },
    )
    put(
        emulator,
        "nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-1", "annotations": {"example.com/kubeconfig": KUBECONFIG_TEXT}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    put(emulator, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    # An API server error whose message echoes a credential.
    (
        emulator["get /api/v1/namespaces/team-a/pods/leaky"]
        << 500
        << {"kind": "Status", "code": 500, "message": f"upstream said Authorization: Bearer {UPSTREAM_TOKEN}"}
    )


# Every tool at least once, aimed at the corpus; some calls fail on purpose (their errors are scanned too).
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("cluster_info", {}),
    ("list_namespaces", {}),
    ("list_pods", {"all_namespaces": True}),
    ("get_pod", {"name": "web-1"}),
    ("get_pod", {"name": "leaky"}),
    ("get_pod_logs", {"name": "web-1"}),
    ("get_pod_logs", {"name": "web-1", "grep": "password|Bearer|postgres"}),
    ("list_deployments", {}),
    ("get_deployment", {"name": "web"}),
    ("rollout_status", {"name": "web"}),
    ("rollout_history", {"name": "web"}),
    ("list_services", {}),
    ("get_service", {"name": "web"}),
    ("list_events", {}),
    ("describe_resource", {"kind": "Secret", "name": "db"}),
    ("describe_resource", {"kind": "Pod", "name": "web-1"}),
    ("describe_resource", {"kind": "ConfigMap", "name": "cfg"}),
    ("describe_resource", {"kind": "Node", "name": "node-1"}),
    ("list_resources", {"kind": "Secret"}),
    ("list_resources", {"kind": "ConfigMap"}),
    ("list_resources", {"kind": "ReplicaSet"}),
    ("get_resource", {"kind": "Secret", "name": "db"}),
    ("get_resource", {"kind": "secrets", "name": "db", "api_version": "v1"}),
    ("get_resource", {"kind": "ConfigMap", "name": "cfg"}),
    ("get_resource", {"kind": "ReplicaSet", "name": "web-rev1"}),
    ("list_nodes", {}),
    ("top_pods", {}),
    ("top_nodes", {}),
    (
        "generate_deployment_yaml",
        {"name": "gen", "image": "gen:1", "secret_env": [{"name": "DB_PASSWORD", "secret": "db", "key": "password"}]},
    ),
    ("generate_deployment_yaml", {"name": "gen", "image": "gen:1", "env": {"DB_PASSWORD": LOG_PASSWORD}}),
    ("generate_deployment_from_description", {"description": "an app with an admin password"}),
    ("scale_deployment", {"name": "web", "replicas": 3}),
    ("restart_deployment", {"name": "web"}),
    ("rollback_deployment", {"name": "web"}),
    ("get_deployment", {"name": "web"}),
    ("apply_manifest", {"manifest": APPLIED_SECRET, "dry_run_only": True}),
    ("apply_manifest", {"manifest": APPLIED_SECRET}),
    ("apply_manifest", {"manifest": APPLIED_SECRET.replace("type: Opaque", "type: Opaque\ndata: {extra: eA==}")}),
    ("apply_manifest", {"manifest": APPLIED_CONFIGMAP}),
    ("apply_manifest", {"manifest": APPLIED_CONFIGMAP.replace("slow", "fast")}),
    ("get_resource", {"kind": "Secret", "name": "applied"}),
    ("get_resource", {"kind": "ConfigMap", "name": "applied-cfg"}),
    ("exec_in_pod", {"name": "web-1", "command": ["sh", "-c", f"echo password={LOG_PASSWORD}"]}),
    ("delete_resource", {"kind": "Secret", "name": "db"}),
    ("list_pods", {"limit": LOG_PASSWORD}),
]


def leaks(text: str) -> list[str]:
    return [what for what, value in PLANTED.items() if value in text]


async def test_no_planted_secret_in_any_result_error_or_log(
    make_fleet: MakeFleet, emulator: K8sOpsEmulator, server_log: io.StringIO
) -> None:
    plant(emulator)
    fleet = await make_fleet()
    answers = Answers("accept")
    async with Client(fleet.mcp, elicitation_callback=answers, sampling_callback=Model(MODEL_MANIFEST)) as client:
        session = Session(client, fleet, emulator)
        outcomes: list[str] = []
        for tool, args in CALLS:
            try:
                result = await session.call(tool, **args)
            except MCPError:
                outcomes.append("invalid")
            else:
                outcomes.append("error" if result.is_error else "ok")
    assert session.called == ALL_TOOLS  # every tool was exercised on the corpus

    # The calls did what they were meant to: most answered, the planted failures failed.
    by_call = dict(zip([f"{t} {json.dumps(a)}" for t, a in CALLS], outcomes, strict=True))
    failed = {call for call, outcome in by_call.items() if outcome != "ok"}
    assert failed == {
        'get_pod {"name": "leaky"}',
        f"generate_deployment_yaml {json.dumps(CALLS[29][1])}",
        f"exec_in_pod {json.dumps(CALLS[-3][1])}",
        f"list_pods {json.dumps(CALLS[-1][1])}",
    }, by_call
    # The applies wrote the real values: redaction is of what is shown, not of what is stored.
    assert emulator.stored("secrets", "team-a", "applied")["stringData"] == {"password": APPLIED_PASSWORD}

    for number, text in enumerate(session.transcript):
        assert leaks(text) == [], f"transcript entry {number}: {text[:2000]}"
    # The server's log at DEBUG, without the emulator's own access log (the fake API server's, not ours).
    log = "\n".join(line for line in server_log.getvalue().splitlines() if " aiohttp.access: " not in line)
    assert " DEBUG " in log  # the server did log at DEBUG while serving these calls
    assert "Tool 'get_pod' failed" in log
    assert leaks(log) == [], [line[:300] for line in log.splitlines() if leaks(line)][:10]
    # What a confirmation shows the user is redacted as well, for the values the cluster holds.
    for question in answers.questions:
        assert leaks(question) == [], question

    transcript = "\n".join(session.transcript)
    # Redaction keeps the shape: references and non-secret values stay readable.
    assert '"secretKeyRef": {"name": "db", "key": "password"}' in transcript
    assert '"MODE", "value": "fast"' in transcript
    assert "postgres://app:" in transcript
    assert "login user=app password=" in transcript
    assert "data withheld: this kind is in K8S_DENIED_KINDS" in transcript
    assert "<redacted>" in transcript
