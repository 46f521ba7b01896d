"""The gateway's audit writer: every record reaches a JSON lines log and a Redis stream, in chain order.

``submit`` is the only thing a request does: it chains the event (sequence number and hash, so the order of
the trail is the order of submission) and puts the record on an in-memory queue. A background task takes
batches off the queue (up to ``batch_size`` records, waiting at most ``flush_interval_seconds`` for a batch
to fill), writes them to the log with one write (in a thread) and adds them to the replica's stream with one
pipeline of XADDs. Each stream entry's id is ``<seq>-0`` and its one field ``record`` is the record's JSON,
the same line as in the log, so ``audit verify`` checks either trail the same way (``read_stream``).

Nothing is dropped:

- Redis down (error, refused connection, no answer within ``redis_timeout_seconds``): the batch goes to an
  ``AuditSpool`` under ``spool_dir/redis`` and so does every later batch, keeping the stream in order. Every
  ``retry_seconds`` the writer reads the stream's last id, refills from the log whatever the stream lacks
  before the spooled records (Redis restarted without persistence, or the gateway died between the log write
  and the XADD), then flushes the spool; once it is empty, batches go straight to the stream again.
- Resending is harmless: the stream refuses an id at or below its last one, and the writer skips records it
  knows the stream holds, so a record is in the stream once even after a crash between the XADD and the
  spool's progress write.
- Queue full (the sinks are slower than the calls): the record is appended to ``spool_dir/overflow``
  synchronously, with an fsync, and so is every later record until the writer has caught up; this slows the
  caller down instead of losing the record. The writer drains the overflow after the queue, in order.
- Log write failed: with a stream configured the failure is counted and the records are still sent to the
  stream (``audit verify`` on the log shows the gap); with the log as the only sink the batch is retried
  until it is written, the queue overflows to disk, and a ``submit`` that cannot store its record raises
  ``AuditUnavailable``, so the call fails instead of going unaudited.
- ``close`` drains the queue and the overflow, flushes the spool once more and returns within
  ``close_timeout_seconds``; what it could not write is left on disk and written by the next ``start``.

What is lost: a crash (SIGKILL, OOM) loses the records still in memory (queued or being written, at most
``queue_size`` and a batch). The chain goes on from the last record written, so ``audit verify`` cannot see
that loss; the next ``start`` finds the marker a clean ``close`` removes and logs an error saying so.

``fsync``: without it a batch is in the operating system's page cache when the write returns: it survives
the gateway crashing, not the node losing power. With it every batch waits for the disk (about a
millisecond on an SSD): latency of the writer, not of the calls, and batches grow under load, so the
throughput barely changes. The spools always fsync.

Each replica keeps its own chain: ``{replica}`` in ``redis_stream``, ``log_path`` and ``spool_dir`` is
replaced by the replica id, and two writers must never share a stream (the stream would refuse one's
records as already held).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from mcpfleet_contracts.audit import RECORD_FIELD, AuditEvent, AuditRecord
from mcpfleet_gateway.audit import GENESIS, AuditChain, VerifyResult, verify
from mcpfleet_gateway.spool import AuditSpool
from mcpfleet_servers.base.jsonlines import complete_end, lines_backwards

logger = logging.getLogger(__name__)

RUNNING_MARKER = "running"  # in spool_dir from start() to the end of close()
REPLICA_PLACEHOLDER = "{replica}"
# What a replica id may look like: it becomes part of a Redis key and of file names (pod names fit).
REPLICA_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A sink that fails with one of these is down (not a bug): its records wait on disk.
SINK_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
# Redis's answer to an XADD whose id is not above the stream's last id.
_ID_NOT_ABOVE_TOP = "equal or smaller than the target stream top item"


class AuditUnavailable(RuntimeError):
    """The writer cannot keep a record (nor resume its chain): the call must fail rather than go unaudited."""


class AuditSettings(BaseModel):
    """Where the audit trail goes and how it is written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Record every call and every denial.")
    log_path: Path | None = Field(
        default=None, description="JSON lines file of the trail ('{replica}' is replaced); none: no file."
    )
    redis_stream: str | None = Field(
        default="mcpfleet:audit:{replica}",
        min_length=1,
        description="Redis stream of the trail, one per replica ('{replica}' is required); none: no stream.",
    )
    stream_maxlen: int | None = Field(
        default=1_000_000,
        ge=1,
        description="Trim the stream to about this many entries (MAXLEN ~); none: never. A trimmed stream no "
        "longer starts at seq 1, and `audit verify` reports the trimmed part as missing.",
    )
    spool_dir: Path = Field(
        default=Path("/var/lib/mcpfleet/audit-spool/{replica}"),
        description="Where records wait while Redis is down or the queue is full; keep it on a persistent volume.",
    )
    batch_size: int = Field(default=256, ge=1, le=10_000, description="Records per log write and per pipeline.")
    flush_interval_seconds: float = Field(
        default=0.05, gt=0, le=10, description="Longest wait for a batch to fill before it is written."
    )
    fsync: bool = Field(default=False, description="fsync the log after each batch (survives power loss).")
    queue_size: int = Field(
        default=10_000, ge=1, description="Records queued in memory; beyond it they are spooled to disk at once."
    )
    retry_seconds: float = Field(default=1.0, gt=0, le=300, description="How often to retry Redis while it is down.")
    redis_timeout_seconds: float = Field(default=5.0, gt=0, le=60, description="Deadline of one Redis round trip.")
    close_timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Longest wait for close().")

    @field_validator("redis_stream")
    @classmethod
    def _one_stream_per_replica(cls, value: str | None) -> str | None:
        if value is not None and REPLICA_PLACEHOLDER not in value:
            raise ValueError(f"must contain {REPLICA_PLACEHOLDER}: each gateway replica keeps its own chain")
        return value


