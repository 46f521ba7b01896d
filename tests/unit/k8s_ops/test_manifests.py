"""Manifest generation, parsing, diffs, rollback patches and settings (pure)."""

from __future__ import annotations

import datetime

import pytest
import yaml
from pydantic import ValidationError

from mcpfleet_servers.base.toolkit import InvalidArgument
from mcpfleet_servers.k8s_ops.manifests import (
    DeploymentParams,
    SecretEnv,
    build_deployment,
    check_deployment,
    diff_objects,
    parse_manifests,
    to_yaml,
)
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from mcpfleet_servers.k8s_ops.tools_change import replacement_patch, restart_patch, rollback_template


def test_build_deployment_is_a_valid_apps_v1_deployment() -> None:
    params = DeploymentParams(
        name="web",
        image="nginx:1.27",
        namespace="team-a",
        replicas=3,
        container_port=8080,
        env={"MODE": "prod"},
        secret_env=[SecretEnv(name="DB_PASSWORD", secret="db", key="password")],
        cpu_request="100m",
        memory_limit="256Mi",
        health_path="/healthz",
    )
    manifest = build_deployment(params)
    assert check_deployment(manifest) == []
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert manifest["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "web"}
    assert container["env"][1] == {
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
    }
    assert container["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert yaml.safe_load(to_yaml(manifest)) == manifest
    assert build_deployment(params) == manifest  # deterministic


@pytest.mark.parametrize(
    "bad", [{"name": "Web"}, {"replicas": -1}, {"cpu_request": "lots"}, {"image": "has space"}, {"container_port": 0}]
)
def test_deployment_params_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DeploymentParams.model_validate({"name": "web", "image": "nginx"} | bad)


def test_check_deployment_names_each_problem() -> None:
    manifest = build_deployment(DeploymentParams(name="web", image="nginx"))
    manifest["spec"]["template"]["metadata"]["labels"] = {"other": "x"}
    manifest["spec"]["template"]["spec"]["containers"][0].pop("image")
    problems = check_deployment(manifest)
    assert any("matchLabels must match" in p for p in problems)
    assert any("containers[0].image" in p for p in problems)


def test_parse_manifests_accepts_fenced_yaml_and_refuses_junk() -> None:
    text = "Here it is:\n```yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n" + (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n```\nenjoy"
    )
    assert [d["metadata"]["name"] for d in parse_manifests(text)] == ["a", "b"]
    with pytest.raises(InvalidArgument) as bad:
        parse_manifests("just words", field="description")
    assert bad.value.field == "description"
    with pytest.raises(InvalidArgument):
        parse_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {}")


def test_diff_ignores_server_fields_and_lists_changes() -> None:
    before = {
        "metadata": {"name": "web", "resourceVersion": "7", "labels": {"a": "1"}},
        "spec": {"replicas": 2, "paused": False},
        "status": {"replicas": 2},
    }
    after = {
        "metadata": {"name": "web", "resourceVersion": "8", "labels": {"a": "1", "b": "2"}},
        "spec": {"replicas": 3},
    }
    changes = {(c.path, c.op, c.before, c.after) for c in diff_objects(before, after)}
    assert changes == {
        ("metadata.labels.b", "add", None, "2"),
        ("spec.replicas", "change", 2, 3),
        ("spec.paused", "remove", False, None),
    }
    assert diff_objects(after, after) == []
    assert diff_objects(None, after)[0].op == "add"


def test_rollback_patch_replaces_the_template_exactly() -> None:
    current = {
        "metadata": {"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "x"}},
        "spec": {"containers": [{"name": "app", "image": "web:2"}]},
    }
    replicaset = {
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
                "spec": {"containers": [{"name": "app", "image": "web:1"}]},
            }
        }
    }
    desired = rollback_template(replicaset)
    assert desired["metadata"]["labels"] == {"app": "web"}
    patch = replacement_patch(current, desired)
    assert patch == {"metadata": {"annotations": None}, "spec": {"containers": [{"name": "app", "image": "web:1"}]}}


def test_restart_patch_sets_restarted_at() -> None:
    now = datetime.datetime(2026, 5, 1, 12, 0, 0, 123, tzinfo=datetime.UTC)
    assert restart_patch(now) == {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-05-01T12:00:00Z"}}}
        }
    }


def test_settings_from_env_and_config_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8S_PROTECTED_NAMESPACES", "kube-system, prod")
    monkeypatch.setenv("K8S_NAMESPACE", "team-a")
    settings = K8sOpsSettings()
    assert settings.protected_namespaces == ("kube-system", "prod")
    assert settings.namespace == "team-a"
    assert settings.denied_kinds == ("Secret",)
    assert not settings.exec_enabled
    merged = K8sOpsSettings.from_config(
        {"config": {"k8sOps": {"readOnly": True, "namespaces": ["team-a", "team-b"], "requireConfirmation": False}}}
    )
    assert merged.allowed_namespaces == ("team-a", "team-b")
    monkeypatch.setenv("K8S_ALLOWED_NAMESPACES", "only-this")
    assert K8sOpsSettings.from_config({"config": {"k8sOps": {"namespaces": ["x"]}}}).allowed_namespaces == (
        "only-this",
    )
    monkeypatch.setenv("K8S_REQUEST_TIMEOUT_SECONDS", "-1")
    with pytest.raises(ValidationError, match="request_timeout_seconds"):
        K8sOpsSettings()
