"""Audit records waiting for their sink, kept on disk so that none is lost while the sink is down.

Records are appended as JSON lines to segment files (``<first seq>.jsonl``) and fsynced before
``append`` returns. ``flush`` hands them to the sink in order, batch by batch; after each accepted
batch the segment's progress is recorded (``<segment>.sent``, replaced atomically), and a segment is
deleted once all of it was accepted. A crash between the sink accepting a batch and the progress
write resends at most that batch, so the sink must ignore records whose ``seq`` it already holds
(the Redis sink does: stream ids are the sequence numbers). A line torn by a crash mid-append was
never acknowledged; it is cut off when the spool is opened again, and ``audit verify`` shows the gap.

The methods block (they write and fsync files); async callers run them in a thread, as ``flush`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from mcpfleet_contracts.audit import AuditRecord

Sink = Callable[[list[AuditRecord]], Awaitable[None]]
SEGMENT_SUFFIX = ".jsonl"
SENT_SUFFIX = ".sent"


class AuditSpool:
    def __init__(self, directory: Path, *, segment_records: int = 1000) -> None:
        if segment_records < 1:
            raise ValueError("a segment holds at least one record")
        self.directory = directory
        self.segment_records = segment_records
        self._lock = threading.Lock()
        # The segment being appended to and how many records it holds; found on disk when unknown.
        self._current: tuple[Path, int] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        for segment in self.segments():
            _cut_torn_tail(segment)

    def segments(self) -> list[Path]:
        """Segment files, oldest first (names are zero-padded first sequence numbers)."""
        return sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}"))

    def append(self, record: AuditRecord) -> None:
        """Store one record durably; returns once it is on disk."""
        line = record.model_dump_json() + "\n"
        with self._lock:
            segment, held = self._segment_for(record.seq)
            with segment.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self._current = (segment, held + 1)

    def pending(self) -> Iterator[AuditRecord]:
        """Every record not yet accepted by the sink, in order."""
        for segment in self.segments():
            yield from _records(segment)[_sent(segment) :]

    def count(self) -> int:
        return sum(len(_records(s)) - _sent(s) for s in self.segments())

    async def flush(self, sink: Sink, *, batch: int = 500) -> int:
        """Send what is pending; returns how many records the sink accepted. A sink error stops the flush
        (the rest stays on disk for the next one) and propagates."""
        accepted = 0
        for segment in await asyncio.to_thread(self.segments):
            records = await asyncio.to_thread(_records, segment)
            done = await asyncio.to_thread(_sent, segment)
            while done < len(records):
                chunk = records[done : done + batch]
                await sink(chunk)
                done += len(chunk)
                accepted += len(chunk)
                await asyncio.to_thread(_write_sent, segment, done)
            await asyncio.to_thread(self._retire, segment, len(records))
        return accepted

    def _segment_for(self, seq: int) -> tuple[Path, int]:
        if self._current is None:
            segments = self.segments()
            self._current = (segments[-1], _count_lines(segments[-1])) if segments else None
        if self._current is not None and self._current[1] < self.segment_records:
            return self._current
        return self.directory / f"{seq:015d}{SEGMENT_SUFFIX}", 0

    def _retire(self, segment: Path, flushed: int) -> None:
        with self._lock:
            # A record appended to this segment while it was being sent keeps it alive for the next flush.
            if _count_lines(segment) > flushed:
                return
            segment.unlink()
            with contextlib.suppress(FileNotFoundError):
                _sent_path(segment).unlink()
            if self._current is not None and self._current[0] == segment:
                self._current = None


def _records(segment: Path) -> list[AuditRecord]:
    with segment.open(encoding="utf-8") as handle:
        return [AuditRecord.model_validate_json(line) for line in handle if line.endswith("\n")]


def _count_lines(segment: Path) -> int:
    with segment.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 16), b""))


def _sent_path(segment: Path) -> Path:
    return segment.with_name(segment.name + SENT_SUFFIX)


def _sent(segment: Path) -> int:
    try:
        return int(_sent_path(segment).read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def _write_sent(segment: Path, count: int) -> None:
    target = _sent_path(segment)
    temporary = target.with_name(target.name + ".tmp")
    with temporary.open("w") as handle:
        handle.write(str(count))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def _cut_torn_tail(segment: Path) -> None:
    data = segment.read_bytes()
    if data and not data.endswith(b"\n"):
        with segment.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
            handle.flush()
            os.fsync(handle.fileno())