class AuditMetrics:
    """The writer's Prometheus metrics, on the gateway's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.records = Counter(
            "mcpfleet_gateway_audit_records",
            "Audit records by sink (log, redis, spool) and outcome: log ok/error; redis ok, duplicate (the stream "
            "held it already), error (retried from the spool), lost (in no local copy), conflict (the stream holds "
            "another record under its id); spool spooled (Redis down) or overflow (queue full).",
            ["sink", "outcome"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "mcpfleet_gateway_audit_backlog",
            "Audit records submitted but not yet in every sink (queued in memory or spooled on disk).",
            registry=self.registry,
        )
        self.sink_up = Gauge(
            "mcpfleet_gateway_audit_sink_up",
            "1 when the last write to the sink (log, redis) succeeded.",
            ["sink"],
            registry=self.registry,
        )


@dataclass(frozen=True)
class _Line:
    """A record as written: its sequence number, hash and JSON (without the newline)."""

    seq: int
    hash: str
    text: str

    @classmethod
    def of(cls, record: AuditRecord) -> _Line:
        return cls(record.seq, record.hash, record.model_dump_json())


@dataclass
class _Local:
    """What the local files say at start."""

    log_last: AuditRecord | None = None
    spooled: tuple[AuditRecord, AuditRecord] | None = None  # first and last record waiting for Redis
    overflow: tuple[AuditRecord, AuditRecord] | None = None  # first and last record waiting for the writer

    def seqs(self) -> list[int]:
        ends = [self.log_last, *(self.spooled or ()), *(self.overflow or ())]
        return [record.seq for record in ends if record is not None]


class AuditWriter:
    """Writes the gateway's audit trail; see the module docstring for what happens when a sink is down."""

    def __init__(
        self,
        settings: AuditSettings,
        *,
        replica: str,
        redis: Redis | None,
        metrics: AuditMetrics | None = None,
    ) -> None:
        if not REPLICA_PATTERN.match(replica):
            raise ValueError(f"replica id {replica!r}: letters, digits, '.', '_' and '-', at most 128 characters")
        self.settings = settings
        self.replica = replica
        self.metrics = metrics if metrics is not None else AuditMetrics()
        self.log_path = _for_replica(settings.log_path, replica) if settings.log_path is not None else None
        self.stream = (
            settings.redis_stream.replace(REPLICA_PLACEHOLDER, replica)
            if settings.redis_stream is not None and redis is not None
            else None
        )
        self._redis = redis if self.stream is not None else None
        if settings.enabled and self.log_path is None and self._redis is None:
            raise ValueError(
                "audit is enabled but has nowhere to write: set audit.log_path, or a Redis URL together with "
                "audit.redis_stream (or audit.enabled: false)"
            )
        self.spool_dir = _for_replica(settings.spool_dir, replica)
        self._chain = AuditChain()
        self._queue: asyncio.Queue[AuditRecord | None] = asyncio.Queue()  # bounded by submit (queue_size)
        self._batch_ready = asyncio.Event()
        self._log: _LogFile | None = None
        self._spool: AuditSpool | None = None
        self._overflow: AuditSpool | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._retrier: asyncio.Task[None] | None = None
        self._accepting = False
        self._closing = False
        self._closed = False
        # Stop flags, not only cancellation: a Redis client call has been seen to swallow a task's cancellation.
        self._stopping = asyncio.Event()
        self._aborted = False
        # The batch taken off the queue and not yet written; written to the overflow when close() gives up.
        self._inflight: list[AuditRecord] = []
        # Sequence numbers tracking where each sink is; see _to_redis and _retry_once for how they move.
        self._log_seq = 0  # last record written to (or given up for) the log
        self._redis_seq = 0  # last record the stream is known to hold
        self._redis_known = False  # _redis_seq was read from Redis, not estimated
        self._handed_seq = 0  # last record handed to the Redis path (sent or spooled)
        self._spool_last = 0  # last record appended to the Redis spool
        self._spool_sent = 0  # last record the spool has delivered to the stream
        self._spooling = False  # records go to the spool, not the stream, until the spool is drained
        self._outage_logged = False
        self._overflowing = False  # records go to the overflow, not the queue, until the writer caught up
        self._overflow_done = 0  # last overflow record written
        self._overflow_last = 0  # last overflow record appended
        self._head: tuple[int, str] = (0, GENESIS)
        self.metrics.backlog.set_function(lambda: self.backlog)

    # -- interface ---------------------------------------------------------------------------------------------

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record written: the value to publish for ``audit verify --head``."""
        return self._head

    @property
    def backlog(self) -> int:
        """Records submitted but not yet in every sink (queued, in the overflow or in the Redis spool)."""
        positions = [self._log_seq] if self._log is not None else []
        if self._redis is not None:
            positions.append(self._redis_seq)
        return max(0, self._chain.seq - min(positions)) if positions else 0

    async def start(self) -> None:
        """Resume the chain from the trail and start writing."""
        if self._consumer is not None or self._closed:
            raise RuntimeError("the audit writer was started already")
        if not self.settings.enabled:
            return
        try:
            local = await asyncio.to_thread(self._open_local)
        except OSError as exc:
            raise AuditUnavailable(f"audit: cannot open the log or spool_dir {self.spool_dir}: {exc}") from exc
        try:
            top, stream_last = await self._stream_end(local)
        except AuditUnavailable:
            await asyncio.to_thread(self._close_files)
            raise
        # Resume from whichever trail got furthest. Resuming from a shorter one would hand out sequence
        # numbers a longer one already holds: the stream would refuse those records as already held (lost),
        # and the log would fork. The sink that is behind gets refilled (the stream, from the log) or shows
        # the gap to `audit verify`.
        last_written = _furthest(local.log_last, stream_last, local.spooled[1] if local.spooled else None)
        self._chain = AuditChain.resume(_furthest(last_written, local.overflow[1] if local.overflow else None))
        if last_written is not None:
            self._head = (last_written.seq, last_written.hash)
        self._handed_seq = self._head[0]
        log_seq = local.log_last.seq if local.log_last is not None else 0
        # Records before the overflow that the log lacks now will never reach it: the log shows that gap.
        self._log_seq = max(log_seq, local.overflow[0].seq - 1) if local.overflow else self._handed_seq
        if self.log_path is not None and log_seq < self._log_seq:
            logger.warning(
                "audit log %s ends at seq %d, the trail at %d: the log will show the gap",
                self.log_path,
                log_seq,
                self._log_seq,
            )
        self._redis_seq = top if self._redis_known else self._handed_seq
        if local.spooled is not None:
            self._spool_last = local.spooled[1].seq
        if local.overflow is not None:
            self._overflowing = True
            self._overflow_done = local.overflow[0].seq - 1
            self._overflow_last = local.overflow[1].seq
        self._accepting = True
        self._consumer = asyncio.create_task(self._consume(), name=f"audit-writer-{self.replica}")
        if self._redis is not None:
            # Records go straight to the stream only when it ends where the local trail does; otherwise a first
            # pass refills it from the log and the spool (meanwhile records are spooled, keeping the order).
            self._spooling = not (self._redis_known and local.spooled is None and top == self._handed_seq)
            self._retrier = asyncio.create_task(self._retry_loop(), name=f"audit-redis-retry-{self.replica}")
        logger.info(
            "audit trail resumes at seq %d (log %s, stream %s)", self._chain.seq, self.log_path, self.stream or "none"
        )

    async def _stream_end(self, local: _Local) -> tuple[int, AuditRecord | None]:
        """The stream's last seq and record at start (0, None without a stream or when it is unreachable)."""
        if self._redis is None:
            return 0, None
        try:
            top, stream_last = await self._stream_top()
        except SINK_ERRORS as exc:
            if not local.seqs():
                # Nothing local says where the chain is: starting from seq 1 could reuse sequence numbers
                # the stream already holds, and those records would be refused as already held.
                raise AuditUnavailable(
                    f"audit: cannot read the end of stream {self.stream} ({_describe(exc)}) and there is no "
                    "local trail to resume the chain from"
                ) from exc
            self._redis_failed(exc)
            return 0, None
        if stream_last is None and top > max(local.seqs(), default=0):
            raise AuditUnavailable(
                f"audit: the last entry of stream {self.stream} is not an audit record; check it with "
                "`mcpfleet audit verify --redis ... --stream ...`"
            )
        self._redis_known = True
        self.metrics.sink_up.labels(sink="redis").set(1)
        return top, stream_last

    def submit(self, event: AuditEvent) -> None:
        """Chain the event and queue the record; never waits on a sink (but see the overflow above)."""
        if not self.settings.enabled:
            return
        if not self._accepting:
            raise AuditUnavailable("the audit writer is not running (not started, or closed)")
        record = self._chain.append(event)
        if not self._overflowing and self._queue.qsize() < self.settings.queue_size:
            self._queue.put_nowait(record)
            if self._queue.qsize() >= self.settings.batch_size:
                self._batch_ready.set()
            return
        self._to_overflow(record)

    async def close(self) -> None:
        """Write what is queued, flush the spool once more, stop; within ``close_timeout_seconds``."""
        if self._consumer is None or self._closed:
            self._closed = True
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.close_timeout_seconds
        self._closing = True
        self._queue.put_nowait(None)
        self._batch_ready.set()
        done, _ = await asyncio.wait({self._consumer}, timeout=self.settings.close_timeout_seconds)
        if done and (error := self._consumer.exception()) is not None:
            logger.error("audit writer stopped with an error", exc_info=error)
        if not done:
            self._accepting = False
            self._aborted = True
            await _stop(self._consumer)
            leftovers = [*self._inflight, *_drain(self._queue)]
            if leftovers:
                logger.warning(
                    "audit writer did not finish within %.1f s: %d records left in %s for the next start",
                    self.settings.close_timeout_seconds,
                    len(leftovers),
                    self.spool_dir / "overflow",
                )
                try:
                    await asyncio.to_thread(self._keep_for_next_start, leftovers)
                except OSError as exc:
                    logger.error(
                        "audit records seq %d..%d lost: they could not be kept for the next start (%s)",
                        leftovers[0].seq,
                        leftovers[-1].seq,
                        exc,
                    )
        if self._retrier is not None:
            self._stopping.set()  # the pass under way finishes (each Redis call has its deadline)
            await asyncio.wait({self._retrier}, timeout=max(0.1, deadline - loop.time()))
            await _stop(self._retrier)
            if self._spooling:
                try:
                    async with asyncio.timeout(max(0.1, deadline - loop.time())):
                        await self._retry_once()
                except TimeoutError:
                    pass
                if self._spooling:
                    logger.warning(
                        "audit stream %s is behind: spooled records stay in %s until the next start",
                        self.stream,
                        self.spool_dir / "redis",
                    )
        await asyncio.to_thread(self._close_files)
        self._closed = True

    # -- the writer task ---------------------------------------------------------------------------------------

    async def _consume(self) -> None:
        while not self._aborted:
            if self._overflowing and self._queue.empty():
                await self._drain_overflow()
                continue
            if self._closing and self._queue.empty():
                self._accepting = False
                return
            batch = await self._take_batch()
            if batch:
                self._inflight = batch
                await self._write_until_done(batch)
                self._inflight = []

    async def _take_batch(self) -> list[AuditRecord]:
        first = await self._queue.get()
        size = self.settings.batch_size
        if not self._closing and self._queue.qsize() < size - 1:
            self._batch_ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.flush_interval_seconds):
                    await self._batch_ready.wait()
        batch = [first] if first is not None else []
        while len(batch) < size and not self._queue.empty():
            record = self._queue.get_nowait()
            if record is not None:
                batch.append(record)
        return batch

    async def _write_until_done(self, batch: list[AuditRecord]) -> None:
        while not self._aborted:
            try:
                await self._write(batch)
                return
            except Exception:
                logger.exception("audit batch seq %d..%d not written; retrying", batch[0].seq, batch[-1].seq)
                await asyncio.sleep(self.settings.retry_seconds)

    async def _write(self, batch: list[AuditRecord]) -> None:
        """One batch to the log, then to the stream or the spool. Raises only when no sink has it."""
        lines = [_Line.of(record) for record in batch]
        if self._log is not None:
            await self._write_log(lines)
        if self._redis is not None:
            await self._to_redis(batch, lines)
        if batch[-1].seq > self._head[0]:
            self._head = (batch[-1].seq, batch[-1].hash)

    async def _write_log(self, lines: list[_Line]) -> None:
        assert self._log is not None
        fresh = [line for line in lines if line.seq > self._log_seq]  # a resent batch is not written twice
        if not fresh:
            return
        data = "".join(line.text + "\n" for line in fresh).encode()
        try:
            await asyncio.to_thread(self._log.write, data)
        except OSError as exc:
            self.metrics.records.labels(sink="log", outcome="error").inc(len(fresh))
            self.metrics.sink_up.labels(sink="log").set(0)
            if self._redis is None:
                raise  # the log is the only sink: retry rather than lose the batch
            logger.error(
                "audit log %s: seq %d..%d not written (%s); they are in the stream, the log shows the gap",
                self.log_path,
                fresh[0].seq,
                fresh[-1].seq,
                exc,
            )
        else:
            self.metrics.records.labels(sink="log", outcome="ok").inc(len(fresh))
            self.metrics.sink_up.labels(sink="log").set(1)
        self._log_seq = fresh[-1].seq

    async def _to_redis(self, batch: list[AuditRecord], lines: list[_Line]) -> None:
        # Set before any await: a retry pass running meanwhile must not call the spool drained.
        self._handed_seq = max(self._handed_seq, batch[-1].seq)
        if not self._spooling:
            try:
                await self._xadd(lines)
                return
            except SINK_ERRORS as exc:
                self._redis_failed(exc)
        assert self._spool is not None
        self._spool_last = max(self._spool_last, batch[-1].seq)
        await asyncio.to_thread(_append_all, self._spool, batch)
        self.metrics.records.labels(sink="spool", outcome="spooled").inc(len(batch))

    # -- the stream ----------------------------------------------------------------------------------------------

    async def _xadd(self, lines: list[_Line]) -> None:
        """Add records (ascending seq) to the stream; raises a sink error if one could not be added."""
        redis, stream = self._target()
        fresh = [line for line in lines if line.seq > self._redis_seq]
        if len(fresh) < len(lines):
            self.metrics.records.labels(sink="redis", outcome="duplicate").inc(len(lines) - len(fresh))
        if not fresh:
            return
        pipe = redis.pipeline(transaction=False)
        for line in fresh:
            pipe.xadd(
                stream,
                {RECORD_FIELD: line.text},
                id=f"{line.seq}-0",
                maxlen=self.settings.stream_maxlen,
                approximate=True,
            )
        try:
            async with asyncio.timeout(self.settings.redis_timeout_seconds):
                results = await pipe.execute(raise_on_error=False)
        except SINK_ERRORS:
            self.metrics.records.labels(sink="redis", outcome="error").inc(len(fresh))
            raise
        failed: list[tuple[_Line, BaseException]] = []
        behind: list[_Line] = []
        for line, result in zip(fresh, results, strict=True):
            if isinstance(result, ResponseError) and _ID_NOT_ABOVE_TOP in str(result):
                behind.append(line)
            elif isinstance(result, BaseException):
                failed.append((line, result))
            else:
                self._redis_seq = max(self._redis_seq, line.seq)
        self.metrics.records.labels(sink="redis", outcome="ok").inc(len(fresh) - len(failed) - len(behind))
        if behind:
            await self._classify_held(behind)
        if not failed:
            self.metrics.sink_up.labels(sink="redis").set(1)
            return
        # A record refused while a later one was accepted can no longer be added (ids only grow).
        lost = [line for line, _ in failed if line.seq < self._redis_seq]
        if lost:
            self.metrics.records.labels(sink="redis", outcome="lost").inc(len(lost))
            logger.error(
                "audit stream %s refused seq %s while accepting later ones (%s): the stream shows the gap",
                self.stream,
                ", ".join(str(line.seq) for line in lost),
                failed[0][1],
            )
        retry = [(line, error) for line, error in failed if line.seq > self._redis_seq]
        if retry:
            self.metrics.records.labels(sink="redis", outcome="error").inc(len(retry))
            raise retry[0][1]

    async def _classify_held(self, lines: list[_Line]) -> None:
        """The stream refused ids it already has (or passed): the same record is a duplicate, another a conflict."""
        redis, stream = self._target()
        pipe = redis.pipeline(transaction=False)
        for line in lines:
            pipe.xrange(stream, min=f"{line.seq}-0", max=f"{line.seq}-0")
        async with asyncio.timeout(self.settings.redis_timeout_seconds):
            held = await pipe.execute()
        conflicts = []
        for line, entries in zip(lines, held, strict=True):
            text = _field(entries[0][1]) if entries else None
            if text is not None and _hash_of(text) == line.hash:
                self.metrics.records.labels(sink="redis", outcome="duplicate").inc()
            else:
                conflicts.append(line.seq)
        if conflicts:
            self.metrics.records.labels(sink="redis", outcome="conflict").inc(len(conflicts))
            logger.error(
                "audit stream %s holds other records at (or past) seq %s: does another writer use this stream?",
                self.stream,
                ", ".join(map(str, conflicts)),
            )
        top, _ = await self._stream_top()
        self._redis_seq = max(self._redis_seq, top)

    async def _stream_top(self) -> tuple[int, AuditRecord | None]:
        """The sequence number of the stream's last entry (0 when empty) and that entry's record if it is one."""
        redis, stream = self._target()
        async with asyncio.timeout(self.settings.redis_timeout_seconds):
            entries: Any = await redis.xrevrange(stream, count=1)
        if not entries:
            return 0, None
        entry_id, fields = entries[0]
        seq = int(_text(entry_id).partition("-")[0])
        text = _field(fields)
        try:
            return seq, AuditRecord.model_validate_json(text) if text is not None else None
        except ValidationError:
            return seq, None

    def _target(self) -> tuple[Redis, str]:
        if self._redis is None or self.stream is None:
            raise RuntimeError("this audit writer has no Redis stream")
        return self._redis, self.stream

    def _redis_failed(self, exc: BaseException) -> None:
        self._spooling = True
        self.metrics.sink_up.labels(sink="redis").set(0)
        if not self._outage_logged:
            self._outage_logged = True
            logger.warning(
                "audit stream %s unreachable (%s): records wait in %s until it is back",
                self.stream,
                _describe(exc),
                self.spool_dir / "redis",
            )

    async def _retry_loop(self) -> None:
        delay = 0.0  # the first pass at once: it checks the stream against the local trail
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            delay = self.settings.retry_seconds
            if not self._spooling:
                continue
            try:
                outcome = await self._retry_once()
            except Exception:
                logger.exception("audit: resending spooled records failed unexpectedly")
                continue
            if outcome == "behind":
                # Redis answers; records were spooled while this pass ran. Go again soon.
                delay = self.settings.flush_interval_seconds

    async def _retry_once(self) -> Literal["drained", "behind", "down"]:
        """Refill the stream from the log, flush the spool; "drained" when records go straight to Redis again."""
        assert self._spool is not None
        try:
            await self._reconcile()
            await self._spool.flush(self._spool_sink, batch=self.settings.batch_size)
        except SINK_ERRORS as exc:
            self._redis_failed(exc)
            return "down"
        self.metrics.sink_up.labels(sink="redis").set(1)
        if self._spool_sent < self._spool_last:
            return "behind"
        if self._redis_seq < self._handed_seq:
            missing = self._handed_seq - self._redis_seq
            self.metrics.records.labels(sink="redis", outcome="lost").inc(missing)
            logger.error(
                "audit stream %s lacks seq %d..%d and no local copy has them: the stream shows the gap",
                self.stream,
                self._redis_seq + 1,
                self._handed_seq,
            )
            self._redis_seq = self._handed_seq
        self._spooling = False
        if self._outage_logged:
            logger.info("audit stream %s is up to date again (seq %d)", self.stream, self._redis_seq)
        self._outage_logged = False
        return "drained"

    async def _reconcile(self) -> None:
        """Make the stream end where the spool begins: refill from the log what Redis lost or never got."""
        assert self._spool is not None
        top, _ = await self._stream_top()
        if self._redis_known and top < self._redis_seq:
            logger.warning(
                "audit stream %s ends at seq %d but held %d: Redis lost data; refilling from the log",
                self.stream,
                top,
                self._redis_seq,
            )
        elif top > self._handed_seq:
            self.metrics.records.labels(sink="redis", outcome="conflict").inc(top - self._handed_seq)
            logger.error(
                "audit stream %s holds seq up to %d, this writer only wrote up to %d: another writer uses it, or "
                "the local trail was lost; records at those seq will be counted as held",
                self.stream,
                top,
                self._handed_seq,
            )
        self._redis_seq, self._redis_known = top, True
        first = await asyncio.to_thread(_first_pending, self._spool)
        upto = first.seq - 1 if first is not None else self._log_seq
        if self.log_path is None or top >= upto:
            return
        offset = await asyncio.to_thread(_log_offset_after, self.log_path, top)
        while self._redis_seq < upto:
            lines, offset = await asyncio.to_thread(
                _read_log, self.log_path, offset, self.settings.batch_size, self._redis_seq, upto
            )
            if not lines:
                break
            await self._xadd(lines)

    async def _spool_sink(self, records: list[AuditRecord]) -> None:
        await self._xadd([_Line.of(record) for record in records])
        self._spool_sent = max(self._spool_sent, records[-1].seq)

    # -- the overflow ------------------------------------------------------------------------------------------

    def _to_overflow(self, record: AuditRecord) -> None:
        assert self._overflow is not None
        if not self._overflowing:
            self._overflowing = True
            self._overflow_done = record.seq - 1
            logger.warning(
                "audit queue full (%d records): records go to %s until the writer catches up",
                self.settings.queue_size,
                self.spool_dir / "overflow",
            )
        try:
            self._overflow.append(record)  # blocks for an fsync: the price of not losing the record
        except OSError as exc:
            raise AuditUnavailable(f"audit record seq {record.seq} could not be kept: {exc}") from exc
        self._overflow_last = record.seq
        self.metrics.records.labels(sink="spool", outcome="overflow").inc()

    async def _drain_overflow(self) -> None:
        assert self._overflow is not None
        try:
            await self._overflow.flush(self._write_overflow, batch=self.settings.batch_size)
        except Exception:
            logger.exception("audit: writing the overflow failed; retrying")
            await asyncio.sleep(self.settings.retry_seconds)
            return
        if self._overflow_done >= self._overflow_last:
            self._overflowing = False

    async def _write_overflow(self, records: list[AuditRecord]) -> None:
        await self._write(records)
        self._overflow_done = max(self._overflow_done, records[-1].seq)

    def _keep_for_next_start(self, records: list[AuditRecord]) -> None:
        """Records close() could not write, before those in the overflow: each in its own segment then, since
        segments are read in the order of their first sequence number."""
        assert self._overflow is not None
        behind_others = self._overflow_done < self._overflow_last
        spool = AuditSpool(self._overflow.directory, segment_records=1) if behind_others else self._overflow
        _append_all(spool, records)

    # -- start ---------------------------------------------------------------------------------------------------

    def _close_files(self) -> None:
        if self._log is not None:
            self._log.close()
        (self.spool_dir / RUNNING_MARKER).unlink(missing_ok=True)

    def _open_local(self) -> _Local:
        local = _Local()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        marker = self.spool_dir / RUNNING_MARKER
        if marker.exists():
            logger.error(
                "audit: the previous run of this writer (replica %s) did not close: the records it held in memory "
                "(at most audit.queue_size and a batch) are missing from the trail",
                self.replica,
            )
        marker.touch()
        self._overflow = AuditSpool(self.spool_dir / "overflow")
        local.overflow = _pending_ends(self._overflow)
        if self._redis is not None:
            self._spool = AuditSpool(self.spool_dir / "redis")
            local.spooled = _pending_ends(self._spool)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if self.log_path.exists():
                _cut_torn_tail(self.log_path)
                local.log_last = _last_record(self.log_path)
            self._log = _LogFile(self.log_path, fsync=self.settings.fsync)
            self.metrics.sink_up.labels(sink="log").set(1)
        return local


