"""The base's policy around the k8s-ops tools, through real MCP client sessions against the emulator:
modes and globs decide the tool set, HIGH calls need the user's confirmation, protected namespaces
refuse changes, bad arguments are JSON-RPC -32602 naming the field. "Nothing changed" is checked in
the emulator: the stored object is unchanged and no write request reached it."""

from __future__ import annotations

import copy
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.types import INVALID_PARAMS

from tests.integration.k8s_ops.conftest import K8sOpsEmulator, MakeFleet, pod, put
from tests.integration.k8s_ops.session import (
    ALL_TOOLS,
    HIGH_TOOLS,
    MODES,
    READ_TOOLS,
    Answers,
    Mode,
    Session,
    text_of,
)
from tests.integration.k8s_ops.test_reads import deployment

pytestmark = pytest.mark.integration


async def listed(make_fleet: MakeFleet, **overrides: Any) -> set[str]:
    fleet = await make_fleet(**overrides)
    async with Client(fleet.mcp) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MCP_READ_ONLY": "true"}, READ_TOOLS),
        ({"MCP_NO_DESTRUCTIVE": "true"}, ALL_TOOLS - HIGH_TOOLS),
        ({"MCP_TOOLS_ALLOW": "list_*,get_pod"}, {t for t in ALL_TOOLS if t.startswith("list_")} | {"get_pod"}),
        (
            {"MCP_TOOLS_DENY": "*_deployment,exec_*,top_*"},
            ALL_TOOLS
            - {
                "get_deployment",
                "scale_deployment",
                "restart_deployment",
                "rollback_deployment",
                "exec_in_pod",
                "top_pods",
                "top_nodes",
            },
        ),
        (
            {
                "MCP_TOOL_PREFIX": "k8s",
                "MCP_TOOLS_ALLOW": "k8s:get_*,k8s:*_deployment",
                "MCP_TOOLS_DENY": "k8s:get_pod*",
            },
            {
                "get_deployment",
                "get_service",
                "get_resource",
                "scale_deployment",
                "restart_deployment",
                "rollback_deployment",
            },
        ),
        ({"MCP_READ_ONLY": "true", "MCP_TOOLS_ALLOW": "*_deployment,delete_*"}, {"get_deployment"}),
    ],
    ids=["read-only", "no-destructive", "allow", "deny", "prefixed-globs", "read-only-beats-allow"],
)
async def test_modes_and_globs_expose_exactly_the_right_tools(
    make_fleet: MakeFleet,
    session_env: pytest.MonkeyPatch,
    emulator: K8sOpsEmulator,
    env: dict[str, str],
    expected: set[str],
) -> None:
    for name, value in env.items():
        session_env.setenv(name, value)
    fleet = await make_fleet()
    put(emulator, "pods", pod("web-1"))
    put(emulator, "deployments", deployment("web"), group="apps")
    async with Client(fleet.mcp, elicitation_callback=Answers("accept")) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == expected
        # A hidden tool cannot be called either, and nothing reaches the cluster.
        for hidden, args in (
            ("delete_resource", {"kind": "Pod", "name": "web-1"}),
            ("scale_deployment", {"name": "web", "replicas": 0}),
        ):
            if hidden in expected:
                continue
            result = await client.call_tool(hidden, args)
            assert result.is_error
            assert f"Unknown tool: {hidden}" in text_of(result)
    assert emulator.writes() == []


async def test_settings_overrides_beat_the_environment(make_fleet: MakeFleet, session_env: pytest.MonkeyPatch) -> None:
    session_env.setenv("MCP_READ_ONLY", "true")
    assert await listed(make_fleet) == READ_TOOLS
    assert await listed(make_fleet, read_only=False) == ALL_TOOLS


# ------------------------------------------------------------------ confirmation


def seed(emulator: K8sOpsEmulator) -> tuple[dict[str, Any], dict[str, Any]]:
    put(emulator, "pods", pod("web-1"))
    put(emulator, "deployments", deployment("web"), group="apps")
    return (
        copy.deepcopy(emulator.stored("pods", "team-a", "web-1")),
        copy.deepcopy(emulator.stored("deployments", "team-a", "web", group="apps")),
    )


HIGH_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("delete_resource", {"kind": "Pod", "name": "web-1"}),
    ("restart_deployment", {"name": "web"}),
]


def assert_untouched(emulator: K8sOpsEmulator, pod_before: dict[str, Any], dep_before: dict[str, Any]) -> None:
    assert emulator.writes() == []
    assert emulator.stored("pods", "team-a", "web-1") == pod_before
    assert emulator.stored("deployments", "team-a", "web", group="apps") == dep_before


