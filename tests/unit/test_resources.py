"""Default resources fill only what the user leaves unsaid; names the builder uses are reserved from users."""

from __future__ import annotations

from typing import Any

from mcpfleet_contracts.mcpserver import RESERVED_ENV, RESERVED_MOUNTS, parse_spec
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


def test_every_variable_the_builder_sets_is_reserved_from_users() -> None:
    """spec.env is refused for RESERVED_ENV; a variable the builder adds but the rule misses would be shadowable."""
    deployment = build_deployment(Owner("db", "team-a", "uid"), parse_spec({"type": "cmdb"}), BuildDefaults(), None)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {var["name"] for var in container["env"]} <= set(RESERVED_ENV)


def test_every_directory_the_builder_mounts_is_reserved_from_secret_refs() -> None:
    deployment = build_deployment(Owner("db", "team-a", "uid"), parse_spec({"type": "cmdb"}), BuildDefaults(), None)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {mount["mountPath"] for mount in container["volumeMounts"]} <= set(RESERVED_MOUNTS)