async def read_stream(redis: Redis, stream: str, *, page: int = 1000) -> AsyncIterator[str]:
    """The records of an audit stream as JSON lines, in order, for ``verify``. An entry without a ``record``
    field comes out as a line ``verify`` reports, not skipped."""
    async for entries in _pages(redis, stream, page):
        for line in entries:
            yield line


def verify_stream(url: str, stream: str, *, expected_head: str | None = None, timeout: float = 10.0) -> VerifyResult:
    """Blocking (for the CLI): check the chain of the stream at ``url`` as ``verify`` checks a file.

    Raises ``LookupError`` when the stream does not exist, a ``RedisError`` or ``OSError`` when Redis cannot be read.
    """
    loop = asyncio.new_event_loop()
    client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    pages = _pages(client, stream, 1000)

    def lines() -> Iterator[str]:
        while True:
            try:
                page = loop.run_until_complete(anext(pages))
            except StopAsyncIteration:
                return
            yield from page

    try:
        if not loop.run_until_complete(client.exists(stream)):
            raise LookupError(f"stream {stream} does not exist")
        return verify(lines(), expected_head=expected_head)
    finally:
        loop.run_until_complete(pages.aclose())
        loop.run_until_complete(client.aclose())
        loop.close()


async def _pages(redis: Redis, stream: str, page: int) -> AsyncGenerator[list[str]]:
    if page < 1:
        raise ValueError("a page holds at least one entry")
    start = "-"
    while True:
        entries: Any = await redis.xrange(stream, min=start, max="+", count=page)
        if entries:
            yield [_entry_line(entry_id, fields) for entry_id, fields in entries]
        if len(entries) < page:
            return
        start = "(" + _text(entries[-1][0])


