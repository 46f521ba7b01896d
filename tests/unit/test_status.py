"""compute_status, failed_status and status_patch: phase, conditions and the patch the operator sends."""

from __future__ import annotations

from typing import Any

import pytest

from mcpfleet_contracts.mcpserver import Condition, MCPServerSpec, MCPServerStatus, Phase, ToolsStatus, parse_spec
from mcpfleet_operator.builders.model import Owner
from mcpfleet_operator.builders.status import Observation, compute_status, failed_status, status_patch

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"
OWNER_NAME = "srv"


def _owner(generation: int = 1) -> Owner:
    return Owner(OWNER_NAME, "team-a", "uid-srv", generation)


def _spec(**fields: Any) -> MCPServerSpec:
    return parse_spec({"type": "k8s-ops", **fields})


def _deployment(
    available: int,
    updated: int | None = None,
    *,
    generation: int = 2,
    observed: int = 2,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "availableReplicas": available,
        "updatedReplicas": available if updated is None else updated,
    }
    if conditions is not None:
        status["conditions"] = conditions
    return {"metadata": {"name": OWNER_NAME, "generation": generation}, "status": status}


DEADLINE = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "srv-7d9" has timed out progressing.',
}


def _compute(
    spec: MCPServerSpec,
    observation: Observation,
    previous: MCPServerStatus | None = None,
    now: str = T0,
    generation: int = 1,
) -> MCPServerStatus:
    return compute_status(_owner(generation), spec, observation, previous or MCPServerStatus(), now)


def _conditions(status: MCPServerStatus) -> dict[str, Condition]:
    return {condition.type: condition for condition in status.conditions or ()}


def _ready(status: MCPServerStatus) -> tuple[str, str | None]:
    ready = _conditions(status)["Ready"]
    return ready.status, ready.reason


# ------------------------------------------------------------------- phases


def test_external_endpoint_is_pending_until_its_tools_sync() -> None:
    spec = parse_spec({"type": "custom", "endpoint": "https://mcp.example.com/mcp"})
    previous = MCPServerStatus(replicas=1, ready_replicas=1)
    status = _compute(spec, Observation(), previous)
    assert status.phase == Phase.PENDING
    assert _ready(status) == ("Unknown", "AwaitingToolSync")
    assert (_conditions(status)["Deployed"].status, _conditions(status)["Deployed"].reason) == ("True", "External")
    assert status.endpoint == "https://mcp.example.com/mcp"
    assert status.replicas is None
    assert status.ready_replicas is None


def test_no_deployment_yet_is_deploying() -> None:
    status = _compute(_spec(), Observation(deployment=None))
    assert status.phase == Phase.DEPLOYING
    assert _ready(status) == ("False", "Deploying")
    assert _conditions(status)["Deployed"].status == "True"
    assert (status.replicas, status.ready_replicas) == (1, 0)
    assert status.endpoint == "http://srv.team-a.svc:8080/mcp"


def test_no_pod_available_is_deploying() -> None:
    status = _compute(_spec(), Observation(deployment=_deployment(0)))
    assert status.phase == Phase.DEPLOYING
    assert _ready(status) == ("False", "NoPodsAvailable")
    assert _conditions(status)["Ready"].message == "0/1 server pods available"


def test_all_pods_available_and_rolled_out_is_ready() -> None:
    status = _compute(_spec(), Observation(deployment=_deployment(1)))
    assert status.phase == Phase.READY
    assert _ready(status) == ("True", "Available")
    assert _conditions(status)["Ready"].message == "1/1 server pods available"
    assert (status.replicas, status.ready_replicas) == (1, 1)


def test_some_pods_available_after_rollout_is_degraded_but_ready() -> None:
    status = _compute(_spec(replicas=3), Observation(deployment=_deployment(1, updated=3)))
    assert status.phase == Phase.DEGRADED
    assert _ready(status) == ("True", "PartiallyAvailable")
    assert _conditions(status)["Ready"].message == "1/3 server pods available"
    assert (status.replicas, status.ready_replicas) == (3, 1)


