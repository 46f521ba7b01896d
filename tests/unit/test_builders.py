"""build_children against golden manifests, plus the properties every manifest must have.

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest tests/unit`` and
review the diff like any other change: it is exactly what the operator will apply.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpfleet_contracts.mcpserver import MCPServerSpec, parse_spec
from mcpfleet_operator.builders.children import REPORT_RULE, Children, build_children, service_endpoint
from mcpfleet_operator.builders.model import (
    ANNOTATION_CONFIG_HASH,
    CHILD_KINDS,
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    CONFIG_MAP,
    DEPLOYMENT,
    LABEL_OWNER_UID,
    NETWORK_POLICY,
    ROLE,
    ROLE_BINDING,
    SERVICE,
    SERVICE_ACCOUNT,
    BuildDefaults,
    Manifest,
    Owner,
    ResourceKind,
    is_owned_by,
    owner_of,
)
from tests.unit.helpers import SAMPLE_FILES, load_sample

GOLDEN_DIR = Path(__file__).parent / "golden"
NAMESPACE = "team-a"


@dataclass(frozen=True)
class Case:
    name: str
    """The golden file's name."""
    server: str
    """The MCPServer's metadata.name."""
    spec: dict[str, Any]

    @property
    def owner(self) -> Owner:
        return Owner(self.server, NAMESPACE, f"uid-{self.server}", 1)

    @property
    def parsed(self) -> MCPServerSpec:
        return parse_spec(self.spec)


def _sample_case(stem: str) -> Case:
    document = load_sample(stem)
    return Case(stem, document["metadata"]["name"], document["spec"])


CASES: tuple[Case, ...] = (
    *(_sample_case(stem) for stem in SAMPLE_FILES),
    Case(
        "stdio-custom",
        "stdio-tool",
        {"type": "custom", "image": "registry.example.com/acme/stdio-mcp:0.3.0", "transport": "stdio"},
    ),
    Case("scaled-to-zero", "k8s-ops-paused", {"type": "k8s-ops", "replicas": 0}),
    Case(
        "namespaced-operator",
        "k8s-ops-team",
        {"type": "k8s-ops", "rbac": {"preset": "operator", "scope": "Namespace"}},
    ),
)
CASE_IDS = [case.name for case in CASES]
RUNNING_CASES = [case for case in CASES if "endpoint" not in case.spec]
BUILTIN_TYPES = ("k8s-ops", "monitoring", "cmdb")


def build(case: Case) -> Children:
    return build_children(case.owner, case.parsed, BuildDefaults())


def manifests(children: Children) -> list[tuple[ResourceKind, Manifest]]:
    return [(kind, manifest) for kind, manifest in children.items() if manifest is not None]


def container(children: Children) -> dict[str, Any]:
    deployment = children[DEPLOYMENT]
    assert deployment is not None
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = server
    return result


