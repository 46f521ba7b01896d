"""Bounded log pages over a generated 50 MB log (pure: the paging function the get_pod_logs tool uses)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from mcpfleet_servers.k8s_ops.logs import read_log_page
from mcpfleet_servers.k8s_ops.redact import redact_text

CHUNK = 64 * 1024


def big_log(megabytes: int) -> bytes:
    line = b"2026-01-01T00:00:00Z INFO request %07d served in 12ms by worker-3 with status 200 OK\n"
    count = megabytes * 1024 * 1024 // len(line % 0)
    return b"".join(line % i for i in range(count))


async def chunks(data: bytes, limit: int | None = None) -> AsyncIterator[bytes]:
    data = data if limit is None else data[:limit]
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def test_a_50mb_log_is_walked_in_bounded_pages_exactly_once() -> None:
    log = big_log(50)
    assert len(log) >= 50 * 1024 * 1024 - 100
    max_bytes = 4 * 1024 * 1024
    offset: int | None = 0
    pages: list[str] = []
    while offset is not None:
        page = await read_log_page(
            chunks(log, offset + max_bytes + 1), offset=offset, max_bytes=max_bytes, limit_bytes=offset + max_bytes + 1
        )
        assert len(page.text.encode()) <= max_bytes
        assert page.text.endswith("\n")
        pages.append(page.text)
        offset = page.next_offset
        assert len(pages) < 50
    assert "".join(pages) == log.decode()
    assert len(pages) >= len(log) // max_bytes


async def test_grep_filters_and_redacts_within_the_budget() -> None:
    log = b"".join(
        b"line %d user=bob password=hunter%d\n" % (i, i) if i % 10 == 0 else b"line %d ok\n" % i for i in range(50_000)
    )
    page = await read_log_page(chunks(log), offset=0, max_bytes=2000, grep=re.compile("password"))
    assert page.next_offset is not None
    assert len(page.text.encode()) <= 2000
    assert "hunter" not in page.text
    assert all("password" in line for line in page.text.splitlines())
    rest = await read_log_page(chunks(log), offset=page.next_offset, max_bytes=10_000_000, grep=re.compile("password"))
    assert rest.next_offset is None
    assert page.lines + rest.lines == 5000


async def test_an_overlong_line_is_cut_not_dropped() -> None:
    log = b"x" * 10_000 + b"\nshort\n"
    first = await read_log_page(chunks(log), offset=0, max_bytes=1000)
    assert first.cut_long_lines == 1
    assert len(first.text.encode()) <= 1000
    assert first.next_offset == 10_001
    second = await read_log_page(chunks(log), offset=first.next_offset, max_bytes=1000)
    assert second.text == "short\n"
    assert second.next_offset is None


async def test_a_stream_cut_by_limit_bytes_leaves_the_partial_line_for_the_next_page() -> None:
    log = b"aaaa\nbbbb\ncccc\n"
    page = await read_log_page(chunks(log, 12), offset=0, max_bytes=1000, limit_bytes=12)
    assert page.text == "aaaa\nbbbb\n"
    assert page.next_offset == 10
    assert redact_text("cccc") == "cccc"
