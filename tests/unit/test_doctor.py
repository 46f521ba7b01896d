"""`mcpfleet doctor`'s verdicts: what a CRD, a Deployment, a metrics page or a ready file mean, and how each line
reads. The checks against live components are in tests/integration/test_doctor.py and the e2e tier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mcpfleet_cli.devplatform.ready import ReadyInfo
from mcpfleet_cli.doctor import (
    Outcome,
    Targets,
    crd_verdict,
    exit_code,
    failed,
    operator_deployment_verdict,
    operator_deployments,
    operator_metrics_verdict,
    passed,
    redact_url,
    skipped,
    with_dev_defaults,
)
from mcpfleet_contracts.crd import build_crd


def installed_crd(**status: Any) -> dict[str, Any]:
    """The CRD as the API server returns it once established."""
    crd = build_crd()
    crd["status"] = status or {"conditions": [{"type": "Established", "status": "True"}]}
    return crd


def test_a_line_is_verdict_check_and_detail_and_a_failure_carries_its_fix() -> None:
    assert passed("redis", "answers PING").line() == "PASS redis: answers PING"
    assert skipped("consul", "no --consul URL").line() == "SKIP consul: no --consul URL"
    line = failed("crd", "not installed", "kubectl apply -f crds/").line()
    assert line == "FAIL crd: not installed -- fix: kubectl apply -f crds/"
    assert "\n" not in line


def test_only_a_failure_makes_the_exit_code_one() -> None:
    assert exit_code([passed("a", "ok"), skipped("b", "nothing to check")]) == 0
    assert exit_code([passed("a", "ok"), failed("b", "down", "start it")]) == 1
    assert exit_code([]) == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://app:s3cret@redis.example:6380/2", "redis://app:***@redis.example:6380/2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("http://127.0.0.1:8500", "http://127.0.0.1:8500"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def ready_info() -> ReadyInfo:
    return ReadyInfo(
        url="http://127.0.0.1:8765",
        mcp_url="http://127.0.0.1:8765/mcp",
        token="t",
        kubeconfig="/dev-state/cluster/kubeconfig",
        redis="redis://127.0.0.1:1111/0",
        consul=None,
        prometheus="http://127.0.0.1:2222",
        operator_metrics="http://127.0.0.1:3333/metrics",
        logs="/dev-state/logs",
        pid=1,
        started_at="2026-01-01T00:00:00+00:00",
    )


def test_a_running_dev_platform_fills_in_what_the_options_leave_open() -> None:
    given = Targets(gateway="http://gateway.example:8080", context="prod")
    targets = with_dev_defaults(given, ready_info())
    assert targets.gateway == "http://gateway.example:8080", "an option wins"
    assert targets.context == "prod"
    assert targets.kubeconfig == Path("/dev-state/cluster/kubeconfig")
    assert targets.redis == "redis://127.0.0.1:1111/0"
    assert targets.operator == "http://127.0.0.1:3333/metrics"
    assert targets.prometheus == "http://127.0.0.1:2222"
    assert targets.consul is None, "a platform without Consul leaves that check skipped"
    assert with_dev_defaults(given, None) == given


def test_the_crd_this_mcpfleet_generates_passes_once_established() -> None:
    result = crd_verdict(installed_crd())
    assert result.outcome is Outcome.PASS, result
    assert "serves v1alpha1 (storage)" in result.detail


def test_a_crd_not_yet_established_fails_with_the_api_servers_reason() -> None:
    waiting = {"type": "Established", "status": "False", "message": "the initial names have not been accepted"}
    result = crd_verdict(installed_crd(conditions=[waiting]))
    assert result.outcome is Outcome.FAIL
    assert "the initial names have not been accepted" in result.detail
    assert result.fix == "kubectl describe crd mcpservers.mcpfleet.io"


def test_a_crd_that_does_not_serve_this_version_fails_naming_what_it_serves() -> None:
    crd = installed_crd()
    crd["spec"]["versions"][0]["name"] = "v1beta1"
    result = crd_verdict(crd)
    assert result.outcome is Outcome.FAIL
    assert "serves v1beta1; this mcpfleet speaks v1alpha1" in result.detail
    assert result.fix is not None
    assert "kubectl apply" in result.fix

    crd = installed_crd()
    crd["spec"]["versions"][0]["served"] = False
    assert "serves no version" in crd_verdict(crd).detail


def test_a_crd_with_another_schema_fails_as_installed_by_another_version() -> None:
    crd = installed_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    del schema["properties"]["spec"]["properties"]["endpoint"]
    result = crd_verdict(crd)
    assert result.outcome is Outcome.FAIL
    assert "schema other than this mcpfleet's" in result.detail


def deployment(name: str, container: dict[str, Any], ready: int | None = 1, replicas: int = 1) -> dict[str, Any]:
    status = {} if ready is None else {"readyReplicas": ready}
    return {
        "metadata": {"name": name, "namespace": "mcpfleet-system"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "main", **container}]}}},
        "status": status,
    }


OPERATOR_CONTAINERS = [
    {"image": "ghcr.io/mcpfleet/mcpfleet:0.1.0", "args": ["operator", "--namespace", "team-a"]},
    {"image": "ghcr.io/mcpfleet/mcpfleet:0.1.0", "command": ["mcpfleet", "operator"]},
    {"image": "registry.example/mcpfleet:1", "command": ["/opt/mcpfleet/venv/bin/mcpfleet"], "args": ["operator"]},
]
OTHER_CONTAINERS = [
    {"image": "ghcr.io/mcpfleet/mcpfleet:0.1.0", "args": ["gateway", "--config", "/etc/mcpfleet/gateway.yaml"]},
    {"image": "registry.example/other-operator:2", "command": ["/manager"], "args": ["--leader-elect"]},
    {"image": "busybox", "command": ["sh", "-c", "echo operator"]},
]


@pytest.mark.parametrize("container", OPERATOR_CONTAINERS)
def test_a_deployment_running_mcpfleet_operator_is_found(container: dict[str, Any]) -> None:
    assert operator_deployments([deployment("mcpfleet-operator", container)])


@pytest.mark.parametrize("container", OTHER_CONTAINERS)
def test_other_deployments_are_not_taken_for_the_operator(container: dict[str, Any]) -> None:
    assert operator_deployments([deployment("something", container)]) == []


def test_the_operator_deployment_passes_with_a_ready_replica_and_fails_without() -> None:
    gateway = deployment("mcpfleet-gateway", OTHER_CONTAINERS[0])
    ready = operator_deployment_verdict(
        "mcpfleet-system", [gateway, deployment("mcpfleet-operator", OPERATOR_CONTAINERS[0])]
    )
    assert ready == passed("operator", "Deployment mcpfleet-system/mcpfleet-operator: 1/1 replicas ready")

    starting = deployment("mcpfleet-operator", OPERATOR_CONTAINERS[0], ready=None)
    result = operator_deployment_verdict("mcpfleet-system", [starting])
    assert result.outcome is Outcome.FAIL
    assert result.fix is not None
    assert "kubectl -n mcpfleet-system logs deployment/mcpfleet-operator" in result.fix


def test_no_operator_deployment_fails_with_the_ways_to_run_one() -> None:
    result = operator_deployment_verdict("platform", [deployment("web", OTHER_CONTAINERS[1])])
    assert result.outcome is Outcome.FAIL
    assert "namespace platform" in result.detail
    assert result.fix is not None
    assert "helm install" in result.fix
    assert "--operator" in result.fix


METRICS = """\
# HELP mcpfleet_operator_managed_objects MCPServer objects the operator currently manages.
# TYPE mcpfleet_operator_managed_objects gauge
mcpfleet_operator_managed_objects 3.0
# HELP mcpfleet_operator_catalog_revision Revision of the catalog last written or read.
mcpfleet_operator_catalog_revision 1.0
"""


def test_the_operators_metrics_pass_and_say_how_many_servers_it_manages() -> None:
    result = operator_metrics_verdict("http://127.0.0.1:9090/metrics", 200, METRICS)
    assert result == passed("operator", "running, metrics at http://127.0.0.1:9090/metrics; manages 3 MCPServer(s)")


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, "not found"), (200, "# TYPE go_goroutines gauge\ngo_goroutines 12\n"), (500, METRICS)],
)
def test_anything_but_the_operators_metrics_fails(status: int, body: str) -> None:
    result = operator_metrics_verdict("http://127.0.0.1:9090/metrics", status, body)
    assert result.outcome is Outcome.FAIL
    assert result.fix is not None
    assert "--operator" in result.fix
