"""The catalog contract's risk model and the gateway's routing table built on it."""

from __future__ import annotations

import datetime
from typing import Any

import mcp_types as types
import pytest
from pydantic import ValidationError

from mcpfleet_contracts.catalog import (
    Catalog,
    CatalogTool,
    catalog_schema,
    infer_risk,
    name_verb,
    required_permission,
    schema_digest,
)
from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_gateway.config import ToolOverride
from mcpfleet_gateway.table import ArgumentError, Route, ToolTable, entry_for, with_overrides
from mcpfleet_gateway.upstreams.base import ClientInput


@pytest.mark.parametrize(
    ("name", "annotations", "overrides", "risk"),
    [
        ("get_pods", None, None, Risk.SAFE),
        ("listPods", None, None, Risk.SAFE),
        ("query-metrics", None, None, Risk.SAFE),
        ("scale_deployment", None, None, Risk.MEDIUM),
        ("delete_pod", None, None, Risk.HIGH),
        ("restart_deployment", None, None, Risk.HIGH),
        ("frobnicate", None, None, Risk.MEDIUM),  # unknown verbs are not safe
        ("frobnicate", {"readOnlyHint": True}, None, Risk.SAFE),
        ("get_pods", {"destructiveHint": True}, None, Risk.HIGH),
        ("delete_pod", None, {"delete_pod": Risk.MEDIUM}, Risk.MEDIUM),
        ("get_secret", None, {"get_secret*": Risk.HIGH}, Risk.HIGH),
    ],
)
def test_risk_inference_order(
    name: str, annotations: dict[str, Any] | None, overrides: dict[str, Risk] | None, risk: Risk
) -> None:
    assert infer_risk(name, annotations, overrides) is risk


def test_permissions_fold_reading_verbs() -> None:
    assert name_verb("scaleDeployment") == "scale"
    assert required_permission("k8s", "list_pods") == "k8s:get"
    assert required_permission("k8s", "describe_pod") == "k8s:get"
    assert required_permission("monitoring", "query_metrics") == "monitoring:query"
    assert required_permission("k8s", "scale_deployment") == "k8s:scale"


def test_only_safe_tools_may_be_cached() -> None:
    with pytest.raises(ValidationError, match="only SAFE tools may be cached"):
        CatalogTool(name="k8s:scale", upstream_name="scale", risk=Risk.MEDIUM, timeout_seconds=5, cache_ttl_seconds=3)


def test_catalog_round_trips_with_its_wire_names() -> None:
    catalog = Catalog(revision=3, generated_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), servers=())
    text = catalog.dump()
    assert '"apiVersion": "mcpfleet.io/catalog/v1"' in text
    assert '"generatedAt"' in text
    assert Catalog.model_validate_json(text) == catalog
    assert "servers" in catalog_schema()["properties"]


def _tool(name: str, schema: dict[str, Any] | None = None, **annotations: Any) -> types.Tool:
    return types.Tool(
        name=name,
        input_schema=schema or {"type": "object"},
        annotations=types.ToolAnnotations(**annotations) if annotations else None,
    )


class _Backend:
    name = "b"

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        retry: bool = False,
        client_input: ClientInput | None = None,
    ) -> types.CallToolResult:
        raise AssertionError("not called in unit tests")


def test_static_upstream_entries_follow_the_same_rules_and_config_overrides() -> None:
    entry = entry_for("k8s", _tool("get_pods"), separator=":", overrides={})
    assert (entry.name, entry.risk, entry.permissions, entry.timeout_seconds) == (
        "k8s:get_pods",
        Risk.SAFE,
        ("k8s:get",),
        30.0,
    )
    assert entry.schema_digest == schema_digest(None, {"type": "object"})
    overrides = {"k8s:get_*": ToolOverride(cache_ttl_seconds=5), "k8s:get_secret": ToolOverride(risk=Risk.HIGH)}
    assert entry_for("k8s", _tool("get_pods"), separator=":", overrides=overrides).cache_ttl_seconds == 5
    secret = entry_for("k8s", _tool("get_secret"), separator=":", overrides=overrides)
    assert (secret.risk, secret.cache_ttl_seconds) == (Risk.HIGH, 0.0)  # an exact name beats the glob
    assert entry_for("x", _tool("zap", readOnlyHint=True), separator="__", overrides={}).name == "x__zap"
    stricter = with_overrides(entry, {"k8s:get_pods": ToolOverride(risk=Risk.MEDIUM, cache_ttl_seconds=9)})
    assert (stricter.risk, stricter.cache_ttl_seconds) == (Risk.MEDIUM, 0.0)


def test_collisions_keep_the_first_and_are_reported() -> None:
    table = ToolTable()
    first = Route(entry_for("k8s", _tool("get_pods"), separator=":", overrides={}), _Backend(), "one")
    second = Route(entry_for("k8s", _tool("get_pods"), separator=":", overrides={}), _Backend(), "two")
    table.add_tool(first)
    table.add_tool(second)
    assert table.tools["k8s:get_pods"] is first
    assert table.problems == ["tool k8s:get_pods of two collides with one's; left out"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({}, "namespace"),
        ({"namespace": 3}, "namespace"),
        ({"namespace": "a", "replicas": -1}, "replicas"),
        ({"namespace": "a", "labels": {"app": 1}}, "labels.app"),
        ({"namespace": "a", "extra": True}, "extra"),
    ],
)
def test_argument_errors_name_the_field(arguments: dict[str, Any], field: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "namespace": {"type": "string"},
            "replicas": {"type": "integer", "minimum": 0},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["namespace"],
        "additionalProperties": False,
    }
    route = Route(entry_for("k8s", _tool("scale_deployment", schema), separator=":", overrides={}), _Backend(), "x")
    with pytest.raises(ArgumentError) as invalid:
        route.validate(arguments)
    assert invalid.value.field == field
    route.validate({"namespace": "a", "replicas": 2})
