"""The platform's own audit (the gateway's trail) as a source of change records, read newest first and bounded.

Trails: the gateway's Redis streams (CMDB_AUDIT_REDIS_URL, streams named or matched by CMDB_AUDIT_STREAMS, one
per gateway replica) and/or its JSON lines logs (CMDB_AUDIT_LOG_PATH, a path or a glob pattern). A stream's
entry ids are ``<seq>-0``, not times, so each trail is read backwards (XREVRANGE; a log from its end) a page
at a time, and its scan stops at the first record older than ``since``: within one trail records are in the
order the calls finished. Records newer than ``until`` are read and skipped. At most CMDB_AUDIT_MAX_SCAN
records are read for one answer, and the scan has a deadline; a note says when either cut it.

An unreachable Redis, a refused password or an unreadable log never fails the answer: the other sources
still answer and a note names what was unavailable and why. The Redis client is created in ``start`` (the
server's lifespan), never at import, and no network is used until a scan.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcpfleet_contracts.audit import RECORD_FIELD, AuditRecord
from mcpfleet_servers.base.jsonlines import complete_end, lines_backwards
from mcpfleet_servers.base.redact import redact_text
from mcpfleet_servers.cmdb.audit_match import change_records
from mcpfleet_servers.cmdb.changes import parse_time
from mcpfleet_servers.cmdb.models import ChangeRecord
from mcpfleet_servers.cmdb.settings import CmdbSettings

logger = logging.getLogger(__name__)

# A failure of one of these means the trail is down or unreadable, not a bug: reported in a note.
TRAIL_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
_GLOB_CHARS = frozenset("*?[")
_SCAN_COUNT = 1000
_SCAN_ROUNDS = 1000  # SCAN calls per pattern: bounds the walk over a Redis with very many keys


@dataclass
class AuditScan:
    """Change records found in the audit, and notes on what limited the scan."""

    records: list[ChangeRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Trail(Protocol):
    name: str

    async def older(self, count: int) -> list[str]:
        """Up to ``count`` more records (their JSON), going back in time; fewer: the trail's start was reached."""
        ...


class _StreamTrail:
    """One gateway replica's Redis stream, read backwards by entry id."""

    def __init__(self, redis: Redis, key: str) -> None:
        self.name = key
        self._redis = redis
        self._before = "+"

    async def older(self, count: int) -> list[str]:
        entries: Any = await self._redis.xrevrange(self.name, max=self._before, min="-", count=count)
        if not entries:
            return []
        self._before = "(" + _text(entries[-1][0])
        lines = []
        for _, fields in entries:
            value = fields.get(RECORD_FIELD.encode(), fields.get(RECORD_FIELD))
            lines.append(_text(value) if value is not None else "")  # counted as unreadable, not skipped
        return lines


