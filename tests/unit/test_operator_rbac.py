"""The operator's own ClusterRole: every kind it manages, the verbs it uses, nothing else."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from mcpfleet_cli.main import app
from mcpfleet_operator.builders.model import CHILD_KINDS, MCPSERVER
from mcpfleet_operator.builders.operator_rbac import CHILD_VERBS, OPERATOR_NAME, operator_rbac, operator_rules
from mcpfleet_operator.builders.report_policy import report_policy


def _allowed(group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in operator_rules():
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_every_child_kind_gets_exactly_the_verbs_reconciliation_uses() -> None:
    for kind in CHILD_KINDS:
        assert _allowed(kind.group, kind.plural) >= set(CHILD_VERBS), kind.plural
    assert "update" not in _allowed("apps", "deployments"), "the operator writes by server-side apply (patch)"


def test_mcpservers_and_their_status() -> None:
    assert _allowed(MCPSERVER.group, MCPSERVER.plural) == {"get", "list", "watch", "patch"}
    assert _allowed(MCPSERVER.group, "mcpservers/status") == {"get", "patch"}


def test_no_wildcards_and_nothing_the_operator_does_not_touch() -> None:
    for rule in operator_rules():
        assert "*" not in rule["verbs"]
        assert "*" not in rule["resources"]
        assert "*" not in rule["apiGroups"]
    for resource in ("secrets", "nodes", "pods/exec", "pods/log"):
        assert not _allowed("", resource), f"the operator has no business with {resource}"
    assert _allowed("", "pods") == {"get", "list", "watch"}, "server Pods are only read (their tool report and IP)"


def test_only_the_catalog_is_replaced_with_update() -> None:
    updatable = {(group, resource) for rule in operator_rules() if "update" in rule["verbs"]
                 for group in rule["apiGroups"] for resource in rule["resources"]}  # fmt: skip
    assert updatable == {("", "configmaps")}


def test_rbac_objects_bind_the_role_to_the_service_account() -> None:
    account, role, binding = operator_rbac("ops", "op")
    assert (account["kind"], account["metadata"]) == (
        "ServiceAccount",
        {**account["metadata"], "name": "op", "namespace": "ops"},
    )
    assert role["metadata"]["name"] == OPERATOR_NAME
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "op", "namespace": "ops"}]


def test_cli_prints_the_rbac_as_yaml() -> None:
    result = CliRunner().invoke(app, ["rbac", "print", "-n", "platform"])
    assert result.exit_code == 0, result.output
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.output)]
    assert kinds == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]


def test_the_report_policy_binds_every_mcpserver_of_the_pods_namespace_as_a_param() -> None:
    policy, binding = report_policy()
    assert policy["spec"]["paramKind"] == {"apiVersion": "mcpfleet.io/v1alpha1", "kind": "MCPServer"}
    assert policy["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (["pods"], ["UPDATE"]), "the report is a patch of the Pod"
    (validation,) = policy["spec"]["validations"]
    for key in ("mcpfleet.io/tools-digest", "mcpfleet.io/tools", "mcpfleet.io/server"):
        assert key in validation["expression"]
    assert "authentication.kubernetes.io/pod-name" in validation["expression"], "pod-bound tokens: that very Pod"
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
