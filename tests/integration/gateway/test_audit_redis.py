"""The audit writer against a real redis-server: both sinks, outages with and without Redis keeping its data,
a resend after a crash, and `mcpfleet audit verify --redis`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from typer.testing import CliRunner

from mcpfleet_cli.main import app
from mcpfleet_gateway.audit import AuditChain, AuditEvent, AuditRecord, event, read_lines, verify
from mcpfleet_gateway.audit_sink import AuditMetrics, AuditSettings, AuditUnavailable, AuditWriter, read_stream
from mcpfleet_gateway.spool import AuditSpool
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

REPLICA = "gw-1"
STREAM = f"mcpfleet:audit:{REPLICA}"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    connection = Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
    yield connection
    await connection.aclose()


def calls(count: int, start: int = 0) -> list[AuditEvent]:
    return [
        event(
            request_id=f"r{i}",
            subject="alice",
            tool="k8s:list_pods",
            arguments={"namespace": "team-a"},
            decision="allowed" if i % 7 else "denied",
            status="ok" if i % 7 else "denied",
        )
        for i in range(start, start + count)
    ]


class Writer:
    def __init__(self, tmp_path: Path, redis_client: Redis, *, log: bool = True, **overrides: Any) -> None:
        values: dict[str, Any] = {
            "log_path": tmp_path / "audit-{replica}.jsonl" if log else None,
            "spool_dir": tmp_path / "spool" / "{replica}",
            "flush_interval_seconds": 0.01,
            "retry_seconds": 0.1,
            "redis_timeout_seconds": 1.0,
        }
        self.registry = CollectorRegistry()
        self.log = tmp_path / f"audit-{REPLICA}.jsonl"
        self.spool = tmp_path / "spool" / REPLICA / "redis"
        self.writer = AuditWriter(
            AuditSettings(**(values | overrides)),
            replica=REPLICA,
            redis=redis_client,
            metrics=AuditMetrics(self.registry),
        )

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(f"mcpfleet_gateway_audit_{name}", labels) or 0.0


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def stream_lines(redis_client: Redis) -> list[str]:
    return [line async for line in read_stream(redis_client, STREAM, page=100)]


async def stream_ids(redis_client: Redis) -> list[str]:
    entries: Any = await redis_client.xrange(STREAM)
    return [entry_id.decode() for entry_id, _ in entries]


def ids(first: int, last: int) -> list[str]:
    return [f"{seq}-0" for seq in range(first, last + 1)]


async def test_records_reach_the_stream_and_the_log(tmp_path: Path, client: Redis) -> None:
    gw = Writer(tmp_path, client)
    await gw.writer.start()
    for audit_event in calls(500):
        gw.writer.submit(audit_event)
    await until(lambda: gw.writer.backlog == 0)
    lines = await stream_lines(client)
    assert lines == [line.rstrip("\n") for line in read_lines(gw.log)], "the same records, the same bytes"
    assert await stream_ids(client) == ids(1, 500), "entry id = seq"
    result = verify(lines, expected_head=gw.writer.head[1])
    assert result.ok, result.problems
    assert result.records == 500
    assert gw.sample("records_total", sink="redis", outcome="ok") == 500
    assert gw.sample("sink_up", sink="redis") == 1
    await gw.writer.close()

    again = Writer(tmp_path, client)  # a restart continues both trails
    await again.writer.start()
    for audit_event in calls(200, start=500):
        again.writer.submit(audit_event)
    await again.writer.close()
    assert await stream_ids(client) == ids(1, 700)
    assert verify(await stream_lines(client), expected_head=again.writer.head[1]).ok
    assert verify(read_lines(again.log), expected_head=again.writer.head[1]).ok


async def submit_paced(writer: AuditWriter, events: list[AuditEvent]) -> None:
    for index, audit_event in enumerate(events):
        writer.submit(audit_event)
        if index % 50 == 49:
            await asyncio.sleep(0.005)  # traffic, not one burst


async def test_an_outage_loses_nothing_even_when_redis_comes_back_empty(
    tmp_path: Path, client: Redis, redis_server: RedisServer
) -> None:
    # This redis-server keeps nothing across a restart: what the stream held before is refilled from the log.
    gw = Writer(tmp_path, client)
    await gw.writer.start()
    await submit_paced(gw.writer, calls(800))
    redis_server.kill()
    await submit_paced(gw.writer, calls(600, start=800))
    await until(lambda: gw.sample("sink_up", sink="redis") == 0)
    await until(lambda: gw.sample("records_total", sink="spool", outcome="spooled") > 0)
    assert gw.sample("backlog") > 0
    assert AuditSpool(gw.spool).count() > 0
    redis_server.start()
    await submit_paced(gw.writer, calls(600, start=1400))
    await until(lambda: gw.writer.backlog == 0, within=15)

    assert await stream_ids(client) == ids(1, 2000), "every record once, in order"
    assert verify(await stream_lines(client), expected_head=gw.writer.head[1]).ok
    assert verify(read_lines(gw.log), expected_head=gw.writer.head[1]).ok
    assert gw.sample("backlog") == 0
    assert gw.sample("sink_up", sink="redis") == 1
    assert gw.sample("records_total", sink="redis", outcome="lost") == 0
    assert AuditSpool(gw.spool).count() == 0
    await gw.writer.close()


async def test_the_spool_alone_carries_an_outage(tmp_path: Path, client: Redis, redis_server: RedisServer) -> None:
    gw = Writer(tmp_path, client, log=False)  # no log to refill from: the spool is all there is
    await gw.writer.start()
    await submit_paced(gw.writer, calls(300))
    await until(lambda: gw.writer.backlog == 0)
    await client.save()  # this time Redis keeps its data across the restart
    redis_server.kill()
    await submit_paced(gw.writer, calls(700, start=300))
    await until(lambda: AuditSpool(gw.spool).count() == 700)
    assert gw.sample("backlog") == 700
    redis_server.start()
    await until(lambda: gw.writer.backlog == 0, within=15)
    await gw.writer.close()

    assert await stream_ids(client) == ids(1, 1000)
    assert verify(await stream_lines(client), expected_head=gw.writer.head[1]).ok
    assert gw.sample("records_total", sink="spool", outcome="spooled") == 700
    assert gw.sample("records_total", sink="redis", outcome="duplicate") == 0


async def test_a_resend_after_a_crash_is_not_a_duplicate(tmp_path: Path, client: Redis) -> None:
    # The state a crash leaves between the XADD and the spool's progress write: 1-200 in the stream and
    # still pending in the spool, 201-500 only in the spool.
    chain = AuditChain()
    records: list[AuditRecord] = [chain.append(audit_event) for audit_event in calls(500)]
    spool = AuditSpool(tmp_path / "spool" / REPLICA / "redis")
    for record in records:
        spool.append(record)
    for record in records[:200]:
        await client.xadd(STREAM, {"record": record.model_dump_json()}, id=f"{record.seq}-0")

    gw = Writer(tmp_path, client, log=False)
    await gw.writer.start()
    await until(lambda: gw.writer.backlog == 0)
    for audit_event in calls(100, start=500):
        gw.writer.submit(audit_event)
    await gw.writer.close()

    assert await stream_ids(client) == ids(1, 600)
    assert verify(await stream_lines(client), expected_head=gw.writer.head[1]).ok
    assert gw.sample("records_total", sink="redis", outcome="duplicate") == 200
    assert spool.count() == 0


async def test_an_entry_another_writer_added_is_a_counted_conflict(tmp_path: Path, client: Redis) -> None:
    # Someone else added an entry with an id this writer is about to use: refused, counted, never silent.
    gw = Writer(tmp_path, client)
    await gw.writer.start()
    for audit_event in calls(10):
        gw.writer.submit(audit_event)
    await until(lambda: gw.writer.backlog == 0)
    forged = AuditChain.resume(AuditRecord.model_validate_json((await stream_lines(client))[-1]))
    await client.xadd(STREAM, {"record": forged.append(calls(1)[0]).model_dump_json()}, id="11-0")
    for audit_event in calls(5, start=10):
        gw.writer.submit(audit_event)
    await until(lambda: gw.writer.backlog == 0)
    await gw.writer.close()
    assert gw.sample("records_total", sink="redis", outcome="conflict") == 1
    assert not verify(await stream_lines(client)).ok
    assert verify(read_lines(gw.log)).ok


def populate(tmp_path: Path, url: str, count: int) -> str:
    async def run() -> str:
        connection = Redis.from_url(url)
        gw = Writer(tmp_path, connection, log=False)
        await gw.writer.start()
        for audit_event in calls(count):
            gw.writer.submit(audit_event)
        await gw.writer.close()
        await connection.aclose()
        return gw.writer.head[1]

    return asyncio.run(run())


def test_cli_verifies_a_stream(tmp_path: Path, redis_server: RedisServer) -> None:
    head = populate(tmp_path, redis_server.url, 30)
    runner = CliRunner()

    def verify_cli(*extra: str) -> Any:
        return runner.invoke(app, ["audit", "verify", "--redis", redis_server.url, "--stream", STREAM, *extra])

    intact = verify_cli("--head", head)
    assert intact.exit_code == 0, intact.output
    assert f"stream {STREAM}: 30 record(s), head {head}: intact" in intact.output

    sync = redis.Redis.from_url(redis_server.url)
    top: Any = sync.xrevrange(STREAM, count=1)
    last = json.loads(top[0][1][b"record"])
    forged = dict(last, seq=31, prev_hash=last["hash"], subject="eve")  # a hash it cannot compute right
    sync.xadd(STREAM, {"record": json.dumps(forged)}, id="31-0")
    result = verify_cli()
    assert result.exit_code == 1, result.output
    assert "line 31: seq 31 was edited" in result.output

    sync.xdel(STREAM, "31-0", "12-0")
    result = verify_cli("--head", head)
    assert result.exit_code == 1, result.output
    assert "line 12: seq 13 where 12 was due: 1 record(s) missing before it" in result.output

    sync.xadd(STREAM, {"note": "not a record"}, id="40-0")
    result = verify_cli()
    assert result.exit_code == 1
    assert "line 30: not an audit record" in result.output
    sync.close()

    both = runner.invoke(
        app, ["audit", "verify", str(tmp_path / "x.jsonl"), "--redis", redis_server.url, "--stream", STREAM]
    )
    assert both.exit_code == 2
    assert "exactly one" in both.output
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 2
    missing = runner.invoke(app, ["audit", "verify", "--redis", redis_server.url, "--stream", "mcpfleet:audit:nope"])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
    redis_server.kill()
    down = runner.invoke(app, ["audit", "verify", "--redis", redis_server.url, "--stream", STREAM])
    assert down.exit_code == 2
    assert "cannot read" in down.output


async def test_a_start_while_redis_is_down(tmp_path: Path, client: Redis, redis_server: RedisServer) -> None:
    first = Writer(tmp_path, client)
    await first.writer.start()
    for audit_event in calls(100):
        first.writer.submit(audit_event)
    await first.writer.close()
    redis_server.kill()

    nothing_local = Writer(tmp_path / "elsewhere", client, log=False)
    with pytest.raises(AuditUnavailable, match="no local trail"):
        await nothing_local.writer.start()  # seq 1 may be taken in the stream already: refuse to guess

    gw = Writer(tmp_path, client)  # the chain resumes from the log; the stream catches up later
    await gw.writer.start()
    for audit_event in calls(300, start=100):
        gw.writer.submit(audit_event)
    await until(lambda: AuditSpool(gw.spool).count() == 300)
    assert gw.sample("backlog") == 300
    redis_server.start()  # empty: 1-100 come back from the log, 101-400 from the spool
    await until(lambda: gw.writer.backlog == 0)
    await gw.writer.close()
    assert await stream_ids(client) == ids(1, 400)
    assert verify(await stream_lines(client), expected_head=gw.writer.head[1]).ok