class _LogTrail:
    """One gateway replica's JSON lines log, read backwards from its end in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self._path = path
        self._end: int | None = None

    async def older(self, count: int) -> list[str]:
        lines, self._end = await asyncio.to_thread(lines_before, self._path, self._end, count)
        return lines


@dataclass
class _Page:
    records: list[ChangeRecord]
    reached_since: bool
    unreadable: int


class AuditSource:
    """The audit trails CmdbSettings names; ``enabled`` is False when it names none."""

    def __init__(self, settings: CmdbSettings) -> None:
        self._settings = settings
        self._redis: Redis | None = None
        self._config_error: str | None = None
        url = settings.audit_redis_url.get_secret_value() if settings.audit_redis_url else None
        self._url = url
        self.redis_label = f"Redis at {redis_location(url)}" if url else None

    @property
    def enabled(self) -> bool:
        return self._url is not None or self._settings.audit_log_path is not None

    async def start(self) -> None:
        """Create the Redis client (no network); a password file that cannot be read is reported on use."""
        if self._url is None:
            return
        password: str | None = None
        password_file = self._settings.audit_redis_password_file
        if password_file is not None:
            try:
                password = (await asyncio.to_thread(password_file.read_text)).strip()
            except OSError as exc:
                self._config_error = (
                    f"cannot read CMDB_AUDIT_REDIS_PASSWORD_FILE {password_file}: {exc.strerror or exc}"
                )
                return
        timeout = self._settings.audit_timeout_seconds
        extra: dict[str, Any] = {"password": password} if password else {}
        self._redis = Redis.from_url(
            self._url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One quick retry (a pooled connection Redis closed); more would make every scan wait out a dead Redis.
            retry=Retry(NoBackoff(), 1),
            **extra,
        )

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def changes(self, since: datetime | None, until: datetime | None) -> AuditScan:
        """The change records of every trail between since and until (each bound optional), newest first per
        trail; bounded by CMDB_AUDIT_MAX_SCAN and CMDB_AUDIT_TIMEOUT_SECONDS."""
        scan = AuditScan()
        if not self.enabled:
            return scan
        timeout = self._settings.audit_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                trails = await self._streams(scan.notes) + await self._logs(scan.notes)
                await self._read(trails, since, until, scan)
        except TimeoutError:
            scan.notes.append(
                f"the audit scan did not finish within {timeout:g}s (CMDB_AUDIT_TIMEOUT_SECONDS); audit records "
                "may be missing: narrow since/until"
            )
        return scan

    # ------------------------------------------------------------------ trails

    async def _streams(self, notes: list[str]) -> list[_Trail]:
        if self._url is None:
            return []
        if self._redis is None:
            notes.append(self._unavailable(self._config_error or "the client is not started"))
            return []
        limit = self._settings.audit_max_trails
        keys: list[str] = []
        try:
            for pattern in self._settings.stream_patterns:
                keys += await self._matching(self._redis, pattern, limit + 1 - len(keys))
                if len(keys) > limit:
                    break
        except TRAIL_ERRORS as exc:
            notes.append(self._unavailable(self._describe(exc)))
            return []
        keys = list(dict.fromkeys(keys))
        if len(keys) > limit:
            notes.append(
                f"more than {limit} audit streams match CMDB_AUDIT_STREAMS; the first {limit} were read "
                "(CMDB_AUDIT_MAX_TRAILS)"
            )
        return [_StreamTrail(self._redis, key) for key in sorted(keys[:limit])]

    @staticmethod
    async def _matching(redis: Redis, pattern: str, limit: int) -> list[str]:
        """Stream keys matching a glob pattern (SCAN, bounded); a plain name is taken as it is."""
        if not _GLOB_CHARS & set(pattern):
            return [pattern]
        found: list[str] = []
        cursor = 0
        for _ in range(_SCAN_ROUNDS):
            cursor, batch = await redis.scan(cursor, match=pattern, count=_SCAN_COUNT, _type="stream")
            found += [_text(key) for key in batch]
            if cursor == 0 or len(found) >= limit:
                break
        return found[:limit]

    async def _logs(self, notes: list[str]) -> list[_Trail]:
        pattern = self._settings.audit_log_path
        if pattern is None:
            return []
        limit = self._settings.audit_max_trails
        paths = await asyncio.to_thread(_log_files, pattern, limit + 1)
        if not paths:
            notes.append(f"no audit log matches CMDB_AUDIT_LOG_PATH {pattern}")
        elif len(paths) > limit:
            notes.append(f"more than {limit} audit logs match CMDB_AUDIT_LOG_PATH; the first {limit} were read")
        return [_LogTrail(path) for path in paths[:limit]]

    # ------------------------------------------------------------------ reading

    async def _read(
        self, trails: list[_Trail], since: datetime | None, until: datetime | None, scan: AuditScan
    ) -> None:
        """Round-robin over the trails a page at a time until each reached ``since`` or the scan cap is spent."""
        settings = self._settings
        budget = settings.audit_max_scan
        seen: set[str] = set()  # record hashes: a record in both the stream and the log counts once
        unreadable = 0
        active = list(trails)
        while active and budget > 0:
            for trail in list(active):
                wanted = min(settings.audit_page_size, budget)
                if wanted <= 0:
                    break
                try:
                    lines = await trail.older(wanted)
                except TRAIL_ERRORS as exc:
                    scan.notes.append(self._trail_failed(trail, exc))
                    active.remove(trail)
                    continue
                budget -= len(lines)
                page = await asyncio.to_thread(
                    convert,
                    lines,
                    trail.name,
                    since,
                    until,
                    settings.audit_default_namespace,
                    settings.ignored_tools,
                    seen,
                )
                scan.records += page.records
                unreadable += page.unreadable
                if page.reached_since or len(lines) < wanted:
                    active.remove(trail)
        if active:
            scan.notes.append(
                f"the audit scan stopped after {settings.audit_max_scan} records (CMDB_AUDIT_MAX_SCAN); older audit "
                "records, if any, were not read: pass a later since or an earlier until"
            )
        if unreadable:
            scan.notes.append(f"{unreadable} audit entries were not audit records and were skipped")

    # ------------------------------------------------------------------ messages

    def _unavailable(self, reason: str) -> str:
        return (
            f"the audit trail in {self.redis_label} is unavailable ({reason}); audit records are missing from "
            "this answer, the other sources answered"
        )

    def _trail_failed(self, trail: _Trail, exc: BaseException) -> str:
        reason = self._describe(exc)
        if isinstance(trail, _StreamTrail):
            message = self._unavailable(f"stream {trail.name}: {reason}")
        else:
            message = f"the audit log {trail.name} cannot be read ({reason}); its records are missing from this answer"
        logger.warning("%s", message)
        return message

    def _describe(self, exc: BaseException) -> str:
        """A failure in words an operator can act on; never a stack trace, never the URL's password."""
        if isinstance(exc, AuthenticationError):
            return "it refused the credentials: check CMDB_AUDIT_REDIS_PASSWORD_FILE or the password in the URL"
        if isinstance(exc, TimeoutError | RedisTimeoutError):
            return f"no answer within {self._settings.audit_timeout_seconds:g}s"
        if isinstance(exc, RedisConnectionError):
            return f"cannot connect: {redact_text(str(exc) or type(exc).__name__)}"
        if isinstance(exc, ResponseError):
            return f"it answered with an error: {redact_text(str(exc))}"
        if isinstance(exc, OSError):
            return str(exc.strerror or exc)
        return f"{type(exc).__name__}: {redact_text(str(exc))}"


