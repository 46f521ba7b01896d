"""The Helm chart (charts/mcpfleet), with the toolchain's helm: rendered, linted, and installed on the real
control plane.

Rendering checks what a reviewer would: the operator's RBAC is exactly `mcpfleet rbac print`'s, the CRD is
crds/, the gateway config passes `mcpfleet config validate` with the environment its Deployment gives it, every
container runs as non-root with resources, the alerts fire on the series that should fire them (promtool).

Installing checks what a user would see: each ci/ values file installs the objects it renders and uninstalls
to nothing but the CRD (`helm.sh/resource-policy: keep`). With the default values the operator and the gateway
run locally (no kubelet: Pods never run here) with tokens of the chart's own ServiceAccounts, so the chart's
RBAC is what they get: the operator reconciles samples/mcpserver.yaml and the gateway reads the catalog and
admits the bootstrap API key. `helm upgrade` then changes what it should and keeps what the operator wrote.
The pre-delete hook's command runs the same way, with its Job's exact arguments and a token of the hook's own
ServiceAccount, and uninstall leaves nothing of the release but the CRD: no MCPServers, no grants the operator
made for them, no catalog, no catalog history.

The cluster already holds the MCPServer CRD (the session applies crds/ with kubectl), so releases that install
it adopt it with `--take-ownership`, as a user moving from `kubectl apply -f crds/` to the chart would.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from mcpfleet_cli.cleanup import LabelSelector
from mcpfleet_cli.devcluster.cluster import free_port, write_kubeconfig
from mcpfleet_cli.main import app
from mcpfleet_contracts.catalog import Catalog, CatalogServer
from mcpfleet_contracts.mcpserver import MCPServerSpec, Transport
from mcpfleet_operator.builders.report_policy import report_policy
from mcpfleet_operator.catalog_store import CatalogStore
from mcpfleet_operator.kube import KubeClient, load_api_client
from mcpfleet_operator.settings import OperatorSettings
from tests.e2e.conftest import REPO_ROOT, SAMPLES_DIR, Cluster, OperatorProcess, _tools_bin, eventually
from tests.integration.gateway.harness import GatewayProcess

pytestmark = pytest.mark.timeout(300)

CHART = REPO_ROOT / "charts" / "mcpfleet"
CI_FILES = sorted((CHART / "ci").glob("*.yaml"))
MCPSERVER_API = "mcpfleet.io/v1alpha1/MCPServer"
CLUSTER_SCOPED = {
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
KEPT = {("CustomResourceDefinition", "mcpservers.mcpfleet.io")}
PRE_DELETE = "pre-delete"
Manifest = dict[str, Any]


# -- helm --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Helm's own state (repositories, caches) goes to a throwaway home, not the developer's.
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
        return result

    def template(self, *args: str, release: str = "mcpfleet", namespace: str = "mcpfleet-system") -> list[Manifest]:
        return _render(self, release, namespace, args)


@functools.cache
def _render(helm: Helm, release: str, namespace: str, args: tuple[str, ...]) -> list[Manifest]:
    output = helm.run("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = _tools_bin() / "helm"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `make tools`", pytrace=False)
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


def values_args(ci_file: Path) -> tuple[str, ...]:
    return ("--values", str(ci_file), "--api-versions", MCPSERVER_API)


def one(documents: list[Manifest], kind: str, suffix: str = "") -> Manifest:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{len(found)} {kind} objects named *{suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def of_kind(documents: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in documents if d["kind"] == kind]


def pod_specs(documents: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for doc in documents:
        if doc["kind"] == "Deployment":
            yield f"Deployment/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield f"Pod/{doc['metadata']['name']}", doc["spec"]
        elif doc["kind"] == "Job":
            yield f"Job/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def canonical_rules(rules: list[Manifest]) -> collections.Counter[str]:
    """Rules compared as a multiset, each with its lists sorted: order carries no meaning in RBAC."""
    return collections.Counter(json.dumps({key: sorted(value) for key, value in rule.items()}) for rule in rules)


def cli(*args: str) -> Result:
    """`mcpfleet ARGS`, run in this process (the same command line, without a second interpreter's start-up)."""
    return CliRunner().invoke(app, list(args))


def printed_rbac() -> list[Manifest]:
    result = cli("rbac", "print")
    assert result.exit_code == 0, result.output
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# -- lint and render ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ci_file", CI_FILES, ids=lambda path: path.stem)
def test_helm_lint_strict_passes_with_each_ci_file(helm: Helm, ci_file: Path) -> None:
    result = helm.run("lint", "--strict", str(CHART), "--values", str(ci_file))
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_helm_lint_strict_passes_with_the_defaults(helm: Helm) -> None:
    assert "0 chart(s) failed" in helm.run("lint", "--strict", str(CHART)).stdout


@pytest.mark.parametrize(("key", "value"), [("operator.bogus", "1"), ("gateway.ingress.bogus", "1")])
def test_an_unknown_key_fails_the_render_naming_it(helm: Helm, key: str, value: str) -> None:
    result = helm.run("template", "x", str(CHART), "--set", f"{key}={value}", check=False)
    assert result.returncode != 0
    assert "bogus" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--set", "operator.replicas=2"), "operator.peering"),
        (("--set", "gateway.auth.hs256Secret.value=s3cret-s3cret-s3cret"), "gateway.config.auth.audience"),
        (("--set", "operator.settings.catalog_namespace=elsewhere"), "operator.settings.catalog_namespace"),
    ],
)
def test_a_combination_that_cannot_work_fails_the_render_with_what_to_change(
    helm: Helm, flags: tuple[str, ...], message: str
) -> None:
    result = helm.run("template", "x", str(CHART), *flags, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_the_operator_rbac_is_exactly_what_rbac_print_prints(helm: Helm) -> None:
    rendered = helm.template("--api-versions", MCPSERVER_API, release="r1", namespace="platform")
    printed = printed_rbac()
    role = one(rendered, "ClusterRole", "-operator")
    assert canonical_rules(role["rules"]) == canonical_rules(one(printed, "ClusterRole")["rules"])

    binding = one(rendered, "ClusterRoleBinding", "-operator")
    account = one(rendered, "ServiceAccount", "-operator")["metadata"]
    deployment = one(rendered, "Deployment", "-operator")["spec"]["template"]["spec"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "r1-mcpfleet-operator",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": "platform"}]
    assert deployment["serviceAccountName"] == account["name"]
    assert not [d for d in rendered if d["kind"] == "Role" and "operator" in d["metadata"]["name"]], (
        "no namespaced rules"
    )


def test_the_tool_report_policy_is_rbac_prints_under_the_releases_name(helm: Helm) -> None:
    rendered = helm.template("--api-versions", MCPSERVER_API, release="r1")
    policy, binding = report_policy()
    assert one(rendered, "ValidatingAdmissionPolicy")["spec"] == policy["spec"]
    rendered_binding = one(rendered, "ValidatingAdmissionPolicyBinding")
    assert rendered_binding["spec"] == {**binding["spec"], "policyName": "r1-mcpfleet-tool-report"}

    off = helm.template("--set", "operator.toolReportPolicy.enabled=false", release="r1")
    assert not of_kind(off, "ValidatingAdmissionPolicy")
    assert not of_kind(off, "ValidatingAdmissionPolicyBinding")


def test_the_crd_is_crds_with_the_keep_policy_and_its_toggle(helm: Helm) -> None:
    committed = yaml.safe_load((REPO_ROOT / "crds" / "mcpfleet.io_mcpservers.yaml").read_text())
    crd = one(helm.template(), "CustomResourceDefinition")
    assert crd["spec"] == committed["spec"]
    assert crd["metadata"]["name"] == committed["metadata"]["name"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not of_kind(helm.template("--set", "crds.install=false"), "CustomResourceDefinition")


def test_two_releases_share_no_cluster_scoped_name_but_the_crds(helm: Helm) -> None:
    def names(release: str) -> set[tuple[str, str]]:
        rendered = helm.template(release=release, namespace=release)
        return {(d["kind"], d["metadata"]["name"]) for d in rendered if d["kind"] in CLUSTER_SCOPED}

    first, second = names("alpha"), names("beta")
    assert len(first) == len(CLUSTER_SCOPED), first
    assert first & second == {("CustomResourceDefinition", "mcpservers.mcpfleet.io")}


def _deployment_env(deployment: Manifest, container: str) -> dict[str, str]:
    """The container's environment as the kubelet would give it: literals (with $(VAR) expanded), Secret and
    ConfigMap keys as stand-in strings, the Pod's IP as a documentation address."""
    spec = deployment["spec"]["template"]["spec"]
    entries = next(c for c in spec["containers"] if c["name"] == container).get("env", [])
    env: dict[str, str] = {}
    for entry in entries:
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), entry["value"])
        elif "fieldRef" in entry["valueFrom"]:
            env[entry["name"]] = "192.0.2.10"
        else:
            ref = entry["valueFrom"].get("secretKeyRef") or entry["valueFrom"]["configMapKeyRef"]
            env[entry["name"]] = f"redis://from-{ref['name']}-{ref['key']}:6379/0"
    return env


@pytest.mark.parametrize("ci_file", CI_FILES, ids=lambda path: path.stem)
def test_the_gateway_config_passes_config_validate_with_the_deployments_environment(
    helm: Helm, ci_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = helm.template(*values_args(ci_file))
    config = one(rendered, "ConfigMap", "-gateway-config")["data"]["gateway.yaml"]
    deployment = one(rendered, "Deployment", "-gateway")
    env = _deployment_env(deployment, "gateway")
    assert env["MCPFLEET_GATEWAY_CONFIG"] == "/etc/mcpfleet/gateway/gateway.yaml"
    mounted = {m["mountPath"] for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert "/etc/mcpfleet/gateway" in mounted
    path = tmp_path / "gateway.yaml"
    path.write_text(config)
    # Only what the Deployment sets: a ${VAR} it does not provide fails here as it would in the Pod.
    for name in re.findall(r"\$\{(\w+)", config):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli("config", "validate", str(path))
    assert result.exit_code == 0, result.output

    document = yaml.safe_load(config)
    assert document["catalog"]["configmap"] == {"namespace": "mcpfleet-system", "name": "mcpfleet-catalog"}
    assert "${POD_IP}:*" in document["hardening"]["allowed_hosts"], "probes and Prometheus send the Pod's IP"
    assert "mcpfleet-gateway.mcpfleet-system.svc:*" in document["hardening"]["allowed_hosts"]
    assert ("redis" in document) == ("REDIS_URL" in env)


def test_the_gateway_config_merges_gateway_config_over_what_the_chart_derives(helm: Helm) -> None:
    config = yaml.safe_load(
        one(helm.template(*values_args(CHART / "ci" / "full-values.yaml")), "ConfigMap", "-gateway-config")["data"][
            "gateway.yaml"
        ]
    )
    assert config["rate_limits"]["tool_limits"] == {"k8s:scale_deployment": "10/hour"}, "from gateway.config"
    assert config["listen"] == {"host": "0.0.0.0", "port": 8080, "public_url": "https://mcp.example.com"}
    assert {"mcp.example.com", "mcp.example.com:*", "mcp.internal.example.com"} <= set(
        config["hardening"]["allowed_hosts"]
    ), "ingress hosts and gateway.allowedHosts"
    assert config["redis"] == {"url": "${REDIS_URL}"}
    assert "log_path" not in config["audit"], "with Redis the trail is the stream"
    assert config["self_config"] == {"enabled": False}, "the file is Helm's: in-cluster edits would not last"


@pytest.mark.parametrize("ci_file", CI_FILES, ids=lambda path: path.stem)
def test_the_operator_environment_is_valid_operator_settings(
    helm: Helm, ci_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = helm.template(*values_args(ci_file), release="r1", namespace="platform")
    env = _deployment_env(one(rendered, "Deployment", "-operator"), "operator")
    for name in list(os.environ):
        if name.startswith("MCPFLEET_OPERATOR_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings()
    assert (settings.catalog_namespace, settings.catalog_name) == ("platform", "mcpfleet-catalog")
    image = one(rendered, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert settings.server_image == image
    assert (settings.metrics_port, settings.liveness_port) == (9090, 8080)
    if "consul" in ci_file.stem or "full" in ci_file.stem:
        assert settings.consul_address == "http://consul-server.consul.svc:8500"
        assert settings.consul_token_file == Path("/var/run/secrets/mcpfleet/consul/token")
    if "full" in ci_file.stem:
        assert settings.safe_cache_seconds == 5
        assert image.endswith("@sha256:" + "0" * 64)


@pytest.mark.parametrize("ci_file", CI_FILES, ids=lambda path: path.stem)
def test_every_container_runs_as_non_root_on_a_read_only_root_with_resources(helm: Helm, ci_file: Path) -> None:
    rendered = helm.template(*values_args(ci_file))
    seen = 0
    for where, spec in pod_specs(rendered):
        pod = spec.get("securityContext") or {}
        for container in spec.get("initContainers", []) + spec["containers"]:
            seen += 1
            context = {**pod, **(container.get("securityContext") or {})}
            name = f"{where}/{container['name']}"
            assert context.get("runAsNonRoot") is True, name
            assert context.get("runAsUser", 0) != 0, name
            assert context.get("readOnlyRootFilesystem") is True, name
            assert context.get("allowPrivilegeEscalation") is False, name
            assert context.get("capabilities", {}).get("drop") == ["ALL"], name
            resources = container.get("resources") or {}
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), name
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), name
    assert seen >= 4, "operator, gateway, the test Pod and the cleanup Job at least"


def test_the_gateway_and_operator_pods_carry_what_server_network_policies_admit(helm: Helm) -> None:
    """The operator's NetworkPolicies for servers admit part-of=mcpfleet Pods of component gateway or operator."""
    rendered = helm.template()
    for suffix, component in (("-gateway", "gateway"), ("-operator", "operator")):
        labels = one(rendered, "Deployment", suffix)["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "mcpfleet"
        assert labels["app.kubernetes.io/component"] == component


def test_the_gateway_may_get_and_watch_the_catalog_and_nothing_else(helm: Helm) -> None:
    rendered = helm.template(namespace="platform")
    role = one(rendered, "Role", "-catalog-reader")
    assert role["metadata"]["namespace"] == "platform"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["mcpfleet-catalog"],
            "verbs": ["get", "watch"],
        }
    ]


def test_the_full_values_render_every_optional_object(helm: Helm) -> None:
    rendered = helm.template(*values_args(CHART / "ci" / "full-values.yaml"))
    kinds = collections.Counter(d["kind"] for d in rendered)
    optional = ("Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PodMonitor", "PrometheusRule")
    assert [kinds[kind] for kind in optional] == [1] * len(optional)
    assert kinds["NetworkPolicy"] == 3, "gateway, operator and the bundled Redis"
    assert kinds["ServiceMonitor"] == 2, "the operator's and the gateway's"
    assert "replicas" not in one(rendered, "Deployment", "-gateway")["spec"], "the HPA owns the replica count"
    servers = {d["metadata"]["name"]: d["spec"] for d in of_kind(rendered, "MCPServer")}
    assert set(servers) == {"k8s-ops", "monitoring", "cmdb"}
    for spec in servers.values():
        MCPServerSpec.model_validate(spec)  # the operator's own parse; the API server checks the CRD at install
    assert servers["cmdb"]["networkPolicy"] == {"enabled": True}


def test_the_defaults_render_no_optional_object(helm: Helm) -> None:
    kinds = {d["kind"] for d in helm.template("--api-versions", MCPSERVER_API)}
    optional = {"Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "MCPServer"}
    assert not kinds & (optional | {"ServiceMonitor", "PodMonitor", "PrometheusRule"})


def test_the_helm_test_pod_asks_the_gateways_health_with_the_images_python(helm: Helm) -> None:
    rendered = helm.template(release="r1", namespace="platform")
    pod = one(rendered, "Pod", "-test-health")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["command"][0] == "python3"
    assert "urllib.request" in container["args"][0]
    assert container["args"][1] == "http://r1-mcpfleet-gateway.platform.svc:8080/health"
    assert (
        container["image"]
        == one(rendered, "Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]["image"]
    )


def cleanup_hooks(documents: list[Manifest]) -> list[Manifest]:
    return [d for d in documents if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == PRE_DELETE]


def job_args(job: Manifest) -> list[str]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "command" not in container, "the image's entrypoint is mcpfleet"
    args: list[str] = container["args"]
    return args


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_cleanup_hook_runs_before_helm_deletes_anything_with_exactly_the_rbac_it_uses(helm: Helm) -> None:
    flags = ("--api-versions", MCPSERVER_API, "--set", "servers.k8sOps.enabled=true,servers.cmdb.enabled=true")
    rendered = helm.template(*flags, release="r1", namespace="platform")
    hooks = cleanup_hooks(rendered)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in hooks) == [
        ("Job", "r1-mcpfleet-cleanup"),
        ("Role", "r1-mcpfleet-cleanup-catalog"),
        ("Role", "r1-mcpfleet-cleanup-servers"),
        ("RoleBinding", "r1-mcpfleet-cleanup-catalog"),
        ("RoleBinding", "r1-mcpfleet-cleanup-servers"),
        ("ServiceAccount", "r1-mcpfleet-cleanup"),
    ]
    job = one(hooks, "Job")
    for hook in hooks:
        annotations = hook["metadata"]["annotations"]
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        if hook is not job:
            assert int(annotations["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])

    servers_role, catalog_role = one(hooks, "Role", "-servers"), one(hooks, "Role", "-catalog")
    assert servers_role["rules"] == [
        {"apiGroups": ["mcpfleet.io"], "resources": ["mcpservers"], "verbs": ["list", "delete"]}
    ]
    assert catalog_role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "delete"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["mcpfleet-catalog"], "verbs": ["get"]},
    ]
    account = {"kind": "ServiceAccount", "name": "r1-mcpfleet-cleanup", "namespace": "platform"}
    for suffix in ("-servers", "-catalog"):
        binding = one(hooks, "RoleBinding", suffix)
        assert binding["roleRef"]["name"] == binding["metadata"]["name"] == f"r1-mcpfleet-cleanup{suffix}"
        assert binding["subjects"] == [account]

    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert (pod["serviceAccountName"], pod["restartPolicy"]) == ("r1-mcpfleet-cleanup", "Never")
    assert spec["activeDeadlineSeconds"] == 180, "cleanup.timeoutSeconds (120) and a minute to report"
    assert (
        pod["containers"][0]["image"]
        == one(rendered, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    args = job_args(job)
    assert args[:2] == ["release", "cleanup"]
    assert (option(args, "--namespace"), option(args, "--catalog-namespace")) == ("platform", "platform")
    assert (option(args, "--catalog-name"), option(args, "--timeout")) == ("mcpfleet-catalog", "120")
    assert "--delete-catalog" not in args, "Helm deletes the catalog it bootstrapped"

    # The selector is the release's MCPServers, exactly: not another release's, not a person's.
    selector = LabelSelector.parse(option(args, "--selector"))
    servers = of_kind(rendered, "MCPServer")
    assert len(servers) == 2
    assert all(selector.matches(server["metadata"]["labels"]) for server in servers)
    others = of_kind(helm.template(*flags, release="r2", namespace="platform"), "MCPServer")
    assert not any(selector.matches(server["metadata"]["labels"]) for server in others)
    assert not selector.matches({**servers[0]["metadata"]["labels"], "app.kubernetes.io/managed-by": "kubectl"})
    catalog = one(rendered, "ConfigMap", "-catalog")
    assert "helm.sh/resource-policy" not in (catalog["metadata"].get("annotations") or {}), "uninstall deletes it"


def test_the_cleanup_hook_follows_the_servers_namespace_and_the_catalog_bootstrap(helm: Helm) -> None:
    rendered = helm.template(
        "--set", "servers.namespace=tools,catalog.bootstrap=false,cleanup.timeoutSeconds=30", namespace="platform"
    )
    hooks = cleanup_hooks(rendered)
    assert one(hooks, "Role", "-servers")["metadata"]["namespace"] == "tools"
    assert one(hooks, "RoleBinding", "-servers")["metadata"]["namespace"] == "tools"
    assert one(hooks, "Role", "-catalog")["metadata"]["namespace"] == "platform"
    job = one(hooks, "Job")
    args = job_args(job)
    assert (option(args, "--namespace"), option(args, "--catalog-namespace")) == ("tools", "platform")
    assert "--delete-catalog" in args, "without the bootstrap the operator made the catalog: the hook deletes it"
    assert job["spec"]["activeDeadlineSeconds"] == 90


def test_cleanup_enabled_false_renders_no_hook(helm: Helm) -> None:
    rendered = helm.template("--set", "cleanup.enabled=false")
    assert cleanup_hooks(rendered) == []
    assert not [d for d in rendered if "-cleanup" in d["metadata"]["name"]]


def _chart_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "mcpfleet"
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("dashboards"))
    return copy


def test_dashboard_configmaps_come_from_the_json_files_and_none_without_them(helm: Helm, tmp_path: Path) -> None:
    chart = _chart_copy(tmp_path)

    def dashboards(*flags: str) -> list[Manifest]:
        output = helm.run("template", "r1", str(chart), *flags).stdout
        return [
            d
            for d in yaml.safe_load_all(output)
            if d and d["kind"] == "ConfigMap" and "-dashboard-" in d["metadata"]["name"]
        ]

    assert dashboards() == [], "no dashboards/ folder, no ConfigMaps"
    (chart / "dashboards").mkdir()
    text = json.dumps({"title": "Placeholder", "panels": []}, indent=2)
    (chart / "dashboards" / "placeholder_board.json").write_text(text)
    (configmap,) = dashboards()
    assert configmap["metadata"]["name"] == "r1-mcpfleet-dashboard-placeholder-board"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {"placeholder_board.json": text}

    (relabelled,) = dashboards(
        "--set", "grafana.dashboards.label=grafana_dashboard_mcp", "--set", "grafana.dashboards.namespace=monitoring"
    )
    assert relabelled["metadata"]["labels"]["grafana_dashboard_mcp"] == "1"
    assert relabelled["metadata"]["namespace"] == "monitoring"
    assert dashboards("--set", "grafana.dashboards.enabled=false") == []


# The alerts, each driven by series that must fire it (`promtool test rules`), with the text people will read.
ALERT_SERIES = {
    'mcpfleet_gateway_tool_calls_total{namespace="p", outcome="ok", server="k8s"}': "0+60x30",
    'mcpfleet_gateway_tool_calls_total{namespace="p", outcome="upstream-error", server="k8s"}': "0+20x30",
    'mcpfleet_operator_errors_total{namespace="p", error="temporary"}': "0+60x30",
    'mcpfleet_gateway_audit_backlog{namespace="p", pod="gw-0"}': "5000x30",
    'mcpfleet_operator_catalog_sync_seconds_bucket{namespace="p", le="5"}': "0x30",
    'mcpfleet_operator_catalog_sync_seconds_bucket{namespace="p", le="10"}': "0+10x30",
    'mcpfleet_operator_catalog_sync_seconds_bucket{namespace="p", le="+Inf"}': "0+10x30",
}
EXPECTED_ALERTS = {
    "MCPFleetGatewayErrors": (
        {"severity": "warning"},
        "25% of the calls in p ended in an upstream error or a timeout for 10m. "
        "Check /ready of the gateway and the servers it names.",
    ),
    "MCPFleetOperatorErrors": (
        {"severity": "warning"},
        "1 errors/s in p. `kubectl get mcps -A` shows which MCPServers are Degraded or Failed and why.",
    ),
    "MCPFleetAuditBacklog": (
        {"severity": "critical", "pod": "gw-0"},
        "gw-0 holds 5000 audit records not yet in every sink; Redis is down or too slow "
        "(mcpfleet_gateway_audit_sink_up).",
    ),
    "MCPFleetCatalogSyncSlow": (
        {"severity": "warning"},
        "The 95th percentile from a tool report to the catalog revision that includes it is 9.75s in p.",
    ),
}


def alert_tests(rule: Manifest) -> dict[str, Any]:
    summaries = {r["alert"]: r["annotations"]["summary"] for r in rule["spec"]["groups"][0]["rules"]}
    expectations: list[dict[str, Any]] = [
        {
            "eval_time": "25m",
            "alertname": name,
            "exp_alerts": [
                {
                    "exp_labels": {**labels, "team": "platform", "namespace": "p"},
                    "exp_annotations": {"summary": summaries[name], "description": description},
                }
            ],
        }
        for name, (labels, description) in EXPECTED_ALERTS.items()
    ]
    # Not before the condition has held for `for` (10m).
    expectations.append({"eval_time": "5m", "alertname": "MCPFleetGatewayErrors", "exp_alerts": []})
    series = [{"series": name, "values": values} for name, values in ALERT_SERIES.items()]
    return {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": expectations}],
    }


def test_the_alerts_are_valid_and_fire_on_the_series_that_should_fire_them(helm: Helm, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: hack/system-deps.sh installs it (Debian package prometheus)", pytrace=False)
    rule = one(helm.template(*values_args(CHART / "ci" / "full-values.yaml")), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(alert_tests(rule)))
    checked = subprocess.run(
        [promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "4 rules found" in checked.stdout, checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


# -- on the control plane ----------------------------------------------------------------------------------

# Stand-ins for the Prometheus Operator's CRDs (which are not available here): the same names and kinds with an
# open schema, so the API server stores the chart's ServiceMonitor, PodMonitor and PrometheusRule objects.
MONITORING_KINDS = {
    "ServiceMonitor": "servicemonitors",
    "PodMonitor": "podmonitors",
    "PrometheusRule": "prometheusrules",
}


def _open_crd(kind: str, plural: str) -> Manifest:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Cluster) -> Iterator[None]:
    crds = [_open_crd(kind, plural) for kind, plural in MONITORING_KINDS.items()]
    result = cluster.apply(crds)
    assert result.returncode == 0, result.stderr
    for crd in crds:
        cluster.ok("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}")
    yield
    cluster.kubectl("delete", "crd", *(crd["metadata"]["name"] for crd in crds), "--wait=false")


@pytest.fixture
def release_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"helm-{uuid.uuid4().hex[:8]}"
    cluster.ok("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def installs_crd(ci_file: Path | None) -> bool:
    values = yaml.safe_load(ci_file.read_text()) if ci_file else None
    return bool(((values or {}).get("crds") or {}).get("install", True))


def install(helm: Helm, cluster: Cluster, release: str, namespace: str, ci_file: Path | None = None) -> str:
    """`helm install`; the CRD, when the values install it, is adopted from the session's `kubectl apply`."""
    adopt = ("--take-ownership",) if installs_crd(ci_file) else ()
    flags = ("--values", str(ci_file)) if ci_file else ()
    result = helm.run(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kubeconfig",
        str(cluster.kubeconfig),
        *adopt,
        *flags,
    )
    return result.stdout


def release_objects(helm: Helm, cluster: Cluster, release: str, namespace: str) -> list[Manifest]:
    manifest = helm.run("get", "manifest", release, "--namespace", namespace, "--kubeconfig", str(cluster.kubeconfig))
    return [doc for doc in yaml.safe_load_all(manifest.stdout) if doc]


def existing(cluster: Cluster, objects: list[Manifest]) -> set[tuple[str, str]]:
    """(kind, name) of those objects the API server has."""
    listed = cluster.kubectl("get", "-f", "-", "--ignore-not-found", "-o", "json", stdin=yaml.safe_dump_all(objects))
    assert listed.returncode == 0, listed.stderr
    if not listed.stdout.strip():
        return set()
    document = json.loads(listed.stdout)
    items = document.get("items", [document]) if document.get("kind", "").endswith("List") else [document]
    return {(item["kind"], item["metadata"]["name"]) for item in items}


def names_of(objects: list[Manifest]) -> set[tuple[str, str]]:
    return {(obj["kind"], obj["metadata"]["name"]) for obj in objects}


@pytest.mark.parametrize("ci_file", CI_FILES, ids=lambda path: path.stem)
def test_each_ci_file_installs_its_objects_and_uninstalls_to_the_kept_ones(
    helm: Helm, cluster: Cluster, monitoring_crds: None, release_namespace: str, ci_file: Path
) -> None:
    release = f"hc-{ci_file.stem.removesuffix('-values')}"[:40]
    install(helm, cluster, release, release_namespace, ci_file)
    objects = release_objects(helm, cluster, release, release_namespace)
    assert existing(cluster, objects) == names_of(objects), "every rendered object is in the cluster"
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role"} <= kinds
    assert ("ConfigMap", "mcpfleet-catalog") in names_of(objects)
    if ci_file.stem == "full-values":
        assert {
            "Ingress",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            *MONITORING_KINDS,
        } <= kinds
        servers = cluster.get("mcps", "-n", release_namespace)["items"]
        assert {s["metadata"]["name"] for s in servers} == {"k8s-ops", "monitoring", "cmdb"}, "accepted by the CRD"
    if ci_file.stem == "no-crds-values":
        assert not kinds & {"CustomResourceDefinition", "ValidatingAdmissionPolicy"}

    # No kubelet would run the pre-delete hook's Job (helm would wait for it until its timeout). No operator runs
    # here either, so the MCPServers carry no finalizer: nothing is left for the hook to do. The lifecycle test
    # below runs the hook's command.
    helm.run(
        "uninstall", release, "--namespace", release_namespace, "--kubeconfig", str(cluster.kubeconfig), "--no-hooks"
    )
    eventually(lambda: existing(cluster, objects) <= KEPT, within=30, what="everything but the kept gone")
    assert existing(cluster, objects) == names_of(objects) & KEPT


def _account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    credential = cluster.ok("create", "token", account, "-n", namespace, "--duration=1h").strip()
    return write_kubeconfig(path, cluster.state.server, cluster.state.ca_cert, user=account, token=credential)


def _status_ok(cluster: Cluster, namespace: str, name: str) -> Manifest:
    server: Manifest = cluster.get("mcps", name, "-n", namespace)
    status = server.get("status", {})
    assert status.get("observedGeneration") == server["metadata"]["generation"], status
    deployed: Manifest = next((c for c in status.get("conditions", []) if c["type"] == "Deployed"), {})
    assert deployed.get("status") == "True", status
    return server


def _owned_deployment(cluster: Cluster, namespace: str, server: Manifest) -> Manifest:
    deployment: Manifest = cluster.get("deployment", server["metadata"]["name"], "-n", namespace)
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("MCPServer", server["metadata"]["uid"])
    return deployment


def _notes_sample(notes: str) -> Manifest:
    match = re.search(r"<<'EOF'\n(.*?)\nEOF\n", notes, re.DOTALL)
    assert match, notes
    document: Manifest = yaml.safe_load(match.group(1))
    return document


def _run_gateway(
    cluster: Cluster, namespace: str, fullname: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The chart's gateway config and API key, the chart's gateway ServiceAccount, on loopback."""
    config = yaml.safe_load(
        cluster.get("configmap", f"{fullname}-gateway-config", "-n", namespace)["data"]["gateway.yaml"]
    )
    # In the Pod these are an emptyDir; here they move under tmp_path.
    config["audit"] = {
        **config["audit"],
        "log_path": str(tmp_path / "audit-{replica}.jsonl"),
        "spool_dir": str(tmp_path / "spool"),
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    kubeconfig = _account_kubeconfig(cluster, namespace, f"{fullname}-gateway", tmp_path / "gateway.kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("POD_IP", "127.0.0.1")
    monkeypatch.setenv("MCPFLEET_GATEWAY_HOST", "127.0.0.1")
    secret = cluster.get("secret", f"{fullname}-gateway-bootstrap-key", "-n", namespace)
    api_key = base64.b64decode(secret["data"]["api-key"]).decode()
    # As the Deployment passes it: every replica signs confirmation states with the chart's generated key.
    state = cluster.get("secret", f"{fullname}-gateway-state", "-n", namespace)
    monkeypatch.setenv("MCPFLEET_GATEWAY_STATE_SECRET", base64.b64decode(state["data"]["state-secret"]).decode())

    gateway = GatewayProcess(path, "helm-e2e", tmp_path / "gateway.log")
    gateway.start(timeout=60)
    try:
        with urllib.request.urlopen(f"{gateway.url}/ready", timeout=10) as response:
            ready = json.loads(response.read())
        assert (ready["catalogRevision"], ready["problems"]) == (0, []), ready
        request = urllib.request.Request(f"{gateway.url}/api/v1/tools", headers={"X-API-Key": api_key})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{gateway.url}/api/v1/tools", timeout=10)
        assert refused.value.code == 401
    finally:
        gateway.stop()
    log = gateway.log.read_text(errors="replace")
    assert "forbidden" not in log.lower(), "the gateway's Role lacks a permission:\n" + log[-3000:]


BUILT_IN = ("k8s-ops", "monitoring", "cmdb")


def _generated_secrets(cluster: Cluster, namespace: str, fullname: str) -> dict[str, Any]:
    """The data of the Secrets the chart generates at install (and must keep across upgrades)."""
    names = (f"{fullname}-gateway-bootstrap-key", f"{fullname}-gateway-state")
    return {name: cluster.get("secret", name, "-n", namespace)["data"] for name in names}


def _write_catalog(cluster: Cluster, namespace: str, revisions: list[list[str]]) -> int:
    """Catalog revisions listing these MCPServers (namespace/name), written with the operator's own store: what it
    writes once their Pods have served tools (no kubelet runs them here). The last revision's number."""

    def entry(name: str) -> CatalogServer:
        short = name.rsplit("/", 1)[-1]
        endpoint = f"http://{short}:8080/mcp"
        return CatalogServer(name=name, prefix=short, endpoint=endpoint, transport=Transport.STREAMABLE_HTTP)

    async def write() -> int:
        client = KubeClient(await load_api_client(str(cluster.kubeconfig)), "e2e")
        try:
            store = CatalogStore(client, namespace, "mcpfleet-catalog")
            written = [await store.write([entry(name) for name in servers]) for servers in revisions]
        finally:
            await client.close()
        assert all(result.revision is not None for result in written)
        return int(written[-1].revision or 0)

    return asyncio.run(write())


def _catalog_revision(cluster: Cluster, namespace: str) -> Catalog:
    stored = cluster.get("configmap", "mcpfleet-catalog", "-n", namespace)["data"]["catalog.json"]
    return Catalog.model_validate_json(stored)


def _create_decoys(cluster: Cluster, namespace: str) -> set[str]:
    """ConfigMaps that are not the release's catalog history though they look alike: they must stay."""
    decoys = {
        "other-catalog-r1": "other-catalog",  # another catalog's history
        "mcpfleet-catalog-notes": "mcpfleet-catalog",  # this catalog's label, not a history name
    }
    for name, catalog in decoys.items():
        cluster.ok("create", "configmap", name, "-n", namespace)
        labels = (f"mcpfleet.io/catalog={catalog}", "mcpfleet.io/catalog-revision=1")
        cluster.ok("label", "configmap", name, "-n", namespace, *labels)
    return set(decoys)


def _reconciled_built_in(cluster: Cluster, namespace: str) -> None:
    for name in BUILT_IN:

        def reconciled(name: str = name) -> Manifest:
            return _status_ok(cluster, namespace, name)

        server = eventually(reconciled, within=60, what=f"the chart's {name} reconciled")
        assert server["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        _owned_deployment(cluster, namespace, server)


def _assert_only_the_crd_left(
    cluster: Cluster, release: str, namespace: str, objects: list[Manifest], decoys: set[str]
) -> None:
    """Nothing of the release but the CRD: its objects, its MCPServers, the grants the operator made for them,
    the hook's objects, the catalog and its history. The look-alike ConfigMaps stay."""
    eventually(lambda: existing(cluster, objects) <= KEPT, within=60, what="all of the release but the CRD gone")
    assert existing(cluster, objects) == KEPT
    assert cluster.get("mcps", "-n", namespace)["items"] == []
    # What the operator made for the built-in servers: the grants went with its finalizer, the namespaced objects
    # with their owner (the garbage collector).
    made = "clusterroles,clusterrolebindings,deployments,services,serviceaccounts,roles,rolebindings,configmaps"
    owned = ("-n", namespace, "-l", f"mcpfleet.io/owner-namespace={namespace}")
    eventually(lambda: cluster.get(made, *owned)["items"] == [], within=60, what="the operator's objects gone")
    instance = f"app.kubernetes.io/instance={release}"
    assert (
        cluster.get("all,serviceaccounts,roles,rolebindings,configmaps", "-n", namespace, "-l", instance)["items"] == []
    ), "the hook's objects went with it"
    configmaps = {item["metadata"]["name"] for item in cluster.get("configmaps", "-n", namespace)["items"]}
    assert {name for name in configmaps if name.startswith("mcpfleet-catalog")} == {"mcpfleet-catalog-notes"}
    assert decoys <= configmaps


def _run_cleanup_hook(helm: Helm, cluster: Cluster, release: str, namespace: str, tmp_path: Path) -> str:
    """The pre-delete hook as Helm would run it, without a kubelet: its ServiceAccount, Roles and RoleBindings
    created, the Job's exact arguments run by the image's entrypoint (`mcpfleet`) with a token of that account,
    then the hook objects deleted (hook-succeeded). The command's output."""
    stored = helm.run("get", "hooks", release, "--namespace", namespace, "--kubeconfig", str(cluster.kubeconfig))
    hooks = cleanup_hooks([doc for doc in yaml.safe_load_all(stored.stdout) if doc])
    job = one(hooks, "Job")
    rbac = [hook for hook in hooks if hook is not job]
    assert {hook["kind"] for hook in rbac} == {"ServiceAccount", "Role", "RoleBinding"}
    created = cluster.apply(rbac)
    assert created.returncode == 0, created.stderr
    account = job["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = _account_kubeconfig(cluster, namespace, account, tmp_path / "cleanup.kubeconfig")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mcpfleet"), *job_args(job)],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"the cleanup hook failed:\n{result.stdout}\n{result.stderr}"
    cluster.ok("delete", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    return result.stdout


def test_install_reconcile_upgrade_uninstall_with_the_charts_own_service_accounts(
    helm: Helm,
    cluster: Cluster,
    release_namespace: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    release, fullname = "hd", "hd-mcpfleet"
    notes = install(helm, cluster, release, release_namespace)
    sample = yaml.safe_load((SAMPLES_DIR / "mcpserver.yaml").read_text())
    assert _notes_sample(notes) == sample, "NOTES.txt shows samples/mcpserver.yaml"
    objects = release_objects(helm, cluster, release, release_namespace)
    assert existing(cluster, objects) == names_of(objects)

    _run_gateway(cluster, release_namespace, fullname, monkeypatch, tmp_path)

    # The operator as its Deployment runs it: the chart's environment and the chart's ServiceAccount. It watches
    # only this test's namespaces (other tests' MCPServers are theirs) on loopback ports.
    deployment = cluster.get("deployment", f"{fullname}-operator", "-n", release_namespace)
    for entry in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        assert "valueFrom" not in entry, f"the default operator reads no Secret: {entry}"
        monkeypatch.setenv(entry["name"], entry.get("value", ""))  # the API server drops empty values
    monkeypatch.setenv("MCPFLEET_OPERATOR_NAMESPACES", f"{namespace},{release_namespace}")
    kubeconfig = _account_kubeconfig(cluster, release_namespace, f"{fullname}-operator", tmp_path / "op.kubeconfig")
    operator = OperatorProcess(cluster, kubeconfig, tmp_path / "operator.log", free_port())
    operator.start()
    try:
        cluster.ok("apply", "-n", namespace, "-f", str(SAMPLES_DIR / "mcpserver.yaml"))
        server = eventually(lambda: _status_ok(cluster, namespace, "k8s-ops"), within=60, what="the sample reconciled")
        _owned_deployment(cluster, namespace, server)

        # The catalog as the operator leaves it once the built-in servers served their tools, history included. It
        # restarts from it, as an operator does, so their deletion is a change it writes as the next revision.
        operator.stop()
        built_in = [f"{release_namespace}/{name}" for name in BUILT_IN]
        revision = _write_catalog(cluster, release_namespace, [built_in[:1], built_in])
        decoys = _create_decoys(cluster, release_namespace)

        issued = _generated_secrets(cluster, release_namespace, fullname)
        helm.run(
            "upgrade", release, str(CHART), "--namespace", release_namespace, "--kubeconfig", str(cluster.kubeconfig),
            "--reuse-values", "--set", "gateway.replicas=3",
            "--set", "servers.k8sOps.enabled=true,servers.monitoring.enabled=true,servers.cmdb.enabled=true",
        )  # fmt: skip
        assert _generated_secrets(cluster, release_namespace, fullname) == issued, "generated keys stay"
        gateway = cluster.get("deployment", f"{fullname}-gateway", "-n", release_namespace)
        assert gateway["spec"]["replicas"] == 3
        assert _catalog_revision(cluster, release_namespace).revision == revision, "the upgrade kept the catalog"
        operator.start()
        _reconciled_built_in(cluster, release_namespace)
        owned = f"mcpfleet.io/owner-namespace={release_namespace}"
        assert cluster.get("clusterroles,clusterrolebindings", "-l", owned)["items"], "cluster-wide grants made"
        objects = release_objects(helm, cluster, release, release_namespace)

        output = _run_cleanup_hook(helm, cluster, release, release_namespace, tmp_path)
        assert f"mcpservers: 3 match app.kubernetes.io/component=server,app.kubernetes.io/instance={release}" in output
        assert "cleanup done: 3 MCPServer(s) and " in output
        assert _catalog_revision(cluster, release_namespace).servers == (), "the operator wrote it without them"
        assert cluster.get("clusterroles,clusterrolebindings", "-l", owned)["items"] == [], "its finalizer ran"
        mine = cluster.get("mcps", "k8s-ops", "-n", namespace)
        assert not mine["metadata"].get("deletionTimestamp"), "a person's MCPServer is not the release's"
        # docs/helm.md, "Uninstall": a person's own MCPServers go before the operator does.
        cluster.ok("delete", "mcps", "--all", "-n", namespace, "--timeout=60s")
        helm.run(
            "uninstall", release, "--namespace", release_namespace, "--kubeconfig", str(cluster.kubeconfig),
            "--no-hooks",
        )  # fmt: skip
        _assert_only_the_crd_left(cluster, release, release_namespace, objects, decoys)
        operator.assert_alive()
    finally:
        operator.stop()
    denied = [line for line in operator.log.read_text(errors="replace").splitlines() if "is forbidden: User" in line]
    assert not denied, "the chart's operator RBAC lacks a permission:\n" + "\n".join(denied[:20])
