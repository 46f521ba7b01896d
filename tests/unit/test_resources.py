"""Default resources fill only what the user leaves entirely unsaid."""

from __future__ import annotations

from typing import Any

from mcpfleet_contracts.mcpserver import parse_spec
from mcpfleet_operator.builders.children import build_deployment
from mcpfleet_operator.builders.model import BuildDefaults, Owner


def _resources(resources: dict[str, Any] | None) -> dict[str, Any]:
    raw: dict[str, Any] = {"type": "cmdb"}
    if resources is not None:
        raw["resources"] = resources
    deployment = build_deployment(Owner("db", "team-a", "uid"), parse_spec(raw), BuildDefaults(), None)
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    result: dict[str, Any] = container["resources"]
    return result


def test_no_resources_get_all_defaults() -> None:
    assert _resources(None) == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "50m", "memory": "64Mi"},
    }


def test_a_request_alone_gets_no_default_limit_that_it_could_exceed() -> None:
    resources = _resources({"requests": {"memory": "512Mi"}})
    assert resources["requests"] == {"cpu": "50m", "memory": "512Mi"}
    assert resources["limits"] == {"cpu": "500m"}


def test_user_values_win() -> None:
    resources = _resources({"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    assert resources == {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "1"}}
