"""The tool sync's pure parts: where a Pod is listed, and what the status says about a confirmation."""

from __future__ import annotations

from typing import Any

from mcpfleet_contracts.mcpserver import MCPServerSpec, MCPServerStatus
from mcpfleet_contracts.report import tools_digest
from mcpfleet_operator.builders.catalog import build_server_entry
from mcpfleet_operator.builders.model import Owner
from mcpfleet_operator.catalog_sync import Outcome, pod_url, tools_status
from mcpfleet_operator.toolsource import ListFailed

OWNER = Owner(name="k8s-ops", namespace="team-a", uid="uid-1", generation=2)
SPEC = MCPServerSpec.model_validate({"type": "k8s-ops", "port": 9000})
TOOLS = [{"name": "get_pods", "description": "List pods.", "inputSchema": {"type": "object"}}]
NOW = "2026-11-22T10:00:00Z"


def pod(ip: str | None, port: int | None = None) -> dict[str, Any]:
    ports = [{"name": "mcp", "containerPort": port}] if port is not None else []
    return {"spec": {"containers": [{"name": "server", "ports": ports}]}, "status": {"podIP": ip} if ip else {}}


def test_a_pod_is_listed_at_its_ip_and_the_port_it_declares() -> None:
    assert pod_url(pod("10.1.2.3", 8123), SPEC) == "http://10.1.2.3:8123/mcp", "old Pods keep their old port"
    assert pod_url(pod("10.1.2.3"), SPEC) == "http://10.1.2.3:9000/mcp"
    assert pod_url(pod("fd00::7", 8123), SPEC) == "http://[fd00::7]:8123/mcp"
    assert pod_url(pod(None, 8123), SPEC) is None, "no IP yet: nothing to list"


def condition(status: MCPServerStatus, type_: str) -> Any:
    return next(c for c in status.conditions or () if c.type == type_)


def test_a_confirmation_fills_status_tools_and_tools_synced() -> None:
    entry = build_server_entry(OWNER, SPEC, TOOLS, tools_digest(TOOLS), None)
    status = tools_status(MCPServerStatus(), Outcome(entry=entry, source="Pod p-1"), 7, OWNER, SPEC, NOW)
    assert status.tools is not None
    assert (status.tools.count, status.tools.names, status.tools.catalog_revision) == (1, ["get_pods"], 7)
    assert status.tools.digest == tools_digest(TOOLS)
    synced = condition(status, "ToolsSynced")
    assert (synced.status, synced.reason, synced.observed_generation) == ("True", "Synced", 2)
    assert condition(status, "ToolsDrifted").status == "False"

    again = tools_status(status, Outcome(entry=entry, source="Pod p-1"), 7, OWNER, SPEC, "2026-11-22T11:00:00Z")
    assert again == status, "the same tools again change nothing (no status write)"


def test_a_mismatch_and_an_unreachable_pod_are_named_in_tools_synced() -> None:
    entry = build_server_entry(OWNER, SPEC, TOOLS, tools_digest(TOOLS), None)
    lied = tools_status(MCPServerStatus(), Outcome(entry=entry, mismatch="Pod p-1 reported x"), 1, OWNER, SPEC, NOW)
    assert (condition(lied, "ToolsSynced").reason, condition(lied, "ToolsSynced").message) == (
        "ReportMismatch",
        "Pod p-1 reported x",
    )
    failure = ListFailed("Timeout", "no answer within 10 s")
    down = tools_status(lied, Outcome(entry=entry, failure=failure, source="Pod p-1"), 1, OWNER, SPEC, NOW)
    synced = condition(down, "ToolsSynced")
    assert (synced.status, synced.reason) == ("False", "Timeout")
    assert "Pod p-1" in synced.message
    assert down.tools == lied.tools, "the last confirmed tools stay in the status while the Pod does not answer"
