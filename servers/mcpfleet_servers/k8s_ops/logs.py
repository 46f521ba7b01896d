"""Bounded pod logs: one page of a (possibly huge) log stream by byte offset, filtered and redacted."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mcpfleet_servers.k8s_ops.redact import redact_text


@dataclass(frozen=True)
class LogSlice:
    """Lines of one page, where the next page starts (None at the end) and how much was scanned."""

    text: str
    next_offset: int | None
    lines: int
    scanned_bytes: int
    cut_long_lines: int


async def read_log_page(
    chunks: AsyncIterator[bytes],
    *,
    offset: int,
    max_bytes: int,
    grep: re.Pattern[str] | None = None,
    limit_bytes: int | None = None,
) -> LogSlice:
    """Skip ``offset`` bytes of the stream, then collect whole lines (redacted, matching ``grep``) until
    ``max_bytes`` of output. ``next_offset`` is the stream position of the first line not returned.

    ``limit_bytes`` is the byte limit the server was asked for: a trailing line without a newline in
    a stream cut exactly there is incomplete, so it is left for the next page instead of returned.
    A single line longer than the budget is returned cut to the budget (counted in ``cut_long_lines``).
    """
    out: list[str] = []
    used = 0
    position = 0  # stream position of the start of ``pending``
    pending = b""
    received = 0
    cut = 0
    count = 0

    def take(line: bytes, start: int) -> int | None:
        """Consider one line at ``start``; return a stop position or None to go on."""
        nonlocal used, cut, count
        if start < offset:
            return None
        text = line.decode("utf-8", "replace")
        if grep is not None and not grep.search(text):
            return None
        shown = redact_text(text)
        size = len(shown.encode())
        if used + size > max_bytes:
            if out:
                return start
            shown = shown.encode()[: max(0, max_bytes - 1)].decode("utf-8", "ignore") + "\n"
            size = len(shown.encode())
            cut += 1
        out.append(shown)
        used += size
        count += 1
        return None

    async for chunk in chunks:
        received += len(chunk)
        if not pending and position + len(chunk) <= offset:
            position += len(chunk)  # wholly before the page: no need to split it into lines
            continue
        data = pending + chunk if pending else chunk
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            stop = take(data[start : newline + 1], position)
            if stop is not None:
                return LogSlice("".join(out), stop, count, position, cut)
            position += newline + 1 - start
            start = newline + 1
        pending = data[start:]
        if pending and position + len(pending) <= offset:
            position += len(pending)  # the start of a line that began before the page
            pending = b""
    if pending:
        if limit_bytes is not None and received >= limit_bytes:
            return LogSlice("".join(out), max(position, offset), count, received, cut)
        stop = take(pending, position)
        if stop is not None:
            return LogSlice("".join(out), stop, count, received, cut)
    more = limit_bytes is not None and received >= limit_bytes
    return LogSlice("".join(out), received if more else None, count, received, cut)
