"""The rule that decides which audited gateway calls changed which objects, and the audit trail's plain reading.

Records are made by the gateway's own audit code (event + AuditChain), so their shape is the real one.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mcpfleet_contracts import audit as contract
from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_gateway import audit as gateway_audit
from mcpfleet_gateway.audit import AuditChain, event
from mcpfleet_servers.base.settings import ConfigFile
from mcpfleet_servers.cmdb.audit_match import MAX_MANIFEST_CHARS, call_risk, change_records, is_change, named_objects
from mcpfleet_servers.cmdb.audit_source import convert, lines_before, redis_location
from mcpfleet_servers.cmdb.settings import SECRETS_DIR, CmdbSettings

DEFAULT_NS = "default"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CMDB_"):
            monkeypatch.delenv(name)


def record(
    tool: str,
    arguments: dict[str, Any] | None = None,
    *,
    decision: str = "allowed",
    status: str = "ok",
    subject: str = "alice",
    time: str = "2026-01-04T10:00:00.000000+00:00",
    chain: AuditChain | None = None,
) -> contract.AuditRecord:
    made = event(
        time=time,
        request_id="req-1",
        subject=subject,
        tool=tool,
        arguments=arguments or {},
        decision=decision,
        status=status,
    )
    return (chain or AuditChain()).append(made)


def test_the_gateway_writes_the_contracts_record() -> None:
    assert gateway_audit.AuditRecord is contract.AuditRecord
    assert gateway_audit.AuditEvent is contract.AuditEvent


@pytest.mark.parametrize(
    ("tool", "risk"),
    [
        ("k8s:scale_deployment", Risk.MEDIUM),
        ("k8s:delete_resource", Risk.HIGH),
        ("k8s:list_pods", Risk.SAFE),
        ("cmdb:update_asset_status", Risk.MEDIUM),
        ("k8s__get_pods", Risk.SAFE),  # another separator: the first known verb still decides
        ("k8s:frobnicate_things", Risk.MEDIUM),  # no known verb: not safe
        ("resource:cmdb://assets", Risk.MEDIUM),
    ],
)
def test_call_risk_follows_the_catalog_naming_rule(tool: str, risk: Risk) -> None:
    assert call_risk(tool) is risk


def test_only_succeeded_non_safe_real_calls_are_changes() -> None:
    scale = {"name": "web", "namespace": "shop", "replicas": 3}
    assert is_change(record("k8s:scale_deployment", scale))
    assert not is_change(record("k8s:scale_deployment", scale, decision="denied", status="denied"))
    assert not is_change(record("k8s:scale_deployment", scale, decision="rate-limited", status="rate-limited"))
    assert not is_change(record("k8s:scale_deployment", scale, status="tool-error"))
    assert not is_change(record("k8s:scale_deployment", scale, decision="error", status="timeout"))
    assert not is_change(record("k8s:get_deployment", {"name": "web", "namespace": "shop"}))
    assert not is_change(record("k8s:apply_manifest", {"manifest": "kind: X", "dry_run_only": True}))
    generate = record("k8s:generate_deployment_yaml", {"name": "web"})
    assert not is_change(generate, ["*generate_*"])
    assert is_change(generate, [])


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("k8s:scale_deployment", {"name": "web", "namespace": "shop"}, ["deployment/shop/web"]),
        ("k8s:restart_deployment", {"name": "web"}, ["deployment/default/web"]),
        ("k8s:delete_resource", {"kind": "deploy", "name": "db", "namespace": "shop"}, ["deployment/shop/db"]),
        ("k8s:delete_resource", {"kind": "deployments.apps", "name": "db", "namespace": "s"}, ["deployment/s/db"]),
        ("k8s:delete_resource", {"kind": "Namespace", "name": "old", "namespace": "x"}, ["namespace/old"]),
        ("k8s:delete_resource", {"kind": "ConfigMap", "name": "c", "namespace": "shop"}, ["configmap/shop/c"]),
        ("k8s:cordon_node", {"name": "node-1", "namespace": "shop"}, ["node/node-1"]),
        ("k8s:drain", {"node": "node-2"}, ["node/node-2"]),
        ("k8s:exec_in_pod", {"name": "web-1", "namespace": "shop", "command": ["ls"]}, ["pod/shop/web-1"]),
        ("cmdb:update_asset_status", {"asset_id": "deployment/shop/web", "status": "retired"}, ["deployment/shop/web"]),
        ("cmdb:update_asset_status", {"asset_id": "device/1", "status": "retired"}, []),  # a NetBox id
        ("k8s:scale_deployment", {"replicas": 3}, []),
        ("monitoring:create_silence", {"matchers": [{"name": "alertname"}]}, []),
    ],
)
def test_named_objects(tool: str, arguments: dict[str, Any], expected: list[str]) -> None:
    assert named_objects(tool, arguments, DEFAULT_NS) == expected


def test_manifest_documents_name_their_objects() -> None:
    manifest = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web}
---
apiVersion: v1
kind: Node
metadata: {name: node-9}
---
just text
"""
    found = named_objects("k8s:apply_manifest", {"manifest": manifest, "namespace": "team"}, DEFAULT_NS)
    assert found == ["deployment/shop/web", "service/team/web", "node/node-9"]
    assert named_objects("k8s:apply_manifest", {"manifest": "kind: [unclosed"}, DEFAULT_NS) == []
    huge = "kind: Service\nmetadata: {name: x}\n" + "#" * MAX_MANIFEST_CHARS
    assert named_objects("k8s:apply_manifest", {"manifest": huge}, DEFAULT_NS) == []


