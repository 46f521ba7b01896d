"""Bounded answers: every list or log tool returns a page, says when it cut, and how to go on.

A continuation token is opaque to the client: base64 of JSON holding the position and a fingerprint
of the query, so a token is refused when reused with different arguments.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from mcpfleet_servers.base.toolkit import InvalidArgument

T = TypeVar("T")

CONTINUE_FIELD = "continue_token"


@dataclass(frozen=True)
class Budget:
    """How much one answer may hold; from the server settings."""

    max_items: int = 200
    max_bytes: int = 256 * 1024

    def items(self, requested: int | None) -> int:
        return self.max_items if requested is None else max(1, min(requested, self.max_items))


class Page(BaseModel, Generic[T]):
    """One page of a longer answer."""

    items: list[T] = Field(description="The items on this page.")
    truncated: bool = Field(description="True when more items exist than this page holds.")
    continue_token: str | None = Field(
        default=None, description="Pass this back as continue_token to get the next page; null on the last page."
    )
    total: int | None = Field(default=None, description="How many items match in all, when known.")
    note: str | None = Field(default=None, description="Why the page was cut, in words.")


def query_fingerprint(**query: Any) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:12]


def encode_token(position: Any, fingerprint: str) -> str:
    raw = json.dumps({"p": position, "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None, fingerprint: str) -> Any:
    """The position a token names, or None for no token; InvalidArgument when it is not ours or stale."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position, owner = data["p"], data["q"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidArgument(CONTINUE_FIELD, "not a continuation token this server issued") from exc
    if owner != fingerprint:
        raise InvalidArgument(CONTINUE_FIELD, "this token belongs to a call with other arguments; repeat that call")
    return position


def _size(item: Any) -> int:
    if isinstance(item, BaseModel):
        return len(item.model_dump_json())
    return len(json.dumps(item, default=str))


def paginate(items: Sequence[T], *, limit: int | None, token: str | None, budget: Budget, fingerprint: str) -> Page[T]:
    """Cut an in-memory list into a page by count and by serialized size."""
    start = decode_token(token, fingerprint) or 0
    if not isinstance(start, int) or start < 0 or start > len(items):
        raise InvalidArgument(CONTINUE_FIELD, "the token points outside the list; start again without it")
    wanted = budget.items(limit)
    page: list[T] = []
    used = 0
    note = None
    for item in items[start : start + wanted]:
        size = _size(item)
        if page and used + size > budget.max_bytes:
            note = f"cut at {len(page)} items to stay within {budget.max_bytes} bytes"
            break
        page.append(item)
        used += size
    end = start + len(page)
    more = end < len(items)
    if more and note is None:
        note = f"showing {start + 1}-{end} of {len(items)}; pass continue_token for more"
    return Page[T](
        items=page,
        truncated=more,
        continue_token=encode_token(end, fingerprint) if more else None,
        total=len(items),
        note=note,
    )
