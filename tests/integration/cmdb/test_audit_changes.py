"""The gateway's audit as a change-record source of the kubernetes backend: a real redis-server holding streams
written by the gateway's own AuditWriter, the backend against kmock's emulator, through a real MCP client.

Two gateway replicas wrote calls about the app of test_kubernetes_backend (Deployment shop/web, its pod
web-b-1, Deployment shop/db): some changed something, others were denied, failed, only read, or were dry runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from redis.asyncio import Redis

from mcpfleet_contracts.audit import AuditEvent
from mcpfleet_gateway.audit import event
from mcpfleet_gateway.audit_sink import AuditSettings, AuditWriter
from tests.emulator import ApiServerEmulator
from tests.integration.cmdb.conftest import MakeFleet
from tests.integration.cmdb.test_kubernetes_backend import ids, ok, seed_app
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

WEB = "deployment/shop/web"
MANIFEST = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n"


def call(when: str, subject: str, tool: str, arguments: dict[str, Any], status: str = "ok") -> AuditEvent:
    decision = {"ok": "allowed", "tool-error": "allowed", "denied": "denied"}[status]
    return event(
        time=f"2026-01-{when}:00.000000+00:00",
        request_id=f"req-{subject}",
        subject=subject,
        roles=("operator",),
        tool=tool,
        arguments=arguments,
        decision=decision,
        status=status,
    )


REPLICA_CALLS = {
    "gw-1": [
        call("04T09:00", "alice", "k8s:scale_deployment", {"name": "web", "namespace": "shop", "replicas": 3}),
        call("04T09:05", "bob", "k8s:scale_deployment", {"name": "web", "namespace": "shop"}, status="denied"),
        call("04T09:10", "carol", "k8s:get_deployment", {"name": "web", "namespace": "shop"}),
        call("04T09:15", "dave", "k8s:restart_deployment", {"name": "web", "namespace": "shop"}, status="tool-error"),
        call("04T09:20", "erin", "k8s:exec_in_pod", {"name": "web-b-1", "namespace": "shop", "command": ["ls"]}),
        call("04T09:25", "frank", "k8s:delete_resource", {"kind": "Deployment", "name": "db", "namespace": "shop"}),
    ],
    "gw-2": [
        call("05T08:00", "grace", "cmdb:update_asset_status", {"asset_id": WEB, "status": "maintenance"}),
        call("05T08:30", "heidi", "k8s:apply_manifest", {"manifest": MANIFEST, "dry_run_only": True}),
    ],
}
# Newest first: grace's status change (gw-2), erin's exec in the pod, alice's scale, then Events and rollouts.
WEB_CHANGES = [
    "audit/mcpfleet:audit:gw-2/1",
    "audit/mcpfleet:audit:gw-1/5",
    "audit/mcpfleet:audit:gw-1/1",
    "event/shop/web-b-1.1",
    "rollout/shop/web/2",
    "rollout/shop/web/1",
]


async def write_trails(redis_url: str, directory: Path) -> None:
    """What two gateway replicas write: each its own stream and log, through the real writer."""
    client = Redis.from_url(redis_url)
    try:
        for replica, calls in REPLICA_CALLS.items():
            settings = AuditSettings(
                log_path=directory / "audit-{replica}.jsonl",
                spool_dir=directory / "spool" / "{replica}",
                flush_interval_seconds=0.01,
            )
            writer = AuditWriter(settings, replica=replica, redis=client)
            await writer.start()
            for made in calls:
                writer.submit(made)
            await writer.close()  # drains the queue into the log and the stream
            assert await client.xlen(f"mcpfleet:audit:{replica}") == len(calls)
    finally:
        await client.aclose()


@pytest.fixture
async def trails(redis_server: RedisServer, emulator: ApiServerEmulator, tmp_path: Path) -> Path:
    seed_app(emulator)
    await write_trails(redis_server.url, tmp_path / "gateway")
    return tmp_path / "gateway"


def audit_items(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in page["items"] if item["source"] == "audit"]


async def test_audit_records_of_changing_calls_merge_with_events_and_rollouts(
    make_fleet: MakeFleet, redis_server: RedisServer, trails: Path
) -> None:
    fleet = await make_fleet(cmdb={"audit_redis_url": redis_server.url})
    async with Client(fleet.mcp) as client:
        web = await ok(client, "get_change_records", asset_id=WEB)
        window = await ok(
            client, "get_change_records", asset_id=WEB, since="2026-01-04T09:10:00Z", until="2026-01-04T23:00:00Z"
        )
        db = await ok(client, "get_change_records", asset_id="deployment/shop/db")
        everything = await ok(client, "get_change_records")
    assert ids(web) == WEB_CHANGES
    assert web["note"] is None
    grace, erin, alice = audit_items(web)
    assert (grace["actor"], grace["action"], grace["asset"]) == ("grace", "cmdb:update_asset_status", WEB)
    assert (erin["actor"], erin["asset"]) == ("erin", "pod/shop/web-b-1")
    assert (alice["actor"], alice["action"]) == ("alice", "k8s:scale_deployment")
    assert '"replicas":3' in alice["reason"]
    assert ids(window) == ["audit/mcpfleet:audit:gw-1/5"]
    assert [(c["actor"], c["action"]) for c in audit_items(db)] == [("frank", "k8s:delete_resource")]
    # Denied, failed, read-only and dry-run calls are no changes.
    assert {c["actor"] for c in audit_items(everything)} == {"alice", "erin", "frank", "grace"}


async def test_the_log_is_a_trail_too_and_a_record_in_both_counts_once(
    make_fleet: MakeFleet, redis_server: RedisServer, trails: Path
) -> None:
    logs_only = await make_fleet(cmdb={"audit_log_path": str(trails / "audit-*.jsonl")})
    both = await make_fleet(cmdb={"audit_redis_url": redis_server.url, "audit_log_path": str(trails / "audit-*.jsonl")})
    async with Client(logs_only.mcp) as client:
        from_logs = await ok(client, "get_change_records", asset_id=WEB)
    async with Client(both.mcp) as client:
        from_both = await ok(client, "get_change_records", asset_id=WEB)
    assert ids(from_logs)[:3] == ["audit/audit-gw-2.jsonl/1", "audit/audit-gw-1.jsonl/5", "audit/audit-gw-1.jsonl/1"]
    assert ids(from_both) == WEB_CHANGES


async def test_the_scan_is_capped_and_says_so(make_fleet: MakeFleet, redis_server: RedisServer, trails: Path) -> None:
    capped = await make_fleet(cmdb={"audit_redis_url": redis_server.url, "audit_max_scan": 5, "audit_page_size": 2})
    async with Client(capped.mcp) as client:
        cut = await ok(client, "get_change_records", asset_id=WEB)
        recent = await ok(client, "get_change_records", asset_id=WEB, since="2026-01-05T00:00:00Z")
    # Round-robin, two records a page: gw-1's newest two (erin's exec among them), gw-2's two (grace's change),
    # then one more of gw-1: alice's scale, gw-1's first record, is not reached.
    assert [c["actor"] for c in audit_items(cut)] == ["grace", "erin"]
    assert "the audit scan stopped after 5 records (CMDB_AUDIT_MAX_SCAN)" in cut["note"]
    # With since, gw-1's scan stops at its first older record and gw-2's at its start: the cap is not reached.
    assert [c["actor"] for c in audit_items(recent)] == ["grace"]
    assert recent["note"] is None


async def test_redis_down_leaves_the_other_sources_answering(
    make_fleet: MakeFleet, redis_server: RedisServer, trails: Path
) -> None:
    fleet = await make_fleet(cmdb={"audit_redis_url": redis_server.url, "audit_timeout_seconds": 5})
    async with Client(fleet.mcp) as client:
        before = await ok(client, "get_change_records", asset_id=WEB)
        redis_server.kill()
        during = await ok(client, "get_change_records", asset_id=WEB)
        redis_server.start()  # an empty Redis: it kept nothing (no persistence)
        after = await ok(client, "get_change_records", asset_id=WEB)
    assert ids(before) == WEB_CHANGES
    assert ids(during) == WEB_CHANGES[3:]
    assert f"the audit trail in Redis at 127.0.0.1:{redis_server.port} is unavailable (cannot connect" in during["note"]
    assert "Traceback" not in during["note"]
    assert ids(after) == WEB_CHANGES[3:]
    assert after["note"] is None


async def test_a_password_from_a_file_and_a_refused_one(
    make_fleet: MakeFleet, redis_server: RedisServer, trails: Path, tmp_path: Path
) -> None:
    admin = Redis.from_url(redis_server.url)
    await admin.config_set("requirepass", "audit-pass-1")
    await admin.aclose()
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("audit-pass-1\n")
    bad.write_text("not-it\n")
    allowed = await make_fleet(cmdb={"audit_redis_url": redis_server.url, "audit_redis_password_file": str(good)})
    refused = await make_fleet(cmdb={"audit_redis_url": redis_server.url, "audit_redis_password_file": str(bad)})
    missing = await make_fleet(
        cmdb={"audit_redis_url": redis_server.url, "audit_redis_password_file": str(tmp_path / "nope")}
    )
    async with Client(allowed.mcp) as client:
        read = await ok(client, "get_change_records", asset_id=WEB)
    async with Client(refused.mcp) as client:
        denied = await ok(client, "get_change_records", asset_id=WEB)
    async with Client(missing.mcp) as client:
        unread = await ok(client, "get_change_records", asset_id=WEB)
    assert ids(read) == WEB_CHANGES
    assert ids(denied) == WEB_CHANGES[3:]
    assert "refused the credentials: check CMDB_AUDIT_REDIS_PASSWORD_FILE" in denied["note"]
    assert "not-it" not in denied["note"]
    assert ids(unread) == WEB_CHANGES[3:]
    assert "cannot read CMDB_AUDIT_REDIS_PASSWORD_FILE" in unread["note"]
