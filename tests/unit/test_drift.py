"""drifted_paths / in_sync: only the fields the operator sets count, in the form the API server stores them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mcpfleet_contracts.mcpserver import parse_spec
from mcpfleet_operator.builders.children import build_children
from mcpfleet_operator.builders.drift import drifted_paths, in_sync, quantity_value
from mcpfleet_operator.builders.model import DEPLOYMENT, SERVICE, BuildDefaults, Owner


def _desired() -> dict[str, Any]:
    return {
        "metadata": {"name": "srv", "labels": {"app": "srv"}},
        "spec": {
            "replicas": 2,
            "ports": [{"name": "mcp", "port": 8080}],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
        },
    }


def test_equal_objects_are_in_sync() -> None:
    assert drifted_paths(_desired(), _desired()) == []
    assert in_sync(_desired(), _desired())


def test_fields_the_api_server_adds_are_not_drift() -> None:
    live = _desired()
    live["metadata"] |= {"uid": "1234", "resourceVersion": "7", "labels": {"app": "srv", "added-by": "someone"}}
    live["spec"]["ports"][0]["protocol"] = "TCP"
    live["spec"]["clusterIP"] = "10.0.0.1"
    assert drifted_paths(_desired(), live) == []


def test_changed_scalar() -> None:
    live = _desired()
    live["spec"]["replicas"] = 3
    assert drifted_paths(_desired(), live) == [".spec.replicas"]
    assert not in_sync(_desired(), live)


def test_changed_scalar_inside_a_list() -> None:
    live = _desired()
    live["spec"]["ports"][0]["port"] = 9090
    assert drifted_paths(_desired(), live) == [".spec.ports[0].port"]


def test_missing_key() -> None:
    live = _desired()
    del live["metadata"]["labels"]
    assert drifted_paths(_desired(), live) == [".metadata.labels"]
    live["metadata"]["labels"] = {"other": "x"}
    assert drifted_paths(_desired(), live) == [".metadata.labels.app"]


def test_missing_nested_object() -> None:
    live = _desired()
    del live["spec"]["resources"]
    assert drifted_paths(_desired(), live) == [".spec.resources"]
    live["spec"]["resources"] = {"limits": {}}
    assert drifted_paths(_desired(), live) == [".spec.resources.limits.cpu", ".spec.resources.limits.memory"]


def test_object_replaced_by_a_scalar() -> None:
    live = _desired()
    live["spec"]["resources"] = "none"
    assert drifted_paths(_desired(), live) == [".spec.resources"]


@pytest.mark.parametrize("ports", [[], [{"name": "mcp", "port": 8080}, {"name": "extra", "port": 9090}]])
def test_list_length_change(ports: list[dict[str, Any]]) -> None:
    live = _desired()
    live["spec"]["ports"] = ports
    assert drifted_paths(_desired(), live) == [".spec.ports"]


def test_list_replaced_by_a_scalar() -> None:
    live = _desired()
    live["spec"]["ports"] = None
    assert drifted_paths(_desired(), live) == [".spec.ports"]


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        ("0.5", "500m"),
        ("500m", "0.5"),
        ("1Gi", "1073741824"),
        ("1Gi", 1073741824),
        ("1024Mi", "1Gi"),
        ("1", 1),
        ("1000m", "1"),
        ("2k", "2000"),
        ("1e3", "1k"),
        ("129e6", "129M"),
    ],
)
def test_equivalent_quantities_are_in_sync(desired: str, live: str | int) -> None:
    assert drifted_paths({"cpu": desired}, {"cpu": live}) == []


@pytest.mark.parametrize(
    ("desired", "live"),
    [("500m", "501m"), ("1Gi", "1G"), ("64Mi", "64M"), ("1", "2"), ("1Ki", "1k")],
)
def test_different_quantities_drift(desired: str, live: str) -> None:
    assert drifted_paths({"cpu": desired}, {"cpu": live}) == [".cpu"]


def test_non_quantity_strings_compare_exactly() -> None:
    assert drifted_paths({"image": "a:1"}, {"image": "a:2"}) == [".image"]
    assert drifted_paths({"port": "mcp"}, {"port": "mcp"}) == []


def test_booleans_are_not_quantities() -> None:
    assert drifted_paths({"readOnly": False}, {"readOnly": None}) == [".readOnly"]
    assert drifted_paths({"readOnly": False}, {}) == [".readOnly"]
    assert drifted_paths({"readOnly": True}, {"readOnly": "true"}) == [".readOnly"]


def test_empty_desired_list_matches_missing_or_empty_live() -> None:
    assert drifted_paths({"spec": {"args": []}}, {"spec": {}}) == []
    assert drifted_paths({"spec": {"args": []}}, {"spec": {"args": []}}) == []
    assert drifted_paths({"spec": {"args": []}}, {"spec": {"args": None}}) == []


def test_empty_desired_list_against_a_non_empty_live_list_drifts() -> None:
    assert drifted_paths({"spec": {"args": []}}, {"spec": {"args": ["--debug"]}}) == [".spec.args"]


def test_empty_desired_object_matches_missing_live() -> None:
    assert drifted_paths({"spec": {"namespaceSelector": {}}}, {"spec": {}}) == []


def test_top_level_status_is_ignored() -> None:
    desired = {**_desired(), "status": {"phase": "Ready"}}
    live = {**_desired(), "status": {"phase": "Failed"}}
    assert drifted_paths(desired, live) == []


def test_nested_status_key_is_not_ignored() -> None:
    desired = {"spec": {"status": "on"}}
    assert drifted_paths(desired, {"spec": {"status": "off"}}) == [".spec.status"]


def test_every_difference_is_listed() -> None:
    live = _desired()
    live["spec"]["replicas"] = 1
    live["spec"]["resources"]["limits"]["memory"] = "128Mi"
    del live["metadata"]["name"]
    assert drifted_paths(_desired(), live) == [".metadata.name", ".spec.replicas", ".spec.resources.limits.memory"]


def test_whole_object_is_not_a_dict() -> None:
    assert drifted_paths({"a": 1}, None) == ["."]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("64Mi", Decimal(64 * 2**20)),
        ("1e3", Decimal(1000)),
        ("2", Decimal(2)),
        (3, Decimal(3)),
        ("1.5Gi", Decimal("1.5") * 2**30),
    ],
)
def test_quantity_value(text: str | int, value: Decimal) -> None:
    assert quantity_value(text) == value


@pytest.mark.parametrize("text", ["mcp", "1.2.3", "", "10 Mi", "5mi"])
def test_quantity_value_of_a_non_quantity(text: str) -> None:
    assert quantity_value(text) is None


def test_built_manifests_are_in_sync_with_their_canonicalised_live_form() -> None:
    """What the API server gives back (quantities canonicalised, defaults added) is not drift."""
    spec = parse_spec(
        {"type": "k8s-ops", "resources": {"requests": {"cpu": "0.1", "memory": "134217728"}, "limits": {"cpu": 1}}}
    )
    children = build_children(Owner("srv", "team-a", "uid-srv"), spec, BuildDefaults())
    deployment, service = children[DEPLOYMENT], children[SERVICE]
    assert deployment is not None
    assert service is not None

    live = {**deployment, "metadata": {**deployment["metadata"], "uid": "u", "generation": 4}}
    live["spec"] = {**deployment["spec"], "progressDeadlineSeconds": 600}
    pod_spec = dict(deployment["spec"]["template"]["spec"])
    server = dict(pod_spec["containers"][0])
    server["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}
    server["terminationMessagePath"] = "/dev/termination-log"
    pod_spec["containers"] = [server]
    pod_spec["dnsPolicy"] = "ClusterFirst"
    live["spec"]["template"] = {**deployment["spec"]["template"], "spec": pod_spec}
    live["status"] = {"availableReplicas": 1}
    assert in_sync(deployment, live)

    server["image"] = "someone/else:latest"
    assert drifted_paths(deployment, live) == [".spec.template.spec.containers[0].image"]
