"""The gateway's audit record: one tool call (or denial) through the gateway, as written to its trail.

The gateway writes the trail (servers/mcpfleet_gateway/audit_sink.py); readers such as the cmdb server's
change records read it. Both trails hold the same line per record, the record's JSON:

- the JSON lines log: one record per line, in chain order (``seq`` 1, 2, ...);
- the Redis stream of each gateway replica (``mcpfleet:audit:<replica>`` by default): entry id ``<seq>-0``
  (a sequence number, not a time), one field ``record`` holding the record's JSON.

Within one replica's trail records are in the order the calls finished, so their ``time`` only grows (unless
the clock is set back). Arguments are redacted before the record is made: secrets never reach the trail.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The one field of a stream entry; its value is the record's JSON.
RECORD_FIELD = "record"
# The status of a call that ran and whose tool reported success. Others: tool-error, cached, upstream-error,
# timeout (effect unknown), denied, rate-limited, unauthenticated.
OK_STATUS = "ok"

Decision = Literal["allowed", "denied", "rate-limited", "error"]


class AuditEvent(BaseModel):
    """What happened, before it is chained: one per call and one per denial."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time: str = Field(description="UTC, ISO 8601 with microseconds.")
    request_id: str
    subject: str = Field(description="Who: the token's subject or the API key's name; 'anonymous' if allowed.")
    roles: tuple[str, ...] = ()
    client_address: str | None = None
    tool: str | None = Field(default=None, description="Qualified tool name, e.g. k8s:scale_deployment.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="With secrets redacted.")
    decision: Decision
    reason: str | None = Field(default=None, description="Why a call was denied or failed.")
    status: str | None = Field(default=None, description="Result status: ok, tool-error, upstream-error, ...")
    latency_ms: float | None = None

    @property
    def succeeded(self) -> bool:
        """The call was allowed, ran, and its tool reported success: whatever it does, it did."""
        return self.decision == "allowed" and self.status == OK_STATUS


class AuditRecord(AuditEvent):
    """An event in the chain: its sequence number, the hash of the record before it and its own hash."""

    seq: int = Field(ge=1)
    prev_hash: str = Field(min_length=64, max_length=64)
    hash: str = Field(min_length=64, max_length=64)
