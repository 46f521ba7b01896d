"""Output budgets through a real MCP client session: MCP_MAX_ITEMS and MCP_MAX_OUTPUT_BYTES bound every page
of a 5,000-pod list and of a multi-megabyte log, cuts are marked, and continuation tokens resume exactly."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from tests.integration.k8s_ops.conftest import K8sOpsEmulator, MakeFleet, pod, put
from tests.integration.k8s_ops.session import Session, text_of

pytestmark = pytest.mark.integration

PODS = 5000


@pytest.mark.parametrize(
    ("max_items", "max_output_bytes", "min_pages"),
    [(500, 256 * 1024, 10), (1000, 128 * 1024, 6)],
    ids=["cut-by-MCP_MAX_ITEMS", "cut-by-MCP_MAX_OUTPUT_BYTES"],
)
async def test_5000_pods_in_pages_within_budget_each_exactly_once(
    make_fleet: MakeFleet,
    emulator: K8sOpsEmulator,
    session_env: pytest.MonkeyPatch,
    max_items: int,
    max_output_bytes: int,
    min_pages: int,
) -> None:
    for i in range(PODS):
        put(emulator, "pods", pod(f"web-{i:05d}"))
    put(emulator, "pods", pod("elsewhere", namespace="team-b"))
    session_env.setenv("MCP_MAX_ITEMS", str(max_items))
    session_env.setenv("MCP_MAX_OUTPUT_BYTES", str(max_output_bytes))
    fleet = await make_fleet()
    seen: list[str] = []
    sizes: list[int] = []
    pages = 0
    async with Client(fleet.mcp) as client:
        session = Session(client, fleet, emulator)
        token = None
        while True:
            args: dict[str, Any] = {"limit": 1000}  # asks for more than MCP_MAX_ITEMS: the server caps it
            if token:
                args["continue_token"] = token
            result = await session.call("list_pods", **args)
            assert not result.is_error, text_of(result)
            page = result.structured_content
            assert page is not None
            pages += 1
            assert len(text_of(result).encode()) <= max_output_bytes
            assert len(page["items"]) <= max_items
            seen += [p["name"] for p in page["items"]]
            sizes.append(len(page["items"]))
            if not page["truncated"]:
                assert page["continue_token"] is None
                break
            assert page["continue_token"]
            assert page["note"]  # the cut is said in words
            token = page["continue_token"]
            assert pages < 400
    assert len(seen) == PODS
    assert len(set(seen)) == PODS
    assert seen == sorted(seen)
    assert "elsewhere" not in seen
    assert pages >= min_pages
    by_count = max_items * 300 < max_output_bytes  # a pod summary is well under 300 bytes
    full = set(sizes[:-1])
    if by_count:
        assert full == {max_items}, sizes
    else:
        assert max(full) < max_items, sizes  # the byte budget cut first
        assert min(full) > 0


async def test_an_over_budget_single_object_is_refused_with_advice(
    make_fleet: MakeFleet, emulator: K8sOpsEmulator
) -> None:
    fat = pod("fat")
    fat["metadata"]["annotations"] = {f"example.com/note-{i}": "x" * 1000 for i in range(40)}
    put(emulator, "pods", fat)
    fleet = await make_fleet(max_output_bytes=16 * 1024)
    async with Client(fleet.mcp) as client:
        message = await Session(client, fleet, emulator).error("get_pod", name="fat")
    assert "more than this server returns at once (16384 bytes, MCP_MAX_OUTPUT_BYTES)" in message
    assert "Narrow the query" in message
    assert 'reason="output_budget",tool="get_pod"' in fleet.metrics.render().decode()


async def test_a_large_log_is_paged_within_the_byte_budget_and_continues_exactly(
    make_fleet: MakeFleet, emulator: K8sOpsEmulator
) -> None:
    put(emulator, "pods", pod("chatty"))
    line = b"2026-01-01T00:00:00Z INFO request %08d served in 12ms by worker-%02d\n"
    log = b"".join(line % (i, i % 16) for i in range(8 * 1024 * 1024 // len(line % (0, 0))))
    assert len(log) > 7 * 1024 * 1024
    emulator.logs[("team-a", "chatty")] = log
    max_output_bytes = 64 * 1024
    fleet = await make_fleet(max_output_bytes=max_output_bytes)
    page_bytes = fleet.settings.budget().max_bytes
    texts: list[str] = []
    async with Client(fleet.mcp) as client:
        session = Session(client, fleet, emulator)
        token = None
        for _ in range(3):
            args: dict[str, Any] = {"name": "chatty"}
            if token:
                args["continue_token"] = token
            result = await session.call("get_pod_logs", **args)
            assert not result.is_error, text_of(result)
            page = result.structured_content
            assert page is not None
            assert len(text_of(result).encode()) <= max_output_bytes
            assert 0 < len(page["text"].encode()) <= page_bytes
            assert page["text"].endswith("\n")  # whole lines only
            assert page["truncated"] is True
            assert page["continue_token"]
            assert page["note"] == f"cut at {page_bytes} bytes; pass continue_token for the next page"
            assert page["lines"] == page["text"].count("\n")
            texts.append(page["text"])
            token = page["continue_token"]
    joined = "".join(texts)
    # Each page starts where the one before stopped: nothing lost, nothing repeated.
    assert log.decode().startswith(joined)
    assert len(joined.encode()) > 2 * page_bytes  # the pages were (nearly) full
    first_line_of = [text.split("\n", 1)[0] for text in texts]
    assert first_line_of[0].endswith("request 00000000 served in 12ms by worker-00")
    assert len(set(first_line_of)) == 3
