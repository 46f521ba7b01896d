"""Compact summaries, rollout verdicts, label selectors and quantities (pure)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from mcpfleet_servers.base.toolkit import BackendUnavailable, InvalidArgument, NotFound, Refused
from mcpfleet_servers.k8s_ops.client import ResourceType, Target, classify, labels_match
from mcpfleet_servers.k8s_ops.models import (
    age,
    deployment_summary,
    event_summary,
    node_summary,
    pod_summary,
    resource_summary,
    service_summary,
)
from mcpfleet_servers.k8s_ops.tools_read import cpu_millicores, memory_mib, rollout_state


def crashing_pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "team-a", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "web:1"}, {"name": "sidecar"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": False,
                    "restartCount": 7,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
                {"name": "sidecar", "ready": True, "restartCount": 1, "state": {"running": {}}},
            ],
        },
    }


def test_pod_summary_shows_what_kubectl_shows() -> None:
    summary = pod_summary(crashing_pod())
    assert (summary.status, summary.ready, summary.restarts, summary.node) == ("CrashLoopBackOff", "1/2", 8, "n1")
    assert len(summary.model_dump_json()) < 300  # compact, not the whole object


def test_age_reads_like_kubectl() -> None:
    now = datetime.datetime(2026, 1, 3, 4, 0, tzinfo=datetime.UTC)
    assert age("2026-01-01T00:00:00Z", now) == "2d4h"
    assert age("2026-01-03T03:55:00Z", now) == "5m"
    assert age(None) is None
    assert age("garbage") is None


def test_deployment_service_node_and_event_summaries() -> None:
    dep = {
        "metadata": {"name": "web", "namespace": "a", "annotations": {"deployment.kubernetes.io/revision": "3"}},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"image": "web:2"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert deployment_summary(dep).model_dump(include={"replicas", "ready", "images", "revision"}) == {
        "replicas": 3,
        "ready": 2,
        "images": ["web:2"],
        "revision": "3",
    }
    svc = {
        "metadata": {"name": "web", "namespace": "a"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "web"}},
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
    }
    assert service_summary(svc).external == ["1.2.3.4"]
    node = {
        "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"cpu": "4"}},
    }
    assert node_summary(node).model_dump(include={"ready", "roles", "cpu"}) == {
        "ready": True,
        "roles": ["control-plane"],
        "cpu": "4",
    }
    event = {"involvedObject": {"kind": "Pod", "name": "p"}, "message": "pull with token=abc12345", "count": 2}
    assert "abc12345" not in event_summary(event).message


def test_resource_summary_of_a_secret_counts_keys() -> None:
    summary = resource_summary(
        {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA==", "b": "eQ=="}}, "v1", "Secret", ("Secret",)
    )
    assert summary.extra == {"type": "Opaque", "keys": 2}
    assert "eA==" not in summary.model_dump_json()


@pytest.mark.parametrize(
    ("status", "done", "words"),
    [
        ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}, True, "successfully"),
        ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 1}, False, "1 of 3 new"),
        ({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}, False, "1 old"),
        ({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}, False, "observed"),
    ],
)
def test_rollout_state(status: dict[str, Any], done: bool, words: str) -> None:
    dep = {"metadata": {"name": "web", "namespace": "a", "generation": 2}, "spec": {"replicas": 3}, "status": status}
    state = rollout_state(dep)
    assert state.done is done
    assert words in state.message


def test_label_selectors() -> None:
    labels = {"app": "web", "tier": "front"}
    assert labels_match(labels, "app=web,tier in (front, back)")
    assert labels_match(labels, "app==web,!canary,tier")
    assert not labels_match(labels, "app!=web")
    assert not labels_match(labels, "tier notin (front)")
    assert labels_match(labels, None)


def test_quantities() -> None:
    assert cpu_millicores("250m") == 250
    assert cpu_millicores("2") == 2000
    assert cpu_millicores("5000000n") == 5
    assert memory_mib("512Mi") == 512
    assert memory_mib("1Gi") == 1024


def test_api_errors_are_classified_at_the_boundary() -> None:
    deployments = ResourceType("apps", "v1", "Deployment", "deployments", True)
    target = Target("patch", deployments, "team-a", "web")
    assert isinstance(classify(503, "{}", target, "https://k"), BackendUnavailable)
    assert "Kubernetes API at https://k" in str(classify(500, "{}", target, "https://k"))
    assert "Deployment team-a/web" in str(classify(404, '{"message":"not found"}', target, "https://k"))
    assert isinstance(classify(404, "{}", target, "https://k"), NotFound)
    refused = classify(403, '{"message":"forbidden"}', target, "https://k")
    assert isinstance(refused, Refused)
    assert "'patch' on deployments.apps in namespace team-a" in str(refused)
    body = '{"message":"invalid","details":{"causes":[{"field":"spec.replicas","message":"must be >= 0"}]}}'
    invalid = classify(422, body, target, "https://k")
    assert isinstance(invalid, InvalidArgument)
    assert invalid.field == "spec.replicas"
    leaked = classify(500, '{"message":"upstream said Bearer abcdefghijkl"}', target, "https://k")
    assert "abcdefghijkl" not in str(leaked)


def test_a_kubelet_the_api_server_cannot_reach_is_not_blamed_on_the_api_server() -> None:
    # What kube-apiserver 1.37 answers for the logs of a pod whose node's kubelet is down.
    body = (
        '{"kind":"Status","status":"Failure","code":500,"message":"Get \\"https://10.0.0.7:10250/containerLogs/t/p/c\\":'
        ' dial tcp 10.0.0.7:10250: connect: connection refused"}'
    )
    pods = ResourceType("", "v1", "Pod", "pods", True)
    logs = classify(500, body, Target("get", pods, "t", "p", "log"), "https://k")
    assert not isinstance(logs, BackendUnavailable)
    assert "could not reach the kubelet of Pod t/p's node for its logs (HTTP 500)" in str(logs)
    assert "connection refused" in str(logs)
    exec_failure = classify(502, "{}", Target("create", pods, "t", "p", "exec"), "https://k")
    assert "kubelet of Pod t/p's node for its exec" in str(exec_failure)
    assert isinstance(classify(500, body, Target("get", pods, "t", "p"), "https://k"), BackendUnavailable)
