"""The Helm chart's files that need no Helm: values documented and closed by the schema, the copies it carries
(CRD, operator RBAC, empty catalog) equal to their sources.

Rendering, `helm lint` and installing need the helm binary from the toolchain: tests/e2e/test_helm.py.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mcpfleet_contracts.catalog import Catalog
from mcpfleet_operator.builders.operator_rbac import operator_rbac
from mcpfleet_operator.builders.report_policy import report_policy
from tests.unit.helpers import CRD_PATH, REPO_ROOT

CHART = REPO_ROOT / "charts" / "mcpfleet"
CI_FILES = sorted((CHART / "ci").glob("*.yaml"))
_KEY = re.compile(r"^(?P<indent>\s*)(?:-\s+)?(?P<key>[A-Za-z0-9_.\-/\"']+):(?:\s|$)")
_BLOCK_SCALAR = re.compile(r":\s*[|>][-+0-9]*\s*(#.*)?$")


def uncommented_keys(text: str) -> list[str]:
    """Lines holding a mapping key whose previous non-blank line is not a comment (block scalars skipped)."""
    missing: list[str] = []
    previous = ""
    block_indent: int | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if block_indent is not None and indent > block_indent:
            continue  # the text of a block scalar, not keys
        block_indent = None
        if _KEY.match(line) and not previous.startswith("#"):
            missing.append(f"{number}: {stripped}")
        if _KEY.match(line) and _BLOCK_SCALAR.search(line):
            block_indent = indent
        previous = stripped
    return missing


def values() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return document


def schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return document


def coalesce(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of a values file over values.yaml: maps merge, anything else replaces, null removes."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = value
    return merged


def with_value(path: str, value: Any) -> dict[str, Any]:
    """values.yaml with one dotted path set, as `helm --set path=value` would."""
    document = values()
    *parents, leaf = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return document


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(document)]


def object_schemas(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path, node
        for key, child in node.items():
            yield from object_schemas(child, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from object_schemas(child, f"{path}[{index}]")


# -- values.yaml and its schema ----------------------------------------------------------------------------


def test_every_key_of_values_yaml_has_a_comment_above_it() -> None:
    missing = uncommented_keys((CHART / "values.yaml").read_text())
    assert not missing, "values.yaml keys without a comment line above them:\n" + "\n".join(missing)


def test_the_comment_check_finds_an_uncommented_key_and_ignores_block_scalar_text() -> None:
    text = "# -- documented\na: 1\nb:\n  # -- documented\n  c: |\n    d: not a key\n  e: 2\n"
    assert uncommented_keys(text) == ["3: b:", "7: e: 2"]


def test_the_schema_is_valid_draft_07() -> None:
    document = schema()
    assert document["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(document)


@pytest.mark.parametrize("ci_file", CI_FILES, ids=lambda path: path.name)
def test_values_yaml_with_each_ci_file_satisfies_the_schema(ci_file: Path) -> None:
    override = yaml.safe_load(ci_file.read_text()) or {}
    assert schema_errors(coalesce(values(), override)) == []


def test_there_is_a_ci_file_for_each_main_combination() -> None:
    assert {path.name for path in CI_FILES} >= {
        "default-values.yaml",
        "bundled-redis-values.yaml",
        "external-redis-consul-values.yaml",
        "full-values.yaml",
        "no-crds-values.yaml",
    }


@pytest.mark.parametrize(
    "path",
    [
        "bogus",
        "operator.bogus",
        "gateway.ingress.bogus",
        "gateway.auth.bootstrapApiKey.bogus",
        "redis.bundled.bogus",
        "cleanup.bogus",
    ],
)
def test_the_schema_rejects_a_key_the_chart_does_not_know(path: str) -> None:
    errors = schema_errors(with_value(path, 1))
    assert any("'bogus' was unexpected" in error for error in errors), errors


@pytest.mark.parametrize(
    "path",
    ["operator.resources.requests", "gateway.affinity.nodeAffinity", "gateway.config.rate_limits", "commonLabels.team"],
)
def test_kubernetes_objects_and_the_gateway_config_pass_through_open(path: str) -> None:
    assert schema_errors(with_value(path, {"anything": "x"} if not path.endswith("team") else "x")) == []


def test_a_wrong_type_names_the_key() -> None:
    assert any(error.startswith("gateway.replicas:") for error in schema_errors(with_value("gateway.replicas", "two")))


@pytest.mark.parametrize(
    ("path", "value"), [("cleanup.timeoutSeconds", 5), ("cleanup.timeoutSeconds", "120"), ("cleanup.backoffLimit", -1)]
)
def test_the_schema_refuses_a_cleanup_wait_it_cannot_honour(path: str, value: Any) -> None:
    assert any(error.startswith(f"{path}:") for error in schema_errors(with_value(path, value)))


def test_the_cleanup_hook_is_on_by_default_and_fits_in_helm_uninstalls_default_timeout() -> None:
    """The Job's deadline is the command's wait plus a minute; Helm waits 5 minutes for a hook by default."""
    cleanup = values()["cleanup"]
    assert cleanup["enabled"] is True
    assert cleanup["timeoutSeconds"] + 60 < 300
    assert {"cpu", "memory"} <= set(cleanup["resources"]["requests"]) & set(cleanup["resources"]["limits"])


def test_only_the_crd_keeps_itself_on_uninstall() -> None:
    """`helm.sh/resource-policy: keep` on anything else would outlive `helm uninstall` (docs/helm.md)."""
    keeping = sorted(
        path.name
        for path in (CHART / "templates").rglob("*")
        if path.is_file() and "resource-policy" in path.read_text()
    )
    assert keeping == ["crd.yaml"]


def test_every_object_the_chart_owns_closes_its_schema() -> None:
    """An object schema that lists properties is the chart's own; only Kubernetes pass-throughs stay open."""
    open_owned = [
        path
        for path, node in object_schemas(schema())
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert open_owned == []


def test_every_key_of_values_yaml_is_in_the_schema() -> None:
    def unknown(document: dict[str, Any], node: dict[str, Any], path: str) -> Iterator[str]:
        properties = node.get("properties")
        if properties is None:
            return
        for key, value in document.items():
            if key not in properties:
                yield f"{path}{key}"
            elif isinstance(value, dict):
                yield from unknown(value, properties[key], f"{path}{key}.")

    assert list(unknown(values(), schema(), "")) == []


# -- the copies the chart carries ----------------------------------------------------------------------------


def test_the_chart_copy_of_the_crd_is_the_one_in_crds() -> None:
    copied = CHART / "files" / "crds" / CRD_PATH.name
    assert copied.read_bytes() == CRD_PATH.read_bytes(), (
        f"charts/mcpfleet/files/crds/{CRD_PATH.name} differs from crds/: cp {CRD_PATH.relative_to(REPO_ROOT)} "
        f"{copied.relative_to(REPO_ROOT)}"
    )


def test_the_chart_copy_of_the_operator_rbac_is_what_rbac_print_writes() -> None:
    """The chart reads the ClusterRole's rules and the admission policy from this file."""
    printed = [*operator_rbac("mcpfleet-system"), *report_policy()]
    copied = list(yaml.safe_load_all((CHART / "files" / "operator-rbac.yaml").read_text()))
    regenerate = "mcpfleet rbac print > charts/mcpfleet/files/operator-rbac.yaml"
    assert copied == printed, f"charts/mcpfleet/files/operator-rbac.yaml is stale: {regenerate}"


def test_the_bootstrap_catalog_is_a_valid_empty_catalog() -> None:
    catalog = Catalog.model_validate_json((CHART / "files" / "empty-catalog.json").read_text())
    assert (catalog.revision, catalog.servers) == (0, ())


def test_the_app_version_is_the_project_version() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["appVersion"]) == ("v2", project)


@pytest.mark.parametrize("dashboard", sorted((CHART / "dashboards").glob("*.json")), ids=lambda path: path.name)
def test_each_dashboard_file_is_a_json_object(dashboard: Path) -> None:
    """The chart ships each file as a ConfigMap key the Grafana sidecar loads as one dashboard."""
    assert isinstance(json.loads(dashboard.read_text()), dict)
