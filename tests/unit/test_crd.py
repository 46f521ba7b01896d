"""The committed CRD: generated from the models, structural, documented, bounded, and its CEL rules line up."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mcpfleet_contracts.crd import build_crd, render_crd_yaml
from mcpfleet_contracts.mcpserver import NAME_RULE, CMDBConfig, MCPServerSpec, RBACSpec
from tests.unit.helpers import CRD_PATH, REPO_ROOT

Schema = dict[str, Any]

# Strings with a pattern but no maxLength, on purpose. Neither is read by a CEL rule (checked below), so
# they add nothing to a rule's cost estimate, and both patterns are anchored:
# checkInterval is a short duration (10s, 1m30s), a condition's status is True, False or Unknown.
PATTERN_WITHOUT_MAX_LENGTH = {"status.conditions[].status": "status"}


@functools.cache
def _crd() -> dict[str, Any]:
    """The committed CRD, parsed once (read-only: no test edits it)."""
    crd: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return crd


def _root() -> Schema:
    version: dict[str, Any] = _crd()["spec"]["versions"][0]
    root: Schema = version["schema"]["openAPIV3Schema"]
    return root


def walk(node: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """Every schema node below ``node`` (itself included) with a readable path."""
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")
    for index, option in enumerate(node.get("anyOf") or ()):
        yield from walk(option, f"{path}<anyOf {index}>")


def _all_nodes() -> list[tuple[str, Schema]]:
    return list(walk(_root(), ""))


def _node(path: str) -> Schema:
    nodes = dict(_all_nodes())
    assert path in nodes, f"{path} is not in the CRD schema"
    return nodes[path]


# ------------------------------------------------------------------ committed file


def test_committed_crd_matches_the_models() -> None:
    assert CRD_PATH.read_text() == render_crd_yaml(), (
        f"{CRD_PATH.name} is out of date with mcpfleet_contracts.mcpserver: run `make crds` and commit the result"
    )


def test_render_is_the_build_as_yaml() -> None:
    assert yaml.safe_load(render_crd_yaml()) == build_crd()


# --------------------------------------------------------------------- structural


def test_schema_has_no_json_schema_only_keywords() -> None:
    problems = []
    for path, node in _all_nodes():
        for key in ("$ref", "$defs", "title", "nullable", "definitions", "const", "oneOf", "allOf"):
            if key in node:
                problems.append(f"{path or '<root>'}: {key}")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false")
        if "default" in node and node["default"] is None:
            problems.append(f"{path}: default null")
    assert not problems, "not a structural schema: " + ", ".join(problems)


def test_any_of_only_for_int_or_string() -> None:
    offenders = [
        path for path, node in _all_nodes() if "anyOf" in node and node.get("x-kubernetes-int-or-string") is not True
    ]
    assert not offenders, f"anyOf outside x-kubernetes-int-or-string: {offenders}"


def test_int_or_string_nodes_offer_exactly_integer_and_string() -> None:
    int_or_string = [(path, node) for path, node in _all_nodes() if node.get("x-kubernetes-int-or-string")]
    assert int_or_string, "expected the resource quantities to be int-or-string"
    for path, node in int_or_string:
        assert "type" not in node, path
        assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path


def test_every_node_has_a_type() -> None:
    untyped = [path for path, node in _all_nodes() if "type" not in node and not node.get("x-kubernetes-int-or-string")]
    assert not untyped, f"schema nodes without a type: {untyped}"


def test_required_names_exist() -> None:
    for path, node in _all_nodes():
        missing = set(node.get("required") or ()) - set(node.get("properties") or {})
        assert not missing, f"{path} requires undeclared properties {missing}"


# ---------------------------------------------------------------- documentation


@pytest.mark.parametrize("section", ["spec", "status"])
def test_every_property_is_described(section: str) -> None:
    undocumented = []
    for path, node in walk(_node(section), section):
        for name, child in (node.get("properties") or {}).items():
            if not str(child.get("description") or "").strip():
                undocumented.append(f"{path}.{name}")
    assert not undocumented, f"properties without a description (kubectl explain shows nothing): {undocumented}"


def test_spec_and_status_are_described() -> None:
    assert _node("spec")["description"]
    assert _node("status")["description"]


# ---------------------------------------------------------------------- bounds


def test_every_array_has_max_items() -> None:
    unbounded = [path for path, node in _all_nodes() if node.get("type") == "array" and "maxItems" not in node]
    assert not unbounded, f"arrays without maxItems: {unbounded}"


def test_every_map_has_max_properties() -> None:
    unbounded = [
        path
        for path, node in _all_nodes()
        if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node
    ]
    assert not unbounded, f"maps without maxProperties: {unbounded}"


def test_every_string_with_a_pattern_has_max_length() -> None:
    unbounded = [
        path
        for path, node in _all_nodes()
        if node.get("type") == "string"
        and "pattern" in node
        and "maxLength" not in node
        and path not in PATTERN_WITHOUT_MAX_LENGTH
    ]
    assert not unbounded, f"patterned strings without maxLength: {unbounded}"


def test_pattern_without_max_length_exceptions_are_real_and_not_read_by_cel() -> None:
    rules = " ".join(entry["rule"] for _, entry in _validations())
    for path, field in PATTERN_WITHOUT_MAX_LENGTH.items():
        node = _node(path)
        assert "pattern" in node, f"{path} is listed as an exception but has no pattern"
        assert "maxLength" not in node, f"{path} has a maxLength now: drop it from the exceptions"
        assert f"self.{field}" not in rules, f"{path} is read by a CEL rule, so it needs a maxLength"


def test_int_fields_with_documented_ranges() -> None:
    assert (_node("spec.replicas")["minimum"], _node("spec.replicas")["maximum"]) == (0, 50)
    assert (_node("spec.port")["minimum"], _node("spec.port")["maximum"]) == (1024, 65535)


# ----------------------------------------------------------------------------- CEL


def _validations() -> list[tuple[str, dict[str, str]]]:
    return [(path, entry) for path, node in _all_nodes() for entry in node.get("x-kubernetes-validations") or ()]


def test_validations_are_exactly_the_model_rules() -> None:
    found = {
        path: node["x-kubernetes-validations"] for path, node in _all_nodes() if "x-kubernetes-validations" in node
    }
    expected = {
        "": [NAME_RULE.as_validation()],
        "spec": [rule.as_validation() for rule in MCPServerSpec.cel_rules],
        "spec.rbac": [rule.as_validation() for rule in RBACSpec.cel_rules],
        "spec.config.cmdb": [rule.as_validation() for rule in CMDBConfig.cel_rules],
    }
    assert found == expected


_HAS = re.compile(r"has\((self(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\)")
_REF = re.compile(r"self((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _field_refs(rule: str) -> list[str]:
    """Field paths a rule reads below self: ``self.env.all(...)`` reads ``.env`` (``all`` is a method).

    ``self.metadata.name`` is left out: the API server always gives CEL the object's name.
    """
    refs = []
    for match in _REF.finditer(rule):
        ref = match.group(1)
        if rule[match.end() : match.end() + 1] == "(":
            ref = ref.rsplit(".", 1)[0]
        if ref and not ref.startswith(".metadata"):
            refs.append(ref)
    return refs


def _resolve(node: Schema, dotted: str) -> Schema | None:
    """The schema node at ``.a.b`` below ``node``, or None when a segment is not declared."""
    for segment in dotted.strip(".").split("."):
        child = (node.get("properties") or {}).get(segment)
        if child is None:
            return None
        node = child
    return node


def _rule_cases() -> list[Any]:
    """One pytest param per CEL rule, named after where it sits and what it checks."""
    return [
        pytest.param(path, entry, id=f"{path}:{entry.get('fieldPath') or entry['reason']}:{index}")
        for index, (path, entry) in enumerate(_validations())
    ]


@pytest.mark.parametrize(("path", "entry"), _rule_cases())
def test_cel_rule_references_declared_fields(path: str, entry: dict[str, str]) -> None:
    """A rule naming an undeclared field does not compile, and the API server refuses the whole CRD."""
    node = _node(path)
    for ref in _field_refs(entry["rule"]):
        assert _resolve(node, ref) is not None, f"rule on {path} reads self{ref}, which the schema does not declare"
    if "fieldPath" in entry:
        assert _resolve(node, entry["fieldPath"]) is not None, f"fieldPath {entry['fieldPath']} is not in {path}"


@pytest.mark.parametrize(("path", "entry"), _rule_cases())
def test_cel_rule_strings_are_bounded(path: str, entry: dict[str, str]) -> None:
    node = _node(path)
    for ref in _field_refs(entry["rule"]):
        target = _resolve(node, ref)
        assert target is not None
        if target.get("type") == "string":
            assert "enum" in target or "maxLength" in target, f"self{ref} in a rule on {path} is an unbounded string"


@pytest.mark.parametrize(("path", "entry"), _rule_cases())
def test_cel_rule_reads_only_present_fields(path: str, entry: dict[str, str]) -> None:
    """has() targets have no default (else has() is always true); unguarded reads are required or defaulted."""
    node = _node(path)
    guarded = {ref.removeprefix("self") for ref in _HAS.findall(entry["rule"])}
    for ref in guarded:
        target = _resolve(node, ref)
        assert target is not None
        assert "default" not in target, f"has(self{ref}) in a rule on {path} is always true: the field has a default"
    unguarded = set(_field_refs(_HAS.sub("", entry["rule"]))) - guarded
    for ref in unguarded:
        parent, name = node, ""
        for segment in ref.strip(".").split("."):
            name = segment
            assert segment in (parent.get("required") or ()) or "default" in parent["properties"][segment], (
                f"rule on {path} reads self{ref} without has(), but {name} may be absent"
            )
            parent = parent["properties"][segment]


# ---------------------------------------------------------------- names and columns


def test_names_scope_and_subresources() -> None:
    spec = _crd()["spec"]
    assert spec["group"] == "mcpfleet.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "MCPServer"
    assert "mcps" in spec["names"]["shortNames"]
    assert "mcpfleet" in spec["names"]["categories"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = {column["name"]: column for column in _crd()["spec"]["versions"][0]["additionalPrinterColumns"]}
    for name in ("Type", "Ready", "Tools", "Endpoint", "Age"):
        assert name in columns, f"kubectl get mcps lacks the {name} column"
        assert "priority" not in columns[name], f"{name} is hidden behind -o wide"
    assert columns["Type"]["jsonPath"] == ".spec.type"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Tools"]["jsonPath"] == ".status.tools.count"
    assert columns["Tools"]["type"] == "integer"
    assert columns["Endpoint"]["jsonPath"] == ".status.endpoint"
    assert columns["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def test_printer_columns_point_into_the_schema() -> None:
    for column in _crd()["spec"]["versions"][0]["additionalPrinterColumns"]:
        path = column["jsonPath"].split("[")[0].lstrip(".")
        if path.startswith("metadata."):
            continue
        assert _resolve(_root(), path) is not None, f"column {column['name']} reads {path}, not in the schema"


def test_conditions_are_a_map_list_keyed_by_type() -> None:
    conditions = _node("status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


def test_docs_list_every_cross_field_rule_as_the_models_word_it() -> None:
    docs = (REPO_ROOT / "docs" / "mcpserver.md").read_text()
    for model in (MCPServerSpec, RBACSpec, CMDBConfig):
        for rule in model.cel_rules:
            assert rule.message.replace("|", "\\|") in docs, f"docs/mcpserver.md lacks: {rule.message}"
