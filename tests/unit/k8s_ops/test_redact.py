"""Redaction and trimming of Kubernetes objects and free text (pure)."""

from __future__ import annotations

import json
from typing import Any

from mcpfleet_servers.k8s_ops.redact import (
    LAST_APPLIED,
    REDACTED,
    redact_annotations,
    redact_env,
    redact_object,
    redact_text,
)

KUBECONFIG = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://x\nusers:\n- user:\n    token: kc-token-9f8e7d"


def secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "db",
            "namespace": "team-a",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {LAST_APPLIED: '{"data":{"password":"aHVudGVyMg=="}}'},
        },
        "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="},
        "stringData": {"extra": "plain-secret-value"},
    }


def test_a_secret_shows_metadata_type_and_key_count_only() -> None:
    shown = redact_object(secret(), ("Secret",))
    text = json.dumps(shown)
    assert shown["keys"] == 3
    assert shown["type"] == "Opaque"
    assert shown["metadata"]["name"] == "db"
    for value in ("aHVudGVyMg==", "YWRtaW4=", "plain-secret-value", "managedFields", LAST_APPLIED):
        assert value not in text
    assert "data" not in shown
    assert "stringData" not in shown


def test_denied_kinds_are_matched_case_insensitively_and_configurable() -> None:
    assert "data" not in redact_object(secret(), ("secret",))
    cm = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    assert redact_object(cm, ("ConfigMap",))["keys"] == 1


def test_env_keeps_secret_references_and_masks_credential_literals() -> None:
    env = [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "API_TOKEN", "value": "tok-123456"},
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "DSN", "value": "postgres://app:s3cr3t@db:5432/app"},
    ]
    shown = redact_env(env)
    assert shown[0] == env[0]
    assert shown[1]["value"] == REDACTED
    assert shown[2]["value"] == "debug"
    assert "s3cr3t" not in json.dumps(shown)


def test_env_in_every_pod_template_is_redacted() -> None:
    container = {"name": "app", "env": [{"name": "PASSWORD", "value": "hunter2"}]}
    dep = {
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [container], "initContainers": [dict(container)]}}},
    }
    assert "hunter2" not in json.dumps(redact_object(dep, ("Secret",)))


def test_configmap_values_under_credential_keys_are_masked() -> None:
    cm = {
        "kind": "ConfigMap",
        "metadata": {"name": "cfg"},
        "data": {"db_password": "pw-1", "api-key": "k-2", "app.properties": "password=pw-3\nmode=fast", "mode": "x"},
    }
    shown = redact_object(cm, ("Secret",))
    assert shown["data"]["db_password"] == REDACTED
    assert shown["data"]["api-key"] == REDACTED
    assert "pw-3" not in shown["data"]["app.properties"]
    assert "mode=fast" in shown["data"]["app.properties"]
    assert shown["data"]["mode"] == "x"


def test_annotations_with_kubeconfigs_or_tokens_are_masked_and_last_applied_dropped() -> None:
    shown = redact_annotations(
        {"example.com/kubeconfig": KUBECONFIG, "ci/auth-token": "abc", "team": "payments", LAST_APPLIED: "{}"}
    )
    assert shown == {"example.com/kubeconfig": REDACTED, "ci/auth-token": REDACTED, "team": "payments"}
    assert redact_annotations({"notes": KUBECONFIG}) == {"notes": REDACTED}  # recognised by content


def test_free_text_loses_tokens_passwords_keys_and_url_credentials() -> None:
    lines = [
        "GET /api Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sgnaturepart",
        "connecting with password=hunter2 to db",
        'config {"token": "abc123def456"}',
        "url https://admin:pa55word@example.com/x",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "key AKIAABCDEFGHIJKLMNOP",
    ]
    text = redact_text("\n".join(lines))
    for value in ("eyJhbGci", "hunter2", "abc123def456", "pa55word", "MIIEow", "AKIAABCDEFGHIJKLMNOP"):
        assert value not in text
    assert "connecting with password=" in text
    assert "example.com" in text


def test_objects_are_trimmed_and_not_mutated() -> None:
    obj = secret() | {"kind": "Pod"}
    before = json.dumps(obj, sort_keys=True)
    shown = redact_object(obj, ("Secret",))
    assert "managedFields" not in shown["metadata"]
    assert "annotations" in shown["metadata"]
    assert LAST_APPLIED not in shown["metadata"]["annotations"]
    assert json.dumps(obj, sort_keys=True) == before