# -- helpers ---------------------------------------------------------------------------------------------------


def _for_replica(path: Path, replica: str) -> Path:
    return Path(str(path).replace(REPLICA_PLACEHOLDER, replica))


def _furthest(*records: AuditRecord | None) -> AuditRecord | None:
    return max((r for r in records if r is not None), key=lambda r: r.seq, default=None)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: dict[Any, Any]) -> str | None:
    value = fields.get(RECORD_FIELD.encode(), fields.get(RECORD_FIELD))
    return None if value is None else _text(value)


def _entry_line(entry_id: bytes | str, fields: dict[Any, Any]) -> str:
    text = _field(fields)
    if text is not None:
        return text
    return json.dumps({"stream_entry": _text(entry_id), "fields": {_text(k): _text(v) for k, v in fields.items()}})


def _hash_of(text: str) -> str | None:
    try:
        value = json.loads(text).get("hash")
    except (json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a task and wait for it, a second at most."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if task.done() and not task.cancelled() and (error := task.exception()) is not None:
        logger.error("audit task %s stopped with an error", task.get_name(), exc_info=error)


def _drain(queue: asyncio.Queue[AuditRecord | None]) -> list[AuditRecord]:
    records = []
    while not queue.empty():
        record = queue.get_nowait()
        if record is not None:
            records.append(record)
    return records


def _append_all(spool: AuditSpool, records: Iterable[AuditRecord]) -> None:
    for record in records:
        spool.append(record)


def _first_pending(spool: AuditSpool) -> AuditRecord | None:
    return next(iter(spool.pending()), None)


def _pending_ends(spool: AuditSpool) -> tuple[AuditRecord, AuditRecord] | None:
    first = last = None
    for record in spool.pending():
        first = first or record
        last = record
    return (first, last) if first is not None and last is not None else None


class _LogFile:
    """The JSON lines log, appended to from worker threads one batch at a time."""

    def __init__(self, path: Path, *, fsync: bool) -> None:
        self.path = path
        self.fsync = fsync
        self._lock = threading.Lock()
        self._handle: IO[bytes] | None = path.open("ab", buffering=0)

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._handle is None:
                raise OSError(f"{self.path} is closed")
            fd = self._handle.fileno()
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)  # no half batch in the log
                raise

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def _cut_torn_tail(path: Path) -> None:
    """A last line without its newline was torn by a crash mid-write; it never was a record."""
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        end = complete_end(handle)
        if end < size:
            logger.warning("audit log %s: cutting a torn last line (%d bytes)", path, size - end)
            handle.truncate(end)
            os.fsync(handle.fileno())


