"""Pure status computation: from the spec and the observed Deployment to phase and conditions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcpfleet_contracts.mcpserver import Condition, MCPServerSpec, MCPServerStatus, Phase
from mcpfleet_operator.builders.children import service_endpoint
from mcpfleet_operator.builders.model import Owner

READY = "Ready"
DEPLOYED = "Deployed"
TOOLS_SYNCED = "ToolsSynced"
TOOLS_DRIFTED = "ToolsDrifted"
REGISTERED = "Registered"
# ToolsSynced reasons that mean the server did not answer (as opposed to answering with a problem).
UNREACHABLE_REASONS = frozenset({"Unreachable", "Timeout", "HTTPError", "ProtocolError"})


@dataclass(frozen=True)
class Observation:
    """What the operator saw of the server's workload."""

    deployment: Mapping[str, Any] | None = None
    deploy_error: str | None = None


def _condition(
    previous: MCPServerStatus,
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> Condition:
    old = next((c for c in previous.conditions or () if c.type == type_), None)
    # lastTransitionTime moves only when the status flips, as Kubernetes conventions ask.
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def set_condition(
    conditions: list[Condition], type_: str, status: str, reason: str, message: str, generation: int, now: str
) -> list[Condition]:
    """``conditions`` with ``type_`` set (added or replaced in place); the transition time moves only on a flip."""
    previous = MCPServerStatus(conditions=conditions)
    updated = _condition(previous, type_, status, reason, message, generation, now)
    if any(c.type == type_ for c in conditions):
        return [updated if c.type == type_ else c for c in conditions]
    return [*conditions, updated]


def _external_readiness(previous: MCPServerStatus, endpoint: str) -> tuple[str, str, str, Phase]:
    """An external server is Ready once it answered tools/list, and not Ready while it does not answer."""
    synced = next((c for c in previous.conditions or () if c.type == TOOLS_SYNCED), None)
    if synced is None or synced.status == "Unknown":
        message = f"external server at {endpoint}; its reachability is confirmed when its tools are synced"
        return "Unknown", "AwaitingToolSync", message, Phase.PENDING
    if synced.reason in UNREACHABLE_REASONS:
        return "False", "EndpointUnreachable", synced.message or f"{endpoint} does not answer", Phase.DEGRADED
    return "True", "EndpointAnswers", f"external server at {endpoint} answers tools/list", Phase.READY


def _replica_counts(deployment: Mapping[str, Any], desired: int) -> tuple[int, int, bool]:
    status = deployment.get("status") or {}
    available = int(status.get("availableReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0)
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    rolled_out = observed >= generation and updated >= desired
    return available, updated, rolled_out


def _progress_failure(deployment: Mapping[str, Any]) -> str | None:
    for cond in (deployment.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return str(cond.get("message") or "the rollout exceeded its progress deadline")
    return None


def compute_status(
    owner: Owner,
    spec: MCPServerSpec,
    observation: Observation,
    previous: MCPServerStatus,
    now: str,
) -> MCPServerStatus:
    """The status the MCPServer should carry; conditions keep their transition times when unchanged."""
    gen = owner.generation
    keep = [c for c in previous.conditions or () if c.type not in (READY, DEPLOYED)]

    def cond(type_: str, status: str, reason: str, message: str) -> Condition:
        return _condition(previous, type_, status, reason, message, gen, now)

    desired = 1 if spec.replicas is None else spec.replicas
    base = previous.model_copy(update={"observed_generation": gen, "endpoint": service_endpoint(owner, spec)})

    if spec.endpoint is not None:
        ready_status, reason, message, phase = _external_readiness(previous, spec.endpoint)
        conditions = [
            cond(DEPLOYED, "True", "External", "nothing to deploy: the server runs outside the cluster"),
            cond(READY, ready_status, reason, message),
        ]
        return base.model_copy(
            update={
                "phase": phase,
                "conditions": conditions + keep,
                "replicas": None,
                "ready_replicas": None,
            }
        )

    if observation.deploy_error is not None:
        conditions = [
            cond(DEPLOYED, "False", "ApplyFailed", observation.deploy_error),
            cond(READY, "False", "NotDeployed", "the server's objects could not be applied"),
        ]
        return base.model_copy(update={"phase": Phase.DEGRADED, "conditions": conditions + keep})

    deployed = cond(DEPLOYED, "True", "Applied", "Deployment, Service, ServiceAccount, RBAC and config are applied")
    deployment = observation.deployment
    if deployment is None:
        ready = cond(READY, "False", "Deploying", "waiting for the Deployment to appear")
        phase, available = Phase.DEPLOYING, 0
    elif desired == 0:
        available = 0
        ready = cond(READY, "False", "ScaledToZero", "spec.replicas is 0: no server pod runs")
        phase = Phase.PENDING
    else:
        available, updated, rolled_out = _replica_counts(deployment, desired)
        failure = _progress_failure(deployment)
        if failure is not None:
            ready = cond(READY, "False", "ProgressDeadlineExceeded", failure)
            phase = Phase.DEGRADED if available else Phase.FAILED
        elif available >= desired and rolled_out:
            ready = cond(READY, "True", "Available", f"{available}/{desired} server pods available")
            phase = Phase.READY
        elif available >= desired:
            message = f"{available}/{desired} server pods available, {updated}/{desired} updated: rolling out"
            ready = cond(READY, "True", "RollingOut", message)
            phase = Phase.DEPLOYING
        elif available > 0:
            ready = cond(READY, "True", "PartiallyAvailable", f"{available}/{desired} server pods available")
            phase = Phase.DEGRADED if rolled_out else Phase.DEPLOYING
        else:
            ready = cond(READY, "False", "NoPodsAvailable", f"0/{desired} server pods available")
            phase = Phase.DEPLOYING
    return base.model_copy(
        update={
            "phase": phase,
            "conditions": [deployed, ready, *keep],
            "replicas": desired,
            "ready_replicas": available,
        }
    )


def failed_status(owner: Owner, previous: MCPServerStatus, reason: str, message: str, now: str) -> MCPServerStatus:
    """The status of a spec the operator cannot use."""
    keep = [c for c in previous.conditions or () if c.type not in (READY, DEPLOYED)]
    conditions = [
        _condition(previous, DEPLOYED, "False", reason, message, owner.generation, now),
        _condition(previous, READY, "False", reason, message, owner.generation, now),
    ]
    return previous.model_copy(
        update={
            "phase": Phase.FAILED,
            "conditions": conditions + keep,
            "observed_generation": owner.generation,
        }
    )


def _nested_patch(old: Any, new: Any) -> Any:
    """In a merge patch a nested object is merged: keys it no longer has must be sent as null to go away."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    return {**dict.fromkeys(set(old) - set(new)), **new}


def status_patch(new: MCPServerStatus, old_raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning the stored status into ``new``, or None when they already agree."""
    wire = new.to_wire()
    patch: dict[str, Any] = {
        key: _nested_patch(old_raw.get(key), value) for key, value in wire.items() if old_raw.get(key) != value
    }
    for key in ("phase", "conditions", "observedGeneration", "endpoint", "replicas", "readyReplicas"):
        if key not in wire and old_raw.get(key) is not None:
            patch[key] = None  # merge-patch deletion
    return patch or None
