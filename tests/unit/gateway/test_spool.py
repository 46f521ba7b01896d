"""The audit spool: while the sink is down nothing is lost, and a recovered sink gets every record once, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpfleet_gateway.audit import AuditChain, AuditRecord, event, verify
from mcpfleet_gateway.spool import AuditSpool


def records(count: int, chain: AuditChain | None = None) -> list[AuditRecord]:
    chain = chain or AuditChain()
    return [
        chain.append(event(request_id=f"r{i}", subject="alice", tool="k8s:list_pods", decision="allowed"))
        for i in range(count)
    ]


class FlakySink:
    """Accepts batches while up; raises while down; can fail after accepting (a crash before the ack)."""

    def __init__(self) -> None:
        self.up = True
        self.received: list[AuditRecord] = []
        self.fail_after_accepting = False

    async def __call__(self, batch: list[AuditRecord]) -> None:
        if not self.up:
            raise ConnectionError("sink down")
        self.received.extend(batch)
        if self.fail_after_accepting:
            self.fail_after_accepting = False
            raise ConnectionError("connection lost after the write")


async def test_records_wait_on_disk_while_the_sink_is_down_and_all_arrive_in_order(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, segment_records=400)
    sink = FlakySink()
    sink.up = False
    written = records(2_500)
    for record in written:
        spool.append(record)
    with pytest.raises(ConnectionError):
        await spool.flush(sink)
    assert spool.count() == 2_500
    assert len(spool.segments()) == 7

    # The gateway restarts: a new spool object over the same directory still holds everything.
    reopened = AuditSpool(tmp_path, segment_records=400)
    sink.up = True
    assert await reopened.flush(sink, batch=300) == 2_500
    assert [r.seq for r in sink.received] == list(range(1, 2_501))
    assert reopened.count() == 0
    assert reopened.segments() == []
    assert verify(r.model_dump_json() for r in sink.received).ok


async def test_a_flush_cut_short_resumes_where_it_stopped(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, segment_records=1000)
    for record in records(1_000):
        spool.append(record)
    sink = FlakySink()
    calls = 0

    async def dies_on_the_third_batch(batch: list[AuditRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionError("down")
        await sink(batch)

    with pytest.raises(ConnectionError):
        await spool.flush(dies_on_the_third_batch, batch=100)
    assert spool.count() == 800
    await spool.flush(sink, batch=100)
    assert [r.seq for r in sink.received] == list(range(1, 1_001)), "nothing resent, nothing skipped"


async def test_a_crash_before_the_progress_write_resends_one_batch_at_most(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    for record in records(50):
        spool.append(record)
    sink = FlakySink()
    sink.fail_after_accepting = True
    with pytest.raises(ConnectionError):
        await spool.flush(sink, batch=20)
    await spool.flush(sink, batch=20)
    seqs = [r.seq for r in sink.received]
    assert seqs[:20] == seqs[20:40] == list(range(1, 21)), "the unacknowledged batch comes again"
    assert sorted(set(seqs)) == list(range(1, 51))


def test_a_line_torn_by_a_crash_is_cut_off_on_open(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path)
    for record in records(3):
        spool.append(record)
    (segment,) = spool.segments()
    with segment.open("a") as handle:
        handle.write('{"seq": 4, "half a rec')
    reopened = AuditSpool(tmp_path)
    assert [r.seq for r in reopened.pending()] == [1, 2, 3]
    assert segment.read_text().endswith("}\n")


async def test_records_appended_during_and_after_a_flush_are_kept(tmp_path: Path) -> None:
    spool = AuditSpool(tmp_path, segment_records=100)
    chain = AuditChain()
    for record in records(10, chain):
        spool.append(record)
    sink = FlakySink()
    late = records(3, chain)

    async def appends_while_sending(batch: list[AuditRecord]) -> None:
        await sink(batch)
        while late:
            spool.append(late.pop(0))  # lands in the segment being sent

    await spool.flush(appends_while_sending, batch=4)
    assert spool.count() == 3, "the segment stays while it holds unsent records"
    for record in records(5, chain):
        spool.append(record)
    await spool.flush(sink)
    assert [r.seq for r in sink.received] == list(range(1, 19))
    assert spool.segments() == []