def test_some_pods_available_during_rollout_is_deploying() -> None:
    status = _compute(_spec(replicas=3), Observation(deployment=_deployment(1, updated=2)))
    assert status.phase == Phase.DEPLOYING
    assert _ready(status) == ("True", "PartiallyAvailable")


def test_all_available_but_deployment_not_observed_yet_is_still_rolling_out() -> None:
    deployment = _deployment(1, generation=3, observed=2)
    status = _compute(_spec(), Observation(deployment=deployment))
    assert status.phase == Phase.DEPLOYING
    assert _ready(status) == ("True", "RollingOut")
    assert "rolling out" in (_conditions(status)["Ready"].message or "")


def test_progress_deadline_without_pods_is_failed() -> None:
    status = _compute(_spec(), Observation(deployment=_deployment(0, conditions=[DEADLINE])))
    assert status.phase == Phase.FAILED
    assert _ready(status) == ("False", "ProgressDeadlineExceeded")
    assert _conditions(status)["Ready"].message == DEADLINE["message"]


def test_progress_deadline_with_pods_is_degraded() -> None:
    status = _compute(_spec(replicas=2), Observation(deployment=_deployment(1, conditions=[DEADLINE])))
    assert status.phase == Phase.DEGRADED
    assert _ready(status) == ("False", "ProgressDeadlineExceeded")


def test_progressing_condition_that_is_fine_does_not_fail() -> None:
    progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
    status = _compute(_spec(), Observation(deployment=_deployment(1, conditions=[progressing])))
    assert status.phase == Phase.READY


def test_scaled_to_zero() -> None:
    status = _compute(_spec(replicas=0), Observation(deployment=_deployment(0)))
    assert status.phase == Phase.PENDING
    assert _ready(status) == ("False", "ScaledToZero")
    assert (status.replicas, status.ready_replicas) == (0, 0)


def test_apply_error_is_degraded() -> None:
    status = _compute(_spec(), Observation(deployment=_deployment(1), deploy_error="forbidden: cannot create roles"))
    assert status.phase == Phase.DEGRADED
    deployed = _conditions(status)["Deployed"]
    assert (deployed.status, deployed.reason, deployed.message) == (
        "False",
        "ApplyFailed",
        "forbidden: cannot create roles",
    )
    assert _ready(status) == ("False", "NotDeployed")


# --------------------------------------------------------------- conditions


def test_observed_generation_follows_the_owner() -> None:
    status = _compute(_spec(), Observation(deployment=_deployment(1)), generation=7)
    assert status.observed_generation == 7
    assert {condition.observed_generation for condition in status.conditions or ()} == {7}


def test_condition_order_and_other_writers_conditions_are_kept() -> None:
    synced = Condition(type="ToolsSynced", status="True", reason="Synced", last_transition_time=T0)
    previous = MCPServerStatus(conditions=[synced])
    status = _compute(_spec(), Observation(deployment=_deployment(1)), previous, now=T1)
    assert [condition.type for condition in status.conditions or ()] == ["Deployed", "Ready", "ToolsSynced"]
    assert _conditions(status)["ToolsSynced"] == synced


def test_transition_time_kept_while_status_holds() -> None:
    first = _compute(_spec(), Observation(deployment=_deployment(1)), now=T0)
    again = _compute(_spec(), Observation(deployment=_deployment(1)), first, now=T1)
    assert _conditions(again)["Ready"].last_transition_time == T0
    assert _conditions(again)["Deployed"].last_transition_time == T0
    assert again == first


def test_transition_time_kept_when_only_the_reason_changes() -> None:
    first = _compute(_spec(replicas=3), Observation(deployment=_deployment(3, updated=3)), now=T0)
    partial = _compute(_spec(replicas=3), Observation(deployment=_deployment(1, updated=3)), first, now=T1)
    assert _ready(partial) == ("True", "PartiallyAvailable")
    assert _conditions(partial)["Ready"].last_transition_time == T0


def test_transition_time_moves_when_status_flips() -> None:
    first = _compute(_spec(), Observation(deployment=_deployment(1)), now=T0)
    down = _compute(_spec(), Observation(deployment=_deployment(0)), first, now=T1)
    assert _conditions(down)["Ready"].status == "False"
    assert _conditions(down)["Ready"].last_transition_time == T1
    assert _conditions(down)["Deployed"].last_transition_time == T0, "Deployed did not flip"


