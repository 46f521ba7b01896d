"""The Helm chart (charts/mcpfleet), with the toolchain's helm: rendered, linted, and installed on the real
control plane.

Rendering checks what a reviewer would: the operator's RBAC is exactly `mcpfleet rbac print`'s, the CRD is
crds/, the gateway config passes `mcpfleet config validate` with the environment its Deployment gives it, every
container runs as non-root with resources, the alerts fire on the series that should fire them (promtool).

Installing checks what a user would see: each ci/ values file installs the objects it renders and uninstalls
to nothing but the CRD and the catalog ConfigMap (both `helm.sh/resource-policy: keep`). With the default
values the operator and the gateway run locally (no kubelet: Pods never run here) with tokens of the chart's
own ServiceAccounts, so the chart's RBAC is what they get: the operator reconciles samples/mcpserver.yaml and
the gateway reads the catalog and admits the bootstrap API key. `helm upgrade` then changes what it should and
keeps what the operator wrote.

The cluster already holds the MCPServer CRD (the session applies crds/ with kubectl), so releases that install
it adopt it with `--take-ownership`, as a user moving from `kubectl apply -f crds/` to the chart would.
"""

from __future__ import annotations

import base64
import collections
import functools
import json
import os
import re
import shutil
import subprocess
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

from mcpfleet_cli.devcluster.cluster import free_port, write_kubeconfig
from mcpfleet_cli.main import app
from mcpfleet_contracts.catalog import Catalog
from mcpfleet_contracts.mcpserver import MCPServerSpec
from mcpfleet_operator.builders.report_policy import report_policy
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
KEPT = {("CustomResourceDefinition", "mcpservers.mcpfleet.io"), ("ConfigMap", "mcpfleet-catalog")}
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
    assert seen >= 3, "operator, gateway and the test Pod at least"


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

    helm.run("uninstall", release, "--namespace", release_namespace, "--kubeconfig", str(cluster.kubeconfig))
    left = eventually(
        lambda: (found := existing(cluster, objects)) <= KEPT and found, within=30, what="everything but the kept gone"
    )
    assert left == names_of(objects) & KEPT


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

        # What the operator wrote to the catalog (as it does on a tool change) must survive the upgrade.
        catalog = cluster.get("configmap", "mcpfleet-catalog", "-n", release_namespace)
        written = Catalog.model_validate_json(catalog["data"]["catalog.json"]).model_copy(update={"revision": 7})
        catalog["data"]["catalog.json"] = written.dump()
        cluster.ok("replace", "-f", "-", stdin=json.dumps(catalog))

        key_secret = f"{fullname}-gateway-bootstrap-key"
        issued_key = cluster.get("secret", key_secret, "-n", release_namespace)["data"]
        helm.run(
            "upgrade", release, str(CHART), "--namespace", release_namespace, "--kubeconfig", str(cluster.kubeconfig),
            "--reuse-values", "--set", "gateway.replicas=3", "--set", "servers.k8sOps.enabled=true",
        )  # fmt: skip
        assert cluster.get("secret", key_secret, "-n", release_namespace)["data"] == issued_key, "the key stays"
        gateway = cluster.get("deployment", f"{fullname}-gateway", "-n", release_namespace)
        assert gateway["spec"]["replicas"] == 3
        built_in = eventually(
            lambda: _status_ok(cluster, release_namespace, "k8s-ops"), within=60, what="the chart's k8s-ops reconciled"
        )
        assert built_in["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        _owned_deployment(cluster, release_namespace, built_in)
        kept = cluster.get("configmap", "mcpfleet-catalog", "-n", release_namespace)["data"]["catalog.json"]
        assert Catalog.model_validate_json(kept).revision == 7, "the upgrade kept the operator's catalog"

        # docs/helm.md, "Uninstall": MCPServers go first, while the operator runs, because its finalizer removes
        # what it made for them (cluster-wide grants included). Helm would delete the operator at the same time.
        cluster.ok("delete", "mcps", "k8s-ops", "-n", namespace, "--timeout=60s")
        helm.run(
            "upgrade", release, str(CHART), "--namespace", release_namespace, "--kubeconfig", str(cluster.kubeconfig),
            "--reuse-values", "--set", "servers.k8sOps.enabled=false",
        )  # fmt: skip
        eventually(
            lambda: cluster.kubectl("get", "mcps", "k8s-ops", "-n", release_namespace).returncode != 0,
            within=60,
            what="the disabled built-in server deleted",
        )
        grants = cluster.get("clusterroles", "-l", f"mcpfleet.io/owner-namespace={release_namespace}")["items"]
        assert grants == [], "the operator removed the server's cluster-wide grant"

        objects = release_objects(helm, cluster, release, release_namespace)
        helm.run("uninstall", release, "--namespace", release_namespace, "--kubeconfig", str(cluster.kubeconfig))
        left = eventually(
            lambda: (found := existing(cluster, objects)) <= KEPT and found, within=60, what="all but the kept gone"
        )
        assert left == KEPT
        operator.assert_alive()
    finally:
        operator.stop()
    denied = [line for line in operator.log.read_text(errors="replace").splitlines() if "is forbidden: User" in line]
    assert not denied, "the chart's operator RBAC lacks a permission:\n" + "\n".join(denied[:20])
