"""The audit writer with a JSON log only: chained records, detectable edits and gaps, restarts, a full queue."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from mcpfleet_gateway import audit_sink
from mcpfleet_gateway.audit import AuditEvent, event, read_lines, verify
from mcpfleet_gateway.audit_sink import AuditMetrics, AuditSettings, AuditUnavailable, AuditWriter
from mcpfleet_gateway.spool import AuditSpool

REPLICA = "gw-1"


def settings(tmp_path: Path, **overrides: Any) -> AuditSettings:
    values: dict[str, Any] = {
        "log_path": tmp_path / "audit-{replica}.jsonl",
        "redis_stream": None,
        "spool_dir": tmp_path / "spool" / "{replica}",
        "flush_interval_seconds": 0.01,
        "retry_seconds": 0.05,
    }
    return AuditSettings(**(values | overrides))


def log_of(tmp_path: Path) -> Path:
    return tmp_path / f"audit-{REPLICA}.jsonl"


def calls(count: int, start: int = 0) -> list[AuditEvent]:
    return [
        event(
            request_id=f"r{i}",
            subject="alice" if i % 3 else "mallory",
            roles=("operator",),
            tool="k8s:scale_deployment",
            arguments={"namespace": "team-a", "replicas": i % 5, "token": "s3cret"},
            decision="allowed" if i % 3 else "denied",
            reason=None if i % 3 else "role viewer may not call k8s:scale_deployment",
            status="ok" if i % 3 else "denied",
            latency_ms=1.25,
        )
        for i in range(start, start + count)
    ]


def writer_for(tmp_path: Path, **overrides: Any) -> tuple[AuditWriter, CollectorRegistry]:
    registry = CollectorRegistry()
    writer = AuditWriter(settings(tmp_path, **overrides), replica=REPLICA, redis=None, metrics=AuditMetrics(registry))
    return writer, registry


async def write(tmp_path: Path, events: list[AuditEvent], **overrides: Any) -> AuditWriter:
    writer, _ = writer_for(tmp_path, **overrides)
    await writer.start()
    for audit_event in events:
        writer.submit(audit_event)
    await writer.close()
    return writer


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def seqs(path: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in read_lines(path)]


async def test_records_are_chained_into_the_log_as_they_come(tmp_path: Path) -> None:
    writer, registry = writer_for(tmp_path)
    await writer.start()
    for audit_event in calls(10):
        writer.submit(audit_event)
    # Written in the background, without waiting for close().
    await until(lambda: log_of(tmp_path).exists() and len(seqs(log_of(tmp_path))) == 10)
    for audit_event in calls(590, start=10):
        writer.submit(audit_event)
    await writer.close()

    result = verify(read_lines(log_of(tmp_path)), expected_head=writer.head[1])
    assert result.ok, result.problems
    assert result.records == 600
    assert seqs(log_of(tmp_path)) == list(range(1, 601))
    assert writer.head[0] == 600
    first = json.loads(next(read_lines(log_of(tmp_path))))
    assert first["decision"] == "denied"
    assert first["arguments"]["token"] != "s3cret", "secrets never reach the trail"
    assert registry.get_sample_value("mcpfleet_gateway_audit_records_total", {"sink": "log", "outcome": "ok"}) == 600
    assert registry.get_sample_value("mcpfleet_gateway_audit_backlog") == 0
    assert registry.get_sample_value("mcpfleet_gateway_audit_sink_up", {"sink": "log"}) == 1


async def test_an_edited_record_is_named(tmp_path: Path) -> None:
    await write(tmp_path, calls(20))
    lines = list(read_lines(log_of(tmp_path)))
    record = json.loads(lines[6])
    record["subject"] = "eve"
    lines[6] = json.dumps(record) + "\n"
    log_of(tmp_path).write_text("".join(lines))
    assert verify(read_lines(log_of(tmp_path))).problems == [
        "line 7: seq 7 was edited (its hash does not match its content)"
    ]


async def test_a_deleted_record_is_a_gap(tmp_path: Path) -> None:
    await write(tmp_path, calls(20))
    lines = list(read_lines(log_of(tmp_path)))
    del lines[9]
    log_of(tmp_path).write_text("".join(lines))
    assert verify(read_lines(log_of(tmp_path))).problems == [
        "line 10: seq 11 where 10 was due: 1 record(s) missing before it",
        "line 10: prev_hash does not match the hash of the record before it",
    ]


async def test_a_restart_continues_the_chain_even_after_a_torn_write(tmp_path: Path) -> None:
    first = await write(tmp_path, calls(100))
    with log_of(tmp_path).open("a") as handle:
        handle.write('{"time":"2026-01-01T00:00:00.000000+00:00","request_id":"torn')  # died mid-write
    second = await write(tmp_path, calls(50, start=100))

    assert second.head[0] == 150
    assert seqs(log_of(tmp_path)) == list(range(1, 151))
    result = verify(read_lines(log_of(tmp_path)), expected_head=second.head[1])
    assert result.ok, result.problems
    assert json.loads(list(read_lines(log_of(tmp_path)))[100])["prev_hash"] == first.head[1]


async def test_a_full_queue_spools_to_disk_instead_of_dropping(tmp_path: Path) -> None:
    writer, registry = writer_for(tmp_path, queue_size=10, batch_size=5)
    await writer.start()
    for audit_event in calls(1000):  # no await: the writer task cannot run, the queue fills
        writer.submit(audit_event)
    overflow = AuditSpool(tmp_path / "spool" / REPLICA / "overflow")
    assert overflow.count() == 990
    assert registry.get_sample_value("mcpfleet_gateway_audit_records_total", {"sink": "spool", "outcome": "overflow"})
    assert registry.get_sample_value("mcpfleet_gateway_audit_backlog") == 1000

    await until(lambda: writer.backlog == 0)
    await until(lambda: overflow.segments() == [])  # retired right after its last batch was written
    for audit_event in calls(100, start=1000):  # caught up: back to the queue
        writer.submit(audit_event)
    await writer.close()

    assert registry.get_sample_value("mcpfleet_gateway_audit_records_total", {"sink": "spool", "outcome": "overflow"})
    assert seqs(log_of(tmp_path)) == list(range(1, 1101)), "every record once, in order"
    assert verify(read_lines(log_of(tmp_path)), expected_head=writer.head[1]).ok


async def test_what_close_cannot_write_in_time_is_written_by_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    write_log = audit_sink._LogFile.write

    def stuck(self: audit_sink._LogFile, data: bytes) -> None:
        gate.wait(10)
        with self.path.open("ab") as handle:  # the write lands, late
            handle.write(data)

    monkeypatch.setattr(audit_sink._LogFile, "write", stuck)
    writer, _ = writer_for(tmp_path, queue_size=10, batch_size=4, close_timeout_seconds=0.3)
    await writer.start()
    for audit_event in calls(50):  # 1-10 queued, 11-50 in the overflow
        writer.submit(audit_event)
    await asyncio.sleep(0.05)  # the writer takes 1-4 and hangs in the disk write
    closing = asyncio.create_task(writer.close())
    await asyncio.sleep(0.5)
    gate.set()  # the disk answers at last: 1-4 reach the log after close() gave up on them
    await closing
    await until(lambda: seqs(log_of(tmp_path)) == [1, 2, 3, 4])  # that thread was not waited for
    with pytest.raises(AuditUnavailable):
        writer.submit(calls(1)[0])

    monkeypatch.setattr(audit_sink._LogFile, "write", write_log)
    again = await write(tmp_path, calls(10, start=50))
    assert seqs(log_of(tmp_path)) == list(range(1, 61)), "nothing lost, nothing twice, in order"
    assert verify(read_lines(log_of(tmp_path)), expected_head=again.head[1]).ok


async def test_a_failing_log_is_retried_when_it_is_the_only_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = 3
    write_log = audit_sink._LogFile.write

    def flaky(self: audit_sink._LogFile, data: bytes) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise OSError(28, "No space left on device")
        write_log(self, data)

    monkeypatch.setattr(audit_sink._LogFile, "write", flaky)
    writer, registry = writer_for(tmp_path, retry_seconds=0.01)
    await writer.start()
    for audit_event in calls(30):
        writer.submit(audit_event)
    await writer.close()
    assert seqs(log_of(tmp_path)) == list(range(1, 31))
    assert registry.get_sample_value("mcpfleet_gateway_audit_records_total", {"sink": "log", "outcome": "error"})


async def test_a_start_after_a_crash_says_records_may_be_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await write(tmp_path, calls(5))
    assert "did not close" not in caplog.text
    (tmp_path / "spool" / REPLICA / "running").touch()  # what a killed writer leaves behind
    await write(tmp_path, calls(5, start=5))
    assert "did not close" in caplog.text
    assert seqs(log_of(tmp_path)) == list(range(1, 11))


def test_settings_are_checked_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must contain \\{replica\\}"):
        AuditSettings(redis_stream="mcpfleet:audit")
    with pytest.raises(ValidationError, match="Extra inputs"):
        AuditSettings(log_file="audit.jsonl")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="nowhere to write"):
        AuditWriter(AuditSettings(spool_dir=tmp_path), replica=REPLICA, redis=None)
    with pytest.raises(ValueError, match="replica id"):
        AuditWriter(settings(tmp_path), replica="../etc", redis=None)


async def test_a_disabled_writer_takes_events_and_writes_nothing(tmp_path: Path) -> None:
    writer, _ = writer_for(tmp_path, enabled=False)
    await writer.start()
    writer.submit(calls(1)[0])
    await writer.close()
    assert not log_of(tmp_path).exists()