def convert(
    lines: Sequence[str],
    trail: str,
    since: datetime | None,
    until: datetime | None,
    default_namespace: str,
    ignored_tools: Sequence[str],
    seen: set[str],
) -> _Page:
    """One page of a trail, newest first, to change records; pure CPU work, run in a worker thread."""
    records: list[ChangeRecord] = []
    unreadable = 0
    for line in lines:
        try:
            record = AuditRecord.model_validate_json(line)
        except ValidationError:
            unreadable += 1
            continue
        when = parse_time(record.time)
        if when is None:
            unreadable += 1
            continue
        if since is not None and when < since:
            return _Page(records, True, unreadable)
        if (until is not None and when > until) or record.hash in seen:
            continue
        seen.add(record.hash)
        records += change_records(record, trail, default_namespace, ignored_tools)
    return _Page(records, False, unreadable)


def redis_location(url: str) -> str:
    """host:port (or the socket path) of a Redis URL: what messages show, never its credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path or "a unix socket"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _log_files(pattern: str, limit: int) -> list[Path]:
    if not _GLOB_CHARS & set(pattern):
        return [Path(pattern)] if os.path.exists(pattern) else []
    found: list[Path] = []
    for name in sorted(glob.iglob(pattern)):
        if os.path.isfile(name):
            found.append(Path(name))
        if len(found) >= limit:
            break
    return found


def lines_before(path: Path, end: int | None, count: int) -> tuple[list[str], int]:
    """Up to ``count`` complete lines (stripped) of a file ending at offset ``end`` (None: its last complete
    line), last first, and the offset where the first of them begins. Blocking: run it in a thread."""
    with path.open("rb") as handle:
        start = complete_end(handle) if end is None else end
        lines: list[str] = []
        for offset, line in lines_backwards(handle, start):
            if len(lines) == count:
                break
            lines.append(line.decode("utf-8", errors="replace").strip())
            start = offset
        return lines, start
