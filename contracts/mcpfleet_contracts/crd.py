"""Generate the MCPServer CustomResourceDefinition from the typed models.

Pydantic emits JSON Schema (draft 2020-12); the API server wants a
*structural* OpenAPI v3 schema. The translation inlines ``$ref``s, turns
``X | None`` into an optional ``X``, drops titles, ``null`` defaults and
``additionalProperties: false`` (the API server prunes unknown fields
instead), and keeps descriptions, defaults, enums, bounds, patterns and the
``x-kubernetes-*`` extensions.
"""

from __future__ import annotations

from typing import Any

import yaml

from mcpfleet_contracts.mcpserver import (
    API_VERSION,
    CATEGORIES,
    GROUP,
    KIND,
    NAME_RULE,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    MCPServerSpec,
    MCPServerStatus,
)

CRD_NAME = f"{PLURAL}.{GROUP}"

_DROPPED_KEYS = frozenset({"title", "$defs"})
_KEY_ORDER = {"description": 0, "type": 1, "required": 2}

PRINTER_COLUMNS: tuple[dict[str, Any], ...] = (
    {"name": "Type", "type": "string", "jsonPath": ".spec.type", "description": "Server type."},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the server is ready to serve tools.",
    },
    {
        "name": "Tools",
        "type": "integer",
        "jsonPath": ".status.tools.count",
        "description": "Cataloged tools.",
    },
    {
        "name": "Endpoint",
        "type": "string",
        "jsonPath": ".status.endpoint",
        "description": "Where clients connect.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.phase",
        "priority": 1,
        "description": "Summary.",
    },
    {
        "name": "Prefix",
        "type": "string",
        "jsonPath": ".spec.toolPrefix",
        "priority": 1,
        "description": "Tool prefix.",
    },
)


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node

    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = _resolve(defs[ref.rsplit("/", 1)[-1]], defs)
        # Sibling keys of a $ref (a field's description, default) win over the referenced class's.
        node = {**target, **node}

    any_of = node.get("anyOf")
    if any_of is not None and not node.get("x-kubernetes-int-or-string"):
        non_null = [option for option in any_of if option.get("type") != "null"]
        if len(non_null) == 1 and len(non_null) < len(any_of):
            node.pop("anyOf")
            node = {**_resolve(non_null[0], defs), **node}

    if node.get("default", ...) is None:
        node.pop("default")
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")

    # description and type first: the generated YAML reads like hand-written CRDs.
    ordered = sorted(node, key=lambda key: _KEY_ORDER.get(key, len(_KEY_ORDER)))
    return {key: _resolve(node[key], defs) for key in ordered if key not in _DROPPED_KEYS}


def structural_schema(model: type[Any]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a CRD model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    resolved: dict[str, Any] = _resolve(raw, raw.get("$defs", {}))
    return resolved


def openapi_schema() -> dict[str, Any]:
    """The whole object's schema: apiVersion, kind, metadata, spec and status."""
    return {
        "type": "object",
        "description": (
            "MCPServer runs an MCP server in the cluster (or catalogs one that runs elsewhere) and "
            "publishes its tools through the mcpfleet gateway."
        ),
        "required": ["spec"],
        "x-kubernetes-validations": [NAME_RULE.as_validation()],
        "properties": {
            "apiVersion": {"type": "string", "description": "mcpfleet.io/v1alpha1"},
            "kind": {"type": "string", "description": "MCPServer"},
            "metadata": {"type": "object"},
            "spec": structural_schema(MCPServerSpec),
            "status": structural_schema(MCPServerStatus),
        },
    }


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition manifest."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "mcpfleet"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    """The CRD as the YAML document committed under ``crds/``."""
    header = (
        "# Generated by `mcpfleet crd print` from mcpfleet_contracts.mcpserver; do not edit by hand.\n"
        f"# Regenerate with `make crds`. Serves {API_VERSION}, kind {KIND}.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=110)