def test_change_records_say_who_did_what_with_secrets_redacted() -> None:
    chain = AuditChain()
    scaled = record("k8s:scale_deployment", {"name": "web", "namespace": "shop", "replicas": 3}, chain=chain)
    applied = record(
        "k8s:apply_manifest",
        {"manifest": "kind: Deployment\nmetadata: {name: a}\n---\nkind: Deployment\nmetadata: {name: b}\n"},
        subject="bob",
        chain=chain,
    )
    with_token = record("cmdb:update_asset_status", {"asset_id": "node/node-1", "token": "hunter2-secret"}, chain=chain)
    denied = record("k8s:scale_deployment", {"name": "web"}, decision="denied", status="denied", chain=chain)

    (one,) = change_records(scaled, "mcpfleet:audit:gw-1", DEFAULT_NS)
    assert (one.id, one.asset, one.actor, one.action, one.source) == (
        "audit/mcpfleet:audit:gw-1/1",
        "deployment/shop/web",
        "alice",
        "k8s:scale_deployment",
        "audit",
    )
    assert one.time == datetime(2026, 1, 4, 10, tzinfo=UTC)
    assert '"replicas":3' in one.reason
    assert "req-1" in one.reason
    assert [(r.id, r.asset, r.actor) for r in change_records(applied, "t", DEFAULT_NS)] == [
        ("audit/t/2/1", "deployment/default/a", "bob"),
        ("audit/t/2/2", "deployment/default/b", "bob"),
    ]
    (secret,) = change_records(with_token, "t", DEFAULT_NS)
    assert "hunter2-secret" not in secret.model_dump_json()
    assert change_records(denied, "t", DEFAULT_NS) == []


def test_a_page_stops_at_since_skips_after_until_and_counts_duplicates_once() -> None:
    chain = AuditChain()
    made = [
        record(
            "k8s:scale_deployment",
            {"name": f"w{n}", "namespace": "s"},
            time=f"2026-01-0{n}T00:00:00+00:00",
            chain=chain,
        )
        for n in range(1, 6)
    ]
    lines = [r.model_dump_json() for r in reversed(made)] + ["not json", ""]
    seen: set[str] = set()
    since, until = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 4, tzinfo=UTC)
    page = convert(lines, "t", since, until, DEFAULT_NS, (), seen)
    assert [r.asset for r in page.records] == ["deployment/s/w4", "deployment/s/w3", "deployment/s/w2"]
    assert page.reached_since
    again = convert(lines[1:3], "other", None, None, DEFAULT_NS, (), seen)
    assert again.records == []  # the same records from another trail (the log beside the stream)
    tail = convert(["not json", ""], "t", None, None, DEFAULT_NS, (), set())
    assert (tail.unreadable, tail.reached_since) == (2, False)


def test_a_log_is_read_backwards_in_pages_without_its_torn_tail(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    lines = [json.dumps({"n": n, "pad": "x" * (n * 7000)}) for n in range(30)]  # lines across block boundaries
    log.write_text("\n".join(lines) + "\n" + '{"torn')
    read: list[str] = []
    end: int | None = None
    while True:
        page, end = lines_before(log, end, 4)
        read += page
        if len(page) < 4:
            break
    assert [json.loads(line)["n"] for line in read] == list(reversed(range(30)))
    assert end == 0


def test_audit_settings_from_the_config_block_and_their_checks() -> None:
    settings = CmdbSettings.from_config(
        ConfigFile(
            config={
                "cmdb": {
                    "auditRedisUrl": "redis://redis.mcpfleet:6379/0",
                    "auditStreams": ["mcpfleet:audit:*", "other:audit"],
                    "auditRedisPasswordSecret": {"name": "redis", "key": "password"},
                }
            }
        )
    )
    assert settings.audit_redis_url is not None
    assert settings.audit_redis_url.get_secret_value() == "redis://redis.mcpfleet:6379/0"
    assert settings.stream_patterns == ("mcpfleet:audit:*", "other:audit")
    assert settings.audit_redis_password_file == SECRETS_DIR / "redis" / "password"
    assert settings.ignored_tools == ("*generate_*",)
    for bad in ("http://redis:6379", "redis://redis:port/0"):
        with pytest.raises(ValidationError, match="audit_redis_url"):
            CmdbSettings(audit_redis_url=bad)
    with pytest.raises(ValidationError, match="kubernetes backend only"):
        CmdbSettings(backend="rest", url="http://cmdb", audit_log_path="/var/log/audit.jsonl")
    with pytest.raises(ValidationError, match="CMDB_AUDIT_STREAMS"):
        CmdbSettings(audit_streams=" , ")
    assert "s3cret" not in repr(CmdbSettings(audit_redis_url="redis://:s3cret@redis:6379/0"))


def test_messages_show_where_redis_is_never_its_password() -> None:
    assert redis_location("redis://:s3cret@redis.mcpfleet:6380/0") == "redis.mcpfleet:6380"
    assert redis_location("rediss://user:pw@redis") == "redis:6379"
    assert redis_location("unix:///run/redis.sock") == "/run/redis.sock"
