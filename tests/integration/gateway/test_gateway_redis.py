"""Three gateway processes sharing one real Redis: exact rate limits across replicas, the declared behaviour
while Redis is down, and an audit trail that survives the outage with every record."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import redis

from mcpfleet_gateway.audit import verify
from tests.integration.gateway.harness import (
    ROOT,
    GatewayProcess,
    config_document,
    gateway_processes,
    headers,
    token,
    write_config,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

OPERATOR = token("otto", ("operator",))
ADMIN = token("ada", ("admin",))
LIST = "/api/v1/tools/fleet:list_pods/call"
DELETE = "/api/v1/tools/fleet:delete_pod/call"


def _config(tmp_path: Path, redis_server: RedisServer, **limits: object) -> Path:
    document = config_document(
        tmp_path,
        redis_url=redis_server.url,
        rate_limits={"user_limit": "40/minute", "fallback_divisor": 3, **limits},
        upstreams={"fleet": {"transport": "in-process", "target": "tests.integration.gateway.fleet_app:build"}},
    )
    return write_config(tmp_path / "gateway.json", document)


async def _hammer(replicas: list[GatewayProcess], path: str, bearer: str, calls: int) -> list[int]:
    async with httpx2.AsyncClient(timeout=30) as http:

        async def one(i: int) -> int:
            replica = replicas[i % len(replicas)]
            response = await http.post(
                f"{replica.url}{path}",
                headers=headers(bearer),
                json={"arguments": {"namespace": "dev", "name": f"p{i}"}},
            )
            return response.status_code

        return list(await asyncio.gather(*(one(i) for i in range(calls))))


def _metric(replica: GatewayProcess, name: str) -> float:
    text = httpx2.get(f"{replica.url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_limits_are_exact_across_three_replicas_and_survive_a_redis_outage(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = _config(tmp_path, redis_server, tool_limits={"fleet:delete_pod": "7/minute"})
    with gateway_processes(config, 3, tmp_path) as replicas:
        statuses = await _hammer(replicas, LIST, OPERATOR, 120)
        assert statuses.count(200) == 40
        assert statuses.count(429) == 80
        # Another user has their own 40; the per-tool limit counts every user of the tool.
        deletes = await _hammer(replicas, DELETE, ADMIN, 20)
        assert deletes.count(200) == 7
        assert deletes.count(429) == 13
        assert (
            sum(
                _metric(r, 'mcpfleet_gateway_ratelimit_decisions_total{backend="redis",result="limited"')
                for r in replicas
            )
            == 93
        )

        redis_server.kill()
        # Fallback: each replica enforces 40 // 3 = 13 for a fresh user locally; HIGH tools fail closed.
        fresh = token("fay", ("admin",))
        during = await _hammer(replicas[:1], LIST, fresh, 20)
        assert during.count(200) == 13
        assert during.count(429) == 7
        high = await _hammer(replicas[:1], "/api/v1/tools/fleet:delete_pod/call", fresh, 3)
        assert high == [429, 429, 429]
        assert _metric(replicas[0], "mcpfleet_gateway_ratelimit_backend_up") == 0
        assert _metric(replicas[0], "mcpfleet_gateway_ratelimit_fallback_total") >= 1

        redis_server.start()
        await asyncio.sleep(2.5)  # the limiter's back-off before trying Redis again
        after = await _hammer(replicas, LIST, token("gus", ("viewer",)), 45)
        assert after.count(200) == 40
        assert _metric(replicas[0], "mcpfleet_gateway_ratelimit_backend_up") == 1


async def test_audit_records_survive_a_redis_outage_and_verify(tmp_path: Path, redis_server: RedisServer) -> None:
    config = _config(tmp_path, redis_server, user_limit=None)
    with gateway_processes(config, 1, tmp_path) as (replica,):
        first = await _hammer([replica], LIST, OPERATOR, 100)
        redis_server.kill()
        second = await _hammer([replica], LIST, OPERATOR, 100)
        assert first.count(200) == 100
        assert second.count(200) == 100
        assert _metric(replica, "mcpfleet_gateway_audit_backlog") > 0
        redis_server.start()
        for _ in range(100):  # up to 20 s for the spool to drain
            if _metric(replica, "mcpfleet_gateway_audit_backlog") == 0:
                break
            await asyncio.sleep(0.2)
        assert _metric(replica, "mcpfleet_gateway_audit_backlog") == 0
    client = redis.Redis.from_url(redis_server.url)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange("mcpfleet:audit:gw-0")  # type: ignore[assignment]
    records = [json.loads(fields[b"record"]) for _, fields in entries]
    calls = [r for r in records if r["tool"] == "fleet:list_pods"]
    assert len(calls) == 200
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert verify(json.dumps(r) for r in records).ok
    file_trail = tmp_path / "audit-gw-0.jsonl"
    assert verify(file_trail.read_text().splitlines()).ok

    cli = [
        sys.executable,
        "-m",
        "mcpfleet_cli.main",
        "audit",
        "verify",
        "--redis",
        redis_server.url,
        "--stream",
        "mcpfleet:audit:gw-0",
    ]
    verified = await asyncio.to_thread(subprocess.run, cli, cwd=ROOT, capture_output=True, check=False)
    assert verified.returncode == 0
    # Tamper: rewrite one record in place (XADD cannot rewrite, so delete it: a gap).
    client.xdel("mcpfleet:audit:gw-0", entries[50][0])
    tampered = await asyncio.to_thread(subprocess.run, cli, cwd=ROOT, capture_output=True, text=True, check=False)
    assert tampered.returncode == 1
    assert "missing" in tampered.stdout
    lines = file_trail.read_text().splitlines()
    edited = json.loads(lines[10])
    edited["subject"] = "someone-else"
    lines[10] = json.dumps(edited)
    file_trail.write_text("\n".join(lines) + "\n")
    result = verify(lines)
    assert not result.ok
    assert any("seq 11 was edited" in problem for problem in result.problems)
