"""The pure catalog builder: prefixes, risks, allow/deny, drift and the approval hold."""

from __future__ import annotations

from typing import Any

from mcpfleet_contracts.catalog import CatalogServer
from mcpfleet_contracts.mcpserver import MCPServerSpec, Risk
from mcpfleet_contracts.report import tools_digest
from mcpfleet_operator.builders.catalog import build_server_entry, tool_allowed
from mcpfleet_operator.builders.model import Owner

OWNER = Owner(name="k8s-ops", namespace="team-a", uid="uid-1", generation=3)


def tool(name: str, description: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": description or f"{name} does things",
        "inputSchema": {"type": "object"},
        **extra,
    }


TOOLS = [
    tool("get_pods"),
    tool("scale_deployment"),
    tool("delete_pod"),
    tool("frobnicate"),
    tool("describe_node", annotations={"destructiveHint": True}),
]


def spec(**fields: Any) -> MCPServerSpec:
    return MCPServerSpec.model_validate({"type": "k8s-ops", **fields})


def entry(spec_: MCPServerSpec, tools: list[dict[str, Any]], previous: CatalogServer | None = None) -> Any:
    return build_server_entry(OWNER, spec_, tools, tools_digest(tools), previous)


def test_entries_carry_prefix_risk_permission_timeout_and_digest() -> None:
    server = entry(spec(), TOOLS).server
    assert server is not None
    assert server.name == "team-a/k8s-ops"
    assert server.prefix == "k8s"
    assert server.endpoint == "http://k8s-ops.team-a.svc:8080/mcp"
    assert server.tools_digest == tools_digest(TOOLS)
    by_name = {t.name: t for t in server.tools}
    assert list(by_name) == sorted(by_name)
    assert by_name["k8s:get_pods"].risk is Risk.SAFE
    assert by_name["k8s:get_pods"].permissions == ("k8s:get",)
    assert by_name["k8s:scale_deployment"].risk is Risk.MEDIUM
    assert by_name["k8s:delete_pod"].risk is Risk.HIGH
    assert by_name["k8s:delete_pod"].timeout_seconds > by_name["k8s:get_pods"].timeout_seconds
    assert by_name["k8s:frobnicate"].risk is Risk.MEDIUM, "an unknown verb is not safe"
    assert by_name["k8s:describe_node"].risk is Risk.HIGH, "annotations come before the verb"
    assert all(t.cache_ttl_seconds == 0 for t in server.tools), "no caching unless the operator is told to"
    assert all(len(t.schema_digest) == 64 for t in server.tools)


def test_risk_overrides_and_a_custom_prefix() -> None:
    server = entry(
        spec(toolPrefix="ops", tools={"riskOverrides": {"get_*": "HIGH", "frobnicate": "SAFE"}}), TOOLS
    ).server
    assert server is not None
    risks = {t.upstream_name: t.risk for t in server.tools}
    assert risks["get_pods"] is Risk.HIGH
    assert risks["frobnicate"] is Risk.SAFE
    assert {t.name.split(":")[0] for t in server.tools} == {"ops"}


def test_allow_then_deny() -> None:
    policy = spec(tools={"allow": ["get_*", "delete_*"], "deny": ["delete_*"]}).tools
    assert tool_allowed("get_pods", policy)
    assert not tool_allowed("delete_pod", policy)
    assert not tool_allowed("scale_deployment", policy)
    assert tool_allowed("anything", None)
    server = entry(spec(tools={"deny": ["delete_*", "scale_*"]}), TOOLS).server
    assert server is not None
    assert {t.upstream_name for t in server.tools} == {"get_pods", "frobnicate", "describe_node"}


def test_stdio_servers_are_not_cataloged() -> None:
    result = build_server_entry(OWNER, spec(transport="stdio"), TOOLS, tools_digest(TOOLS), None)
    assert result.server is None


def test_drift_is_reported_and_without_approval_cataloged() -> None:
    first = entry(spec(), TOOLS).server
    changed = [tool("get_pods", "now also deletes them"), *TOOLS[1:]]
    result = entry(spec(), changed, first)
    assert result.drifted == ("get_pods",)
    assert result.pending == ()
    assert result.server is not None
    assert next(t for t in result.server.tools if t.upstream_name == "get_pods").description == "now also deletes them"


def test_require_approval_holds_new_and_changed_tools_until_the_digest_is_approved() -> None:
    approved_spec = spec(tools={"requireApproval": True, "approvedDigest": tools_digest(TOOLS)})
    first = entry(approved_spec, TOOLS)
    assert first.pending == ()
    assert first.server is not None
    assert len(first.server.tools) == len(TOOLS)

    changed = [tool("get_pods", "now also deletes them"), *TOOLS[1:], tool("exec_shell")]
    held = entry(approved_spec, changed, first.server)
    assert held.pending == ("exec_shell", "get_pods")
    assert held.pending_digest == tools_digest(changed)
    assert held.drifted == ("get_pods",)
    assert held.server is not None
    served = {t.upstream_name: t for t in held.server.tools}
    assert "exec_shell" not in served, "a new tool waits for approval"
    assert served["get_pods"].description == "get_pods does things", "the approved definition keeps serving"
    assert held.server.tools_digest == tools_digest(changed), "the digest says what the server really serves"

    approved = entry(spec(tools={"requireApproval": True, "approvedDigest": held.pending_digest}), changed, held.server)
    assert approved.pending == ()
    assert approved.server is not None
    assert {t.upstream_name for t in approved.server.tools} == {t["name"] for t in changed}


def test_require_approval_with_nothing_approved_catalogs_nothing_and_removal_needs_no_approval() -> None:
    held = entry(spec(tools={"requireApproval": True}), TOOLS)
    assert held.server is not None
    assert held.server.tools == ()
    assert set(held.pending) == {t["name"] for t in TOOLS}

    approved_spec = spec(tools={"requireApproval": True, "approvedDigest": tools_digest(TOOLS)})
    first = entry(approved_spec, TOOLS).server
    fewer = TOOLS[:2]
    shrunk = entry(approved_spec, fewer, first)
    assert shrunk.pending == ()
    assert shrunk.server is not None
    assert {t.upstream_name for t in shrunk.server.tools} == {"get_pods", "scale_deployment"}


def test_built_in_servers_judge_their_own_writes_and_the_spec_still_wins() -> None:
    monitoring = {"type": "monitoring", "config": {"monitoring": {"prometheusUrl": "http://p:9090"}}}
    tools = [tool("create_silence"), tool("create_dashboard"), tool("query_metrics")]
    server = entry(spec(**monitoring), tools).server
    assert server is not None
    risks = {t.name: t.risk for t in server.tools}
    assert risks == {
        "monitoring:create_silence": Risk.MEDIUM,
        "monitoring:create_dashboard": Risk.MEDIUM,
        "monitoring:query_metrics": Risk.SAFE,
    }
    stricter = entry(spec(**monitoring, tools={"riskOverrides": {"create_silence": "HIGH"}}), tools).server
    assert stricter is not None
    assert next(t for t in stricter.tools if t.upstream_name == "create_silence").risk is Risk.HIGH
    custom = entry(spec(type="custom", image="example/x:1"), tools).server
    assert custom is not None
    assert next(t for t in custom.tools if t.upstream_name == "create_silence").risk is Risk.HIGH, "only built-ins"