@pytest.mark.parametrize(
    ("mode", "action", "confirm", "verb"),
    [
        ("auto", "decline", True, "declined"),
        ("legacy", "decline", True, "declined"),
        ("auto", "cancel", True, "cancelled"),
        ("legacy", "accept", False, "declined"),
    ],
    ids=["decline", "decline-legacy", "cancel", "accept-without-confirm-legacy"],
)
@pytest.mark.parametrize(("tool", "args"), HIGH_CALLS, ids=[t for t, _ in HIGH_CALLS])
async def test_high_call_not_confirmed_does_nothing_and_says_so(
    make_fleet: MakeFleet,
    emulator: K8sOpsEmulator,
    mode: Mode,
    action: Literal["accept", "decline", "cancel"],
    confirm: bool,
    verb: str,
    tool: str,
    args: dict[str, Any],
) -> None:
    pod_before, dep_before = seed(emulator)
    fleet = await make_fleet()
    answers = Answers(action, confirm)
    async with Client(fleet.mcp, mode=mode, elicitation_callback=answers) as client:
        message = await Session(client, fleet, emulator).error(tool, **args)
    assert (
        message
        == f"Error executing tool {tool}: The user {verb} the confirmation: {tool} was not run and nothing changed."
    )
    assert len(answers.questions) == 1
    question = answers.questions[0]
    assert f"Confirm the HIGH-risk call {tool}" in question
    assert args["name"] in question
    assert "Nothing happens unless you confirm." in question
    assert_untouched(emulator, pod_before, dep_before)
    assert f'reason="declined",tool="{tool}"' in fleet.metrics.render().decode()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("tool", "args"), HIGH_CALLS, ids=[t for t, _ in HIGH_CALLS])
async def test_high_call_from_a_client_without_elicitation_is_refused(
    make_fleet: MakeFleet, emulator: K8sOpsEmulator, mode: Mode, tool: str, args: dict[str, Any]
) -> None:
    pod_before, dep_before = seed(emulator)
    fleet = await make_fleet()
    async with Client(fleet.mcp, mode=mode) as client:
        message = await Session(client, fleet, emulator).error(tool, **args)
    assert f"{tool} is HIGH risk and needs the user's confirmation, but this client cannot show one" in message
    assert "nothing was done" in message
    assert "MCP_ALLOW_UNCONFIRMED=true" in message
    assert_untouched(emulator, pod_before, dep_before)


@pytest.mark.parametrize("mode", MODES)
async def test_high_calls_confirmed_are_done(make_fleet: MakeFleet, emulator: K8sOpsEmulator, mode: Mode) -> None:
    seed(emulator)
    fleet = await make_fleet()
    answers = Answers("accept")
    async with Client(fleet.mcp, mode=mode, elicitation_callback=answers) as client:
        session = Session(client, fleet, emulator)
        deleted = await session.ok("delete_resource", kind="Pod", name="web-1")
        restarted = await session.ok("restart_deployment", name="web")
    assert deleted["action"] == "deleted"
    assert emulator.stored("pods", "team-a", "web-1") is None
    template = emulator.stored("deployments", "team-a", "web", group="apps")["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == restarted["after"]
    assert len(answers.questions) == 2


async def test_unconfirmed_high_calls_run_only_when_the_operator_allows_it(
    make_fleet: MakeFleet, emulator: K8sOpsEmulator, session_env: pytest.MonkeyPatch
) -> None:
    seed(emulator)
    session_env.setenv("MCP_ALLOW_UNCONFIRMED", "true")
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:
        deleted = await Session(client, fleet, emulator).ok("delete_resource", kind="Pod", name="web-1")
    assert deleted["action"] == "deleted"
    assert emulator.stored("pods", "team-a", "web-1") is None


# ------------------------------------------------------------ protected namespaces

KUBE_SYSTEM_CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: injected, namespace: kube-system}\ndata: {a: b}\n"


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("scale_deployment", {"name": "coredns", "replicas": 0, "namespace": "kube-system"}),
        ("delete_resource", {"kind": "Pod", "name": "etcd", "namespace": "kube-system"}),
        ("delete_resource", {"kind": "Namespace", "name": "kube-system"}),
        ("apply_manifest", {"manifest": KUBE_SYSTEM_CM}),
        (
            "apply_manifest",
            {"manifest": KUBE_SYSTEM_CM.replace(", namespace: kube-system", ""), "namespace": "kube-system"},
        ),
        ("restart_deployment", {"name": "coredns", "namespace": "kube-system"}),
    ],
    ids=["scale", "delete-pod", "delete-namespace", "apply-in-manifest", "apply-by-argument", "restart"],
)
async def test_protected_namespace_refuses_changes_and_nothing_changes(
    make_fleet: MakeFleet, emulator: K8sOpsEmulator, tool: str, args: dict[str, Any]
) -> None:
    put(emulator, "deployments", deployment("coredns", namespace="kube-system"), group="apps")
    put(emulator, "pods", pod("etcd", namespace="kube-system"))
    put(emulator, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})

    def snapshot() -> list[Any]:
        return [
            copy.deepcopy(emulator.stored("deployments", "kube-system", "coredns", group="apps")),
            copy.deepcopy(emulator.stored("pods", "kube-system", "etcd")),
            copy.deepcopy(emulator.stored("namespaces", None, "kube-system")),
        ]

    before = snapshot()
    assert all(before)
    fleet = await make_fleet()
    answers = Answers("accept")
    async with Client(fleet.mcp, elicitation_callback=answers) as client:
        session = Session(client, fleet, emulator)
        message = await session.error(tool, **args)
        # Reads there stay allowed.
        assert (await session.ok("get_pod", name="etcd", namespace="kube-system"))["summary"]["name"] == "etcd"
    assert answers.questions == [], "the user was asked to confirm a call that policy refuses anyway"
    assert "namespace 'kube-system' is protected: changes there are refused" in message
    assert "K8S_PROTECTED_NAMESPACES" in message
    assert emulator.writes() == []
    assert snapshot() == before
    assert emulator.stored("configmaps", "kube-system", "injected") is None
    assert f'reason="policy",tool="{tool}"' in fleet.metrics.render().decode()