def _last_record(path: Path) -> AuditRecord | None:
    with path.open("rb") as handle:
        for skipped, (_, line) in enumerate(lines_backwards(handle, complete_end(handle))):
            try:
                record = AuditRecord.model_validate_json(line)
            except ValidationError:
                continue
            if skipped:
                logger.warning("audit log %s: %d lines at its end are not audit records", path, skipped)
            return record
    return None


def _seq_of(line: bytes) -> int | None:
    try:
        value = json.loads(line).get("seq")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _log_offset_after(path: Path, after: int) -> int:
    """Where the records after seq ``after`` begin in the log, found from its end (they are near it)."""
    with path.open("rb") as handle:
        for offset, line in lines_backwards(handle, complete_end(handle)):
            seq = _seq_of(line)
            if seq is not None and seq <= after:
                return offset + len(line)
    return 0


def _read_log(path: Path, offset: int, limit: int, after: int, upto: int) -> tuple[list[_Line], int]:
    """Up to ``limit`` records with ``after < seq <= upto`` from ``offset`` on; and where to go on reading."""
    lines: list[_Line] = []
    with path.open("rb") as handle:
        handle.seek(offset)
        while len(lines) < limit:
            raw = handle.readline()
            if not raw.endswith(b"\n"):
                break  # the end, or a batch being written right now
            try:
                record = AuditRecord.model_validate_json(raw)
            except ValidationError:
                logger.warning("audit log %s: skipping a line at byte %d that is not an audit record", path, offset)
                offset += len(raw)
                continue
            if record.seq > upto:
                break
            offset += len(raw)
            if record.seq > after:
                lines.append(_Line(record.seq, record.hash, raw.decode().rstrip("\n")))
    return lines, offset
