"""Contract 2: the digest is order-blind and change-sensitive; the names annotation stays within its budget."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcpfleet_contracts.report import (
    ReportInvalid,
    ToolsReport,
    is_digest,
    parse_tools_annotation,
    tools_annotation,
    tools_digest,
)

GET = {"name": "get_pods", "description": "List pods.", "inputSchema": {"type": "object", "properties": {}}}
SCALE = {
    "name": "scale_deployment",
    "description": "Scale.",
    "inputSchema": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
    "annotations": {"destructiveHint": False},
}


def test_the_digest_ignores_order_and_what_clients_do_not_see() -> None:
    digest = tools_digest([GET, SCALE])
    assert is_digest(digest)
    assert tools_digest([SCALE, GET]) == digest
    reordered_keys = {
        "inputSchema": {"properties": {}, "type": "object"},
        "description": "List pods.",
        "name": "get_pods",
    }
    assert tools_digest([reordered_keys, SCALE]) == digest
    assert tools_digest([{**GET, "title": None, "_meta": {"x": 1}}, SCALE]) == digest


@pytest.mark.parametrize(
    "changed",
    [
        {**GET, "description": "List the pods."},
        {**GET, "inputSchema": {"type": "object", "properties": {"namespace": {"type": "string"}}}},
        {**GET, "annotations": {"readOnlyHint": True}},
        {**GET, "name": "list_pods"},
    ],
)
def test_any_change_a_client_could_notice_changes_the_digest(changed: dict[str, Any]) -> None:
    assert tools_digest([changed, SCALE]) != tools_digest([GET, SCALE])


def test_the_annotation_lists_sorted_names_and_the_count() -> None:
    report = parse_tools_annotation(tools_annotation([SCALE, GET]))
    assert report.names == ("get_pods", "scale_deployment")
    assert (report.count, report.truncated) == (2, False)


def test_too_many_names_are_cut_by_whole_names_within_the_budget() -> None:
    tools = [{"name": f"tool_{i:04d}"} for i in range(2000)]
    text = tools_annotation(tools, max_bytes=1024)
    assert len(text.encode()) <= 1024
    report = parse_tools_annotation(text)
    assert report.truncated is True
    assert report.count == 2000
    assert 0 < len(report.names) < 2000
    assert report.names == tuple(f"tool_{i:04d}" for i in range(len(report.names)))
    # Nothing that fits is dropped: one more name would break the budget.
    one_more = ToolsReport(count=2000, names=(*report.names, f"tool_{len(report.names):04d}"), truncated=True)
    assert len(json.dumps(one_more.model_dump(), separators=(",", ":")).encode()) > 1024
    with pytest.raises(ValueError, match="cannot hold even an empty report"):
        tools_annotation(tools, max_bytes=10)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "(top level)"),
        (json.dumps({"count": -1}), "count"),
        (json.dumps({"count": 1, "names": ["a"], "extra": 1}), "extra"),
    ],
)
def test_a_bad_annotation_is_refused_with_the_field(text: str, problem: str) -> None:
    with pytest.raises(ReportInvalid) as refused:
        parse_tools_annotation(text)
    assert problem in str(refused.value)
    assert "mcpfleet.io/tools is not a tool report" in str(refused.value)