class _NoAliasDumper(yaml.SafeDumper):
    """safe_dump that writes shared sub-objects out in full instead of as &anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def golden_text(children: Children) -> str:
    document = {kind.kind: children[kind] for kind in CHILD_KINDS}
    return yaml.dump(document, Dumper=_NoAliasDumper, sort_keys=False, width=120)


# ------------------------------------------------------------------------ goldens


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_golden(case: Case) -> None:
    actual = golden_text(build(case))
    path = GOLDEN_DIR / f"{case.name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: run `UPDATE_GOLDEN=1 pytest tests/unit/test_builders.py` and review it")
    expected = path.read_text()
    assert actual == expected, f"children of {case.name} differ from {path.name} (UPDATE_GOLDEN=1 rewrites it)"


def test_no_stray_golden_files() -> None:
    stray = {path.stem for path in GOLDEN_DIR.glob("*.yaml")} - set(CASE_IDS)
    assert not stray, f"golden files without a case: {stray}"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_children_are_keyed_by_every_child_kind_in_order(case: Case) -> None:
    assert list(build(case)) == list(CHILD_KINDS)


# ------------------------------------------------------------------- ownership


@pytest.mark.parametrize("case", RUNNING_CASES, ids=[case.name for case in RUNNING_CASES])
def test_namespaced_children_have_a_controller_owner_reference(case: Case) -> None:
    for kind, manifest in manifests(build(case)):
        meta = manifest["metadata"]
        assert manifest["apiVersion"] == kind.api_version
        assert manifest["kind"] == kind.kind
        if not kind.namespaced:
            continue
        assert meta["namespace"] == NAMESPACE, kind.kind
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "mcpfleet.io/v1alpha1",
                "kind": "MCPServer",
                "name": case.server,
                "uid": f"uid-{case.server}",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], kind.kind
        assert LABEL_OWNER_UID not in meta["labels"], kind.kind


@pytest.mark.parametrize("case", RUNNING_CASES, ids=[case.name for case in RUNNING_CASES])
def test_cluster_scoped_children_carry_the_owner_uid_label(case: Case) -> None:
    for kind, manifest in manifests(build(case)):
        if kind.namespaced:
            continue
        meta = manifest["metadata"]
        assert "namespace" not in meta, kind.kind
        assert "ownerReferences" not in meta, f"{kind.kind} cannot be owned by a namespaced MCPServer"
        assert meta["labels"][LABEL_OWNER_UID] == f"uid-{case.server}", kind.kind
        assert meta["name"] == f"mcpfleet:{NAMESPACE}:{case.server}"


@pytest.mark.parametrize("case", RUNNING_CASES, ids=[case.name for case in RUNNING_CASES])
def test_every_child_is_recognised_as_ours(case: Case) -> None:
    stranger = Owner(case.server, NAMESPACE, "uid-someone-else")
    for kind, manifest in manifests(build(case)):
        assert owner_of(manifest) == (NAMESPACE, case.server), kind.kind
        assert is_owned_by(manifest, case.owner), kind.kind
        assert not is_owned_by(manifest, stranger), kind.kind


# ------------------------------------------------------------------ deployment


@pytest.mark.parametrize("case", RUNNING_CASES, ids=[case.name for case in RUNNING_CASES])
def test_deployment_is_locked_down(case: Case) -> None:
    children = build(case)
    deployment = children[DEPLOYMENT]
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    server = container(children)

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False
    assert pod["serviceAccountName"] == case.server
    assert server["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "privileged" not in server["securityContext"]
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod
    # A read-only root filesystem needs a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in server["volumeMounts"]
    # Every mount of a Secret is read-only, and every mount names a declared volume.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in server["volumeMounts"]:
        assert mount["name"] in volumes
        if "secret" in volumes[mount["name"]] or "configMap" in volumes[mount["name"]]:
            assert mount["readOnly"] is True, mount
    mount_paths = [mount["mountPath"] for mount in server["volumeMounts"]]
    assert len(mount_paths) == len(set(mount_paths))


@pytest.mark.parametrize("case", RUNNING_CASES, ids=[case.name for case in RUNNING_CASES])
def test_deployment_sets_resources_and_downward_api_env(case: Case) -> None:
    server = container(build(case))
    for section in ("requests", "limits"):
        assert set(server["resources"][section]) == {"cpu", "memory"}, section
    env = {var["name"]: var for var in server["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
    assert env["MCP_PORT"]["value"] == str(case.parsed.port)
    assert len(env) == len(server["env"]), "duplicate environment variables"


@pytest.mark.parametrize("case", [c for c in CASES if c.spec["type"] in BUILTIN_TYPES], ids=lambda c: c.name)
def test_builtin_servers_probe_health_and_ready(case: Case) -> None:
    children = build(case)
    server = container(children)
    assert server["livenessProbe"]["httpGet"] == {"path": "/health", "port": "mcp"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "mcp"}
    assert server["args"][:2] == ["server", case.spec["type"]]
    deployment = children[DEPLOYMENT]
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == BuildDefaults().run_as_user
    assert server["image"] == case.spec.get("image", BuildDefaults().server_image)


def test_custom_server_probes_its_health_path_and_mounts_secrets_readably() -> None:
    case = next(case for case in CASES if case.name == "custom-image")
    children = build(case)
    server = container(children)
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "mcp"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "mcp"}
    assert "args" not in server, "a custom image runs its own entrypoint"
    deployment = children[DEPLOYMENT]
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert "runAsUser" not in pod["securityContext"], "a custom image picks its own non-root user"
    # Secret files are 0440: the pod's fsGroup is what lets a non-root user read them.
    secret_volumes = [volume for volume in pod["volumes"] if "secret" in volume]
    assert secret_volumes
    assert all(volume["secret"]["defaultMode"] == 0o440 for volume in secret_volumes)
    assert pod["securityContext"]["fsGroup"] == BuildDefaults().run_as_user
    assert {"name": "secret-0", "mountPath": "/var/run/secrets/mcpfleet/tickets-api", "readOnly": True} in server[
        "volumeMounts"
    ]
    # config.custom reaches the container as environment variables through the ConfigMap.
    assert {"configMapRef": {"name": "tickets-config"}} in server["envFrom"]


def test_monitoring_backend_tokens_are_mounted_as_files_and_named_in_the_config() -> None:
    spec = parse_spec(
        {
            "type": "monitoring",
            "config": {
                "monitoring": {
                    "prometheusUrl": "https://prometheus.example",
                    "alertmanagerUrl": "https://alertmanager.example",
                    "grafanaUrl": "https://grafana.example",
                    "prometheusTokenSecret": {"name": "observability", "key": "prometheus"},
                    "alertmanagerTokenSecret": {"name": "observability", "key": "alertmanager"},
                    "grafanaTokenSecret": {"name": "grafana-token", "key": "token"},
                    "grafanaOrgId": 4,
                }
            },
        }
    )
    children = build_children(Owner("monitoring", NAMESPACE, "uid-mon"), spec, BuildDefaults())
    server = container(children)
    mounted = {mount["mountPath"] for mount in server["volumeMounts"] if mount["name"].startswith("secret-")}
    # One volume per Secret, whichever backends share it; tokens are never in the environment.
    assert mounted == {"/var/run/secrets/mcpfleet/observability", "/var/run/secrets/mcpfleet/grafana-token"}
    assert not any("TOKEN" in var["name"] for var in server["env"])
    config_map = children[CONFIG_MAP]
    assert config_map is not None
    block = yaml.safe_load(next(iter(config_map["data"].values())))["config"]["monitoring"]
    assert block["prometheusTokenSecret"] == {"name": "observability", "key": "prometheus"}
    assert block["grafanaOrgId"] == 4


def test_custom_server_without_health_path_gets_a_tcp_probe() -> None:
    spec = parse_spec({"type": "custom", "image": "example.com/mcp:1"})
    server = container(build_children(Owner("plain", NAMESPACE, "uid-plain"), spec, BuildDefaults()))
    assert server["livenessProbe"]["tcpSocket"] == {"port": "mcp"}
    assert server["readinessProbe"]["tcpSocket"] == {"port": "mcp"}


def test_stdio_server_has_one_pod_no_service_and_no_probe() -> None:
    case = next(case for case in CASES if case.name == "stdio-custom")
    children = build(case)
    server = container(children)
    deployment = children[DEPLOYMENT]
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "two stdio pods must never overlap"
    assert server["stdin"] is True
    assert "livenessProbe" not in server
    assert children[SERVICE] is None
    assert "MCP_PATH" not in {var["name"] for var in server["env"]}


def test_scaled_to_zero_keeps_every_object_but_runs_no_pod() -> None:
    case = next(case for case in CASES if case.name == "scaled-to-zero")
    children = build(case)
    deployment = children[DEPLOYMENT]
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 0
    assert children[SERVICE] is not None
    assert children[CONFIG_MAP] is not None
    assert children[CLUSTER_ROLE] is not None


# ------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("case", RUNNING_CASES, ids=[case.name for case in RUNNING_CASES])
def test_roles_never_grant_secrets_or_wildcards(case: Case) -> None:
    for kind in (ROLE, CLUSTER_ROLE):
        role = build(case)[kind]
        for rule in (role or {}).get("rules", ()):
            assert "secrets" not in rule["resources"], f"{case.name}: {kind.kind} grants Secrets"
            assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"], rule
            assert "pods/exec" not in rule["resources"], rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


@pytest.mark.parametrize("case", RUNNING_CASES, ids=[case.name for case in RUNNING_CASES])
def test_binding_matches_role_and_service_account(case: Case) -> None:
    children = build(case)
    pairs = ((ROLE, ROLE_BINDING), (CLUSTER_ROLE, CLUSTER_ROLE_BINDING))
    for role_kind, binding_kind in pairs:
        role, binding = children[role_kind], children[binding_kind]
        assert (role is None) == (binding is None), role_kind.kind
        if role is None or binding is None:
            continue
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind.kind,
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": case.server, "namespace": NAMESPACE}]
    cluster_rules = (children[CLUSTER_ROLE] or {}).get("rules", [])
    assert REPORT_RULE not in cluster_rules, "the tool report never grants Pod patches outside the namespace"


@pytest.mark.parametrize("case", RUNNING_CASES, ids=[case.name for case in RUNNING_CASES])
def test_token_is_mounted_only_when_the_server_has_permissions(case: Case) -> None:
    children = build(case)
    service_account = children[SERVICE_ACCOUNT]
    deployment = children[DEPLOYMENT]
    assert service_account is not None
    assert deployment is not None
    assert service_account["automountServiceAccountToken"] is False
    has_role = children[ROLE] is not None or children[CLUSTER_ROLE] is not None
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is has_role


def test_sample_rbac_shapes() -> None:
    by_name = {case.name: build(case) for case in CASES}
    assert by_name["mcpserver"][CLUSTER_ROLE] is not None, "k8s-ops defaults to a cluster-wide read-only role"
    assert by_name["monitoring"][CLUSTER_ROLE] is not None
    for name in ("mcpserver", "monitoring", "cmdb"):
        report_role = by_name[name][ROLE]
        assert report_role is not None, f"{name}: built-in servers write their tool report"
        assert REPORT_RULE in report_role["rules"]
    cmdb_rules = (by_name["cmdb"][CLUSTER_ROLE] or {}).get("rules", [])
    assert all(set(rule["verbs"]) <= {"get", "list"} for rule in cmdb_rules), "cmdb reads the cluster by default"
    assert (by_name["cmdb"][ROLE] or {}).get("rules") == [REPORT_RULE], "and writes only its report"
    custom_role = by_name["custom-image"][ROLE]
    assert custom_role is not None
    assert custom_role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]
    assert all(
        REPORT_RULE not in (by_name[name][ROLE] or {}).get("rules", []) for name in ("custom-image", "stdio-custom")
    )
    namespaced = by_name["namespaced-operator"][ROLE]
    assert namespaced is not None
    assert by_name["namespaced-operator"][CLUSTER_ROLE] is None
    resources = {resource for rule in namespaced["rules"] for resource in rule["resources"]}
    assert "deployments/scale" in resources
    assert not {"nodes", "namespaces", "persistentvolumes"} & resources


# ----------------------------------------------------------- network and external


def test_external_endpoint_deploys_nothing() -> None:
    case = next(case for case in CASES if case.name == "external-endpoint")
    assert all(manifest is None for manifest in build(case).values())


def test_network_policy_admits_the_platform_on_the_server_port() -> None:
    case = next(case for case in CASES if case.name == "cmdb")
    policy = build(case)[NETWORK_POLICY]
    assert policy is not None
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {"mcpfleet.io/server": "cmdb", "app.kubernetes.io/component": "mcp-server"}
    }
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": 8080, "protocol": "TCP"}]
    (platform,) = ingress["from"]
    assert platform["podSelector"]["matchExpressions"][0]["values"] == ["gateway", "operator"]


def test_network_policy_peers_are_never_empty() -> None:
    """An empty NetworkPolicyPeer is rejected by the API server ("must specify a peer")."""
    spec = parse_spec(
        {
            "type": "cmdb",
            "networkPolicy": {
                "enabled": True,
                "allowFrom": [{}, {"namespaceSelector": {"matchLabels": {"team": "a"}}}],
            },
        }
    )
    policy = build_children(Owner("cmdb", NAMESPACE, "uid-cmdb"), spec, BuildDefaults())[NETWORK_POLICY]
    assert policy is not None
    peers = policy["spec"]["ingress"][0]["from"]
    assert all(peers), peers
    assert peers[1] == {"podSelector": {}}, "no selector means the pods of the MCPServer's namespace"
    assert peers[2] == {"namespaceSelector": {"matchLabels": {"team": "a"}}}


def test_disabled_network_policy_is_absent() -> None:
    spec = parse_spec({"type": "cmdb", "networkPolicy": {"enabled": False, "allowFrom": [{}]}})
    assert build_children(Owner("cmdb", NAMESPACE, "uid-cmdb"), spec, BuildDefaults())[NETWORK_POLICY] is None


@pytest.mark.parametrize("case", RUNNING_CASES, ids=[case.name for case in RUNNING_CASES])
def test_service_and_policy_select_the_deployment_pods(case: Case) -> None:
    children = build(case)
    deployment = children[DEPLOYMENT]
    assert deployment is not None
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    service = children[SERVICE]
    if service is not None:
        assert service["spec"]["selector"] == selector
        assert service["spec"]["ports"][0]["port"] == case.parsed.port
        assert service["spec"]["ports"][0]["targetPort"] == "mcp"
    policy = children[NETWORK_POLICY]
    if policy is not None:
        assert policy["spec"]["podSelector"] == {"matchLabels": selector}


# ------------------------------------------------------------------ purity


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_build_is_deterministic_and_leaves_the_spec_alone(case: Case) -> None:
    spec = case.parsed
    before = copy.deepcopy(spec.model_dump())
    first = build_children(case.owner, spec, BuildDefaults())
    second = build_children(case.owner, spec, BuildDefaults())
    assert first == second
    assert golden_text(first) == golden_text(second)
    assert spec.model_dump() == before


def test_editing_one_build_does_not_leak_into_the_next() -> None:
    case = next(case for case in CASES if case.name == "namespaced-operator")
    first = build(case)
    pristine = copy.deepcopy(build(case))
    for _, manifest in manifests(first):
        for rule in manifest.get("rules", ()):
            rule["verbs"].append("escalate")
            rule["resources"].append("secrets")
        manifest["metadata"]["labels"]["edited"] = "yes"
    container(first)["env"].append({"name": "EDITED", "value": "yes"})
    assert build(case) == pristine


def _deployment(spec: dict[str, Any]) -> Manifest:
    manifest = build_children(Owner("srv", NAMESPACE, "uid-srv"), parse_spec(spec), BuildDefaults())[DEPLOYMENT]
    assert manifest is not None
    return manifest


def _changed_kinds(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    owner = Owner("srv", NAMESPACE, "uid-srv")
    old = build_children(owner, parse_spec(before), BuildDefaults())
    new = build_children(owner, parse_spec(after), BuildDefaults())
    return {kind.kind for kind in CHILD_KINDS if old[kind] != new[kind]}


BASE_MONITORING: dict[str, Any] = {
    "type": "monitoring",
    "config": {"monitoring": {"prometheusUrl": "http://prometheus:9090"}},
}


def test_replicas_change_only_the_deployment() -> None:
    assert _changed_kinds(BASE_MONITORING, {**BASE_MONITORING, "replicas": 3}) == {"Deployment"}
    assert _deployment({**BASE_MONITORING, "replicas": 3})["spec"]["replicas"] == 3


def test_image_changes_only_the_deployment() -> None:
    changed = {**BASE_MONITORING, "image": "registry.example.com/mcpfleet:0.2.0"}
    assert _changed_kinds(BASE_MONITORING, changed) == {"Deployment"}
    assert _deployment(changed)["spec"]["template"]["spec"]["containers"][0]["image"] == changed["image"]


def test_config_change_updates_the_config_map_and_rolls_the_pods() -> None:
    changed = {**BASE_MONITORING, "config": {"monitoring": {"prometheusUrl": "http://thanos:9090"}}}
    assert _changed_kinds(BASE_MONITORING, changed) == {"ConfigMap", "Deployment"}
    old_template = _deployment(BASE_MONITORING)["spec"]["template"]
    new_template = _deployment(changed)["spec"]["template"]
    old_hash = old_template["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]
    new_hash = new_template["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]
    assert old_hash != new_hash
    # The hash is the only difference: the pods roll because the config changed, nothing else.
    new_template["metadata"]["annotations"][ANNOTATION_CONFIG_HASH] = old_hash
    assert new_template == old_template


def test_custom_config_change_rolls_the_pods_too() -> None:
    base = {"type": "custom", "image": "example.com/mcp:1", "config": {"custom": {"A": "1"}}}
    changed = {**base, "config": {"custom": {"A": "2"}}}
    assert _changed_kinds(base, changed) == {"ConfigMap", "Deployment"}


def test_port_change_touches_deployment_service_and_config() -> None:
    assert _changed_kinds(BASE_MONITORING, {**BASE_MONITORING, "port": 9000}) == {
        "ConfigMap",
        "Deployment",
        "Service",
    }


def test_enabling_the_network_policy_adds_only_the_policy() -> None:
    assert _changed_kinds(BASE_MONITORING, {**BASE_MONITORING, "networkPolicy": {"enabled": True}}) == {"NetworkPolicy"}


# ---------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"type": "k8s-ops"}, "http://srv.team-a.svc:8080/mcp", id="streamable-http"),
        pytest.param({"type": "k8s-ops", "transport": "sse"}, "http://srv.team-a.svc:8080/sse", id="sse"),
        pytest.param(
            {"type": "k8s-ops", "port": 9000, "path": "/v1/mcp"}, "http://srv.team-a.svc:9000/v1/mcp", id="custom-path"
        ),
        pytest.param(
            {"type": "custom", "image": "example.com/mcp:1", "transport": "stdio"}, "stdio://team-a/srv", id="stdio"
        ),
        pytest.param(
            {"type": "custom", "endpoint": "https://mcp.example.com/mcp"}, "https://mcp.example.com/mcp", id="external"
        ),
    ],
)
def test_service_endpoint(spec: dict[str, Any], expected: str) -> None:
    assert service_endpoint(Owner("srv", NAMESPACE, "uid-srv"), parse_spec(spec)) == expected
