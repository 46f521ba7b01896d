"""The admission policy that confines a server's tool report to what contract 2 needs.

RBAC cannot name a Pod whose name is generated, so a built-in server's Role grants ``get`` and ``patch`` on
every Pod of its namespace. This ValidatingAdmissionPolicy narrows the patch to exactly the report: a request
made by the ServiceAccount of an MCPServer (the MCPServers of the Pod's namespace are the policy's params) may
only change the two report annotations, only on a Pod of that server, and — when the token is bound to a Pod,
as in-cluster tokens are — only on that very Pod. Everyone else is not affected.
"""

from __future__ import annotations

from typing import Any

from mcpfleet_contracts.mcpserver import API_VERSION, KIND
from mcpfleet_contracts.report import TOOLS_ANNOTATION, TOOLS_DIGEST_ANNOTATION
from mcpfleet_operator.builders.model import LABEL_SERVER

POLICY_NAME = "mcpfleet-tool-report"
_POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
_REPORT_KEYS = f"['{TOOLS_DIGEST_ANNOTATION}', '{TOOLS_ANNOTATION}']"


def _map(obj: str, field: str) -> str:
    """A CEL expression for a metadata map that may be absent (absent reads as empty)."""
    return f"(has({obj}.metadata.{field}) ? {obj}.metadata.{field} : {{}})"


def _others_unchanged(field: str) -> str:
    """Every key of the map but the report's keeps its value, none is added and none removed."""
    new, old = _map("object", field), _map("oldObject", field)
    keep = f"!(k in {_REPORT_KEYS})"
    return (
        f"{new}.all(k, {keep} ? (k in {old} && {old}[k] == {new}[k]) : true) && "
        f"{old}.all(k, {keep} ? k in {new} : true)"
    )


def _same(field: str) -> str:
    return (
        f"(has(object.metadata.{field}) == has(oldObject.metadata.{field})) && "
        f"(!has(object.metadata.{field}) || object.metadata.{field} == oldObject.metadata.{field})"
    )


# Is the requester this param's ServiceAccount? (The server's ServiceAccount is named after the MCPServer.)
_BY_SERVER = "request.userInfo.username == 'system:serviceaccount:' + request.namespace + ':' + params.metadata.name"
_OWN_POD = (
    f"'{LABEL_SERVER}' in {_map('oldObject', 'labels')} && "
    f"oldObject.metadata.labels['{LABEL_SERVER}'] == params.metadata.name && "
    f"(!('{_POD_NAME_EXTRA}' in request.userInfo.extra) || "
    f"request.userInfo.extra['{_POD_NAME_EXTRA}'][0] == object.metadata.name)"
)
_ONLY_THE_REPORT = " && ".join(
    [
        "object.spec == oldObject.spec",
        _same("ownerReferences"),
        _same("finalizers"),
        _others_unchanged("labels"),
        _others_unchanged("annotations"),
    ]
)


def report_policy() -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy and its binding (cluster-scoped; installed with the operator)."""
    group, version = API_VERSION.split("/")
    labels = {"app.kubernetes.io/name": "mcpfleet-operator", "app.kubernetes.io/part-of": "mcpfleet"}
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME, "labels": labels},
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": f"{group}/{version}", "kind": KIND},
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods"]}
                ]
            },
            # Cheap first: requests by anything but a ServiceAccount are never this policy's business.
            "matchConditions": [
                {
                    "name": "by-a-service-account",
                    "expression": "request.userInfo.username.startsWith('system:serviceaccount:')",
                }
            ],
            "validations": [
                {
                    "expression": f"!({_BY_SERVER}) || ({_OWN_POD} && {_ONLY_THE_REPORT})",
                    "messageExpression": (
                        "'the ServiceAccount of MCPServer ' + params.metadata.name + ' may only write the tool "
                        f"report annotations ({TOOLS_DIGEST_ANNOTATION}, {TOOLS_ANNOTATION}) on its own Pod'"
                    ),
                    "reason": "Forbidden",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME, "labels": labels},
        "spec": {
            "policyName": POLICY_NAME,
            "validationActions": ["Deny"],
            # Every MCPServer of the Pod's namespace is a param; a namespace without one has nothing to check.
            "paramRef": {"selector": {}, "parameterNotFoundAction": "Allow"},
        },
    }
    return [policy, binding]


__all__ = ["POLICY_NAME", "report_policy"]