def test_previous_fields_of_other_writers_survive() -> None:
    previous = MCPServerStatus(tools=ToolsStatus(count=12, digest="abc"), consul_service_id="mcp-team-a-srv")
    status = _compute(_spec(), Observation(deployment=_deployment(1)), previous)
    assert status.tools == previous.tools
    assert status.consul_service_id == "mcp-team-a-srv"


def test_computed_status_is_valid_on_the_wire() -> None:
    status = _compute(_spec(replicas=3), Observation(deployment=_deployment(1, updated=3)))
    wire = status.to_wire()
    assert wire["phase"] == "Degraded"
    # The API server validates the status against the CRD; the model is the CRD's source.
    assert MCPServerStatus.model_validate(wire).to_wire() == wire


# ------------------------------------------------------------------ failed


def test_failed_status() -> None:
    synced = Condition(type="ToolsSynced", status="True", reason="Synced", last_transition_time=T0)
    previous = _compute(_spec(), Observation(deployment=_deployment(1)), now=T0)
    previous = previous.model_copy(update={"conditions": [*(previous.conditions or ()), synced]})
    status = failed_status(_owner(4), previous, "InvalidSpec", "spec.port: too low", T1)
    assert status.phase == Phase.FAILED
    assert status.observed_generation == 4
    conditions = _conditions(status)
    for name in ("Deployed", "Ready"):
        assert (conditions[name].status, conditions[name].reason, conditions[name].message) == (
            "False",
            "InvalidSpec",
            "spec.port: too low",
        )
        assert conditions[name].last_transition_time == T1, "both were True before"
        assert conditions[name].observed_generation == 4
    assert conditions["ToolsSynced"] == synced
    assert status.endpoint == previous.endpoint


def test_failed_twice_keeps_the_transition_time() -> None:
    first = failed_status(_owner(), MCPServerStatus(), "InvalidSpec", "bad", T0)
    second = failed_status(_owner(), first, "InvalidSpec", "bad", T1)
    assert second == first


# ------------------------------------------------------------------- patch


def test_patch_is_none_when_nothing_changed() -> None:
    status = _compute(_spec(), Observation(deployment=_deployment(1)))
    assert status_patch(status, status.to_wire()) is None


def test_patch_carries_only_changed_keys() -> None:
    old = _compute(_spec(replicas=2), Observation(deployment=_deployment(1, updated=2)), now=T0)
    new = _compute(_spec(replicas=2), Observation(deployment=_deployment(2)), old, now=T1)
    patch = status_patch(new, old.to_wire())
    assert patch is not None
    assert set(patch) == {"phase", "conditions", "readyReplicas"}
    assert patch["phase"] == "Ready"
    assert patch["readyReplicas"] == 2


def test_patch_deletes_keys_that_no_longer_apply() -> None:
    old = _compute(_spec(), Observation(deployment=_deployment(1)))
    external = parse_spec({"type": "custom", "endpoint": "https://mcp.example.com/mcp"})
    new = _compute(external, Observation(), old)
    patch = status_patch(new, old.to_wire())
    assert patch is not None
    assert patch["replicas"] is None
    assert patch["readyReplicas"] is None
    assert patch["endpoint"] == "https://mcp.example.com/mcp"


def test_patch_leaves_keys_of_other_writers_alone() -> None:
    status = _compute(_spec(), Observation(deployment=_deployment(1)))
    stored = {**status.to_wire(), "tools": {"count": 3}, "consulServiceId": "x", "gatewayNote": "hello"}
    assert status_patch(status, stored) is None


@pytest.mark.parametrize("old_raw", [{}, {"phase": "Ready"}])
def test_patch_from_an_empty_or_partial_status(old_raw: dict[str, Any]) -> None:
    status = _compute(_spec(), Observation(deployment=None))
    patch = status_patch(status, old_raw)
    assert patch is not None
    assert patch["phase"] == "Deploying"
    assert patch["observedGeneration"] == 1
    assert len(patch["conditions"]) == 2
