"""The audit trail's records and their hash chain: any edit, removal or reordering is detectable.

Each record carries its sequence number, the hash of the record before it and its own hash, computed
over its canonical JSON (sorted keys, no whitespace) together with that previous hash. ``verify``
walks a trail and names every record that does not fit. Deleting records at the end cannot be seen
from the trail alone; pass the last head hash published elsewhere (``expected_head``) to catch that.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mcpfleet_contracts.audit import AuditEvent, AuditRecord, Decision
from mcpfleet_servers.base.redact import redact_value

# The record models are the shared contract (mcpfleet_contracts.audit); re-exported for the gateway's callers.
__all__ = [
    "GENESIS",
    "AuditChain",
    "AuditEvent",
    "AuditRecord",
    "Decision",
    "VerifyResult",
    "event",
    "now",
    "read_lines",
    "record_hash",
    "verify",
]

GENESIS = "0" * 64


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def event(**fields: Any) -> AuditEvent:
    """An AuditEvent whose arguments are redacted on the way in: secrets never reach the trail."""
    fields.setdefault("time", now())
    fields["arguments"] = redact_value(fields.get("arguments") or {})
    return AuditEvent(**fields)


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(content: dict[str, Any], prev_hash: str) -> str:
    """The hash of one record: previous hash, then the canonical JSON of everything but the hash itself."""
    body = {key: value for key, value in content.items() if key != "hash"}
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(body)).hexdigest()


@dataclass
class AuditChain:
    """Appends events to a chain; resumes from the last record of an existing trail."""

    seq: int = 0
    head: str = GENESIS

    @classmethod
    def resume(cls, last: AuditRecord | None) -> AuditChain:
        return cls() if last is None else cls(seq=last.seq, head=last.hash)

    def append(self, audit_event: AuditEvent) -> AuditRecord:
        content = audit_event.model_dump(mode="json") | {"seq": self.seq + 1, "prev_hash": self.head}
        digest = record_hash(content, self.head)
        record = AuditRecord.model_validate(content | {"hash": digest})
        self.seq, self.head = record.seq, record.hash
        return record


@dataclass
class VerifyResult:
    records: int = 0
    problems: list[str] = field(default_factory=list)
    head: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(lines: Iterable[str], *, expected_head: str | None = None) -> VerifyResult:
    """Check a trail given as JSON lines; every problem names the line and what is wrong."""
    result = VerifyResult()
    expected_seq, prev = 1, GENESIS
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            record = AuditRecord.model_validate(raw)
        except (json.JSONDecodeError, ValidationError) as exc:
            result.problems.append(f"line {number}: not an audit record ({str(exc).splitlines()[0]})")
            continue
        result.records += 1
        if record.seq != expected_seq:
            missing = record.seq - expected_seq
            what = f"{missing} record(s) missing before it" if missing > 0 else "out of order or repeated"
            result.problems.append(f"line {number}: seq {record.seq} where {expected_seq} was due: {what}")
        if record.prev_hash != prev:
            result.problems.append(f"line {number}: prev_hash does not match the hash of the record before it")
        if record_hash(raw, record.prev_hash) != record.hash:
            result.problems.append(f"line {number}: seq {record.seq} was edited (its hash does not match its content)")
        expected_seq, prev = record.seq + 1, record.hash
    result.head = prev
    if expected_head is not None and expected_head != prev:
        result.problems.append(
            f"the trail ends at {prev[:12]}… but the published head is {expected_head[:12]}…: records were removed "
            "from its end, or it is not the trail that head belongs to"
        )
    return result


def read_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        yield from handle