# ------------------------------------------------------------------ bad arguments


LEGACY_TOO = {"replicas", "limit", "kind", "continue_token"}  # these run in both protocol eras


@pytest.mark.parametrize(
    ("tool", "args", "field", "says"),
    [
        ("scale_deployment", {"name": "web", "replicas": -1}, "replicas", "greater than or equal to 0"),
        ("scale_deployment", {"name": "web"}, "replicas", "Field required"),
        ("list_pods", {"limit": "x"}, "limit", "valid integer"),
        ("list_pods", {"limit": 0}, "limit", "greater than or equal to 1"),
        ("list_pods", {"namespace": "Team_A"}, "namespace", "should match pattern"),
        ("get_resource", {"kind": "Widget", "name": "w"}, "kind", "the API server serves no kind 'Widget'"),
        ("get_resource", {"kind": "Deploymnt", "name": "w"}, "kind", "did you mean Deployment"),
        ("list_pods", {"continue_token": "not-a-token"}, "continue_token", "not a continuation token"),
        ("get_pod_logs", {"name": "web-1", "grep": "("}, "grep", "not a regular expression"),
        ("list_pods", {"context": "nope"}, "context", "emulator"),
        ("delete_resource", {"kind": "Pod", "name": "web-1", "propagation": "Now"}, "propagation", "Background"),
        ("exec_in_pod", {"name": "web-1", "command": []}, "command", "at least 1 item"),
        ("apply_manifest", {"manifest": "kind: ["}, "manifest", ""),
    ],
)
async def test_bad_arguments_are_invalid_params_naming_the_field(
    make_fleet: MakeFleet, emulator: K8sOpsEmulator, tool: str, args: dict[str, Any], field: str, says: str
) -> None:
    put(emulator, "pods", pod("web-1"))
    put(emulator, "deployments", deployment("web"), group="apps")
    fleet = await make_fleet()
    modes: list[Mode] = MODES if field in LEGACY_TOO else ["auto"]
    for mode in modes:
        answers = Answers("accept")
        async with Client(fleet.mcp, mode=mode, elicitation_callback=answers) as client:
            error = await Session(client, fleet, emulator).invalid(tool, **args)
        assert error.code == INVALID_PARAMS, mode
        assert error.data["field"] == field
        assert error.message.startswith(f"Invalid params: {field}")
        assert says in error.message
    assert emulator.writes() == []
    assert emulator.stored("deployments", "team-a", "web", group="apps")["spec"]["replicas"] == 2


async def test_a_foreign_continue_token_is_invalid_params(make_fleet: MakeFleet, emulator: K8sOpsEmulator) -> None:
    for i in range(5):
        put(emulator, "pods", pod(f"web-{i}"))
        put(emulator, "deployments", deployment(f"dep-{i}"), group="apps")
    fleet = await make_fleet()
    async with Client(fleet.mcp) as client:
        session = Session(client, fleet, emulator)
        pods = await session.ok("list_pods", limit=2)
        deployments = await session.ok("list_deployments", limit=2)
        token = pods["continue_token"]
        assert token
        for tool, args in (
            ("list_pods", {"label_selector": "app=db"}),  # same tool, other arguments
            ("list_pods", {"namespace": "team-b"}),
            ("list_deployments", {}),  # another tool's token
        ):
            error = await session.invalid(tool, limit=2, continue_token=token, **args)
            assert error.code == INVALID_PARAMS
            assert error.data["field"] == "continue_token"
            assert "belongs to a call with other arguments" in error.message
        error = await session.invalid("list_pods", limit=2, continue_token=deployments["continue_token"])
        assert error.data["field"] == "continue_token"
        logs_error = await session.invalid("get_pod_logs", name="web-1", continue_token=token)
        assert logs_error.data["field"] == "continue_token"
        # The token still works for the call it came from.
        assert len((await session.ok("list_pods", limit=2, continue_token=token))["items"]) == 2
