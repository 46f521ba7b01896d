"""The pure parts of `mcpfleet dev`: the objects it puts in the cluster, the configs and token it makes, its state
directory and ready file, what it prints, and `make run`'s wiring. The running platform is tested end to end in
tests/e2e/test_dev_platform.py."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcpfleet_cli.devplatform import configs, manifests
from mcpfleet_cli.devplatform.layout import MARKER, Layout, LayoutError
from mcpfleet_cli.devplatform.manifests import LocalServer
from mcpfleet_cli.devplatform.platform import Ports, child_environment
from mcpfleet_cli.devplatform.ready import ReadyFileError, ReadyInfo, is_running, read_ready, write_ready
from mcpfleet_cli.devplatform.summary import summary_lines
from mcpfleet_contracts.catalog import Catalog
from mcpfleet_contracts.mcpserver import MCPServerSpec, ServerType
from mcpfleet_gateway.auth import Authenticator, Unauthenticated
from mcpfleet_gateway.config import GatewayConfig, expand_env
from mcpfleet_operator.builders.defaults import effective_rbac
from mcpfleet_operator.builders.model import LABEL_MANAGED_BY, LABEL_OWNER_UID
from tests.unit.helpers import REPO_ROOT

SERVERS = [
    LocalServer(ServerType.K8S_OPS, 41001),
    LocalServer(ServerType.MONITORING, 41002),
    LocalServer(ServerType.CMDB, 41003),
]


# -- objects in the cluster ----------------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_a_local_server_gets_the_identity_the_operator_would_give_it_owned_by_nothing(server: LocalServer) -> None:
    objects = manifests.server_identity(server)
    kinds = [m["kind"] for m in objects]
    assert kinds[0] == "ServiceAccount"
    assert objects[0]["metadata"] == {**objects[0]["metadata"], "name": server.name, "namespace": "mcpfleet-system"}
    for manifest in objects:
        metadata = manifest["metadata"]
        assert "ownerReferences" not in metadata, "nothing owns it: the garbage collector must leave it alone"
        assert LABEL_OWNER_UID not in metadata["labels"]
        assert metadata["labels"][LABEL_MANAGED_BY] == "mcpfleet-dev", "not the operator's to adopt or delete"
    cluster_roles = [m for m in objects if m["kind"] == "ClusterRole"]
    assert len(cluster_roles) == 1
    spec = MCPServerSpec.model_validate(manifests._in_cluster_spec(server.server_type))
    assert cluster_roles[0]["rules"] == effective_rbac(spec)[1]
    assert all(verb in ("get", "list", "watch") for rule in cluster_roles[0]["rules"] for verb in rule["verbs"]), (
        "the type's default preset is read-only"
    )


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_each_server_is_an_external_mcpserver_at_its_loopback_endpoint(server: LocalServer) -> None:
    manifest = manifests.external_mcpserver(server)
    spec = MCPServerSpec.model_validate(manifest["spec"])  # the CRD's cross-field rules hold
    assert spec.endpoint == f"http://127.0.0.1:{server.port}/mcp"
    assert spec.tool_prefix == {"k8s-ops": "k8s", "monitoring": "monitoring", "cmdb": "cmdb"}[server.name]
    assert spec.image is None
    assert manifest["metadata"]["namespace"] == "mcpfleet-system"


def test_the_gateway_may_only_get_and_watch_the_catalog_configmap() -> None:
    account, role, binding = manifests.gateway_reader("mcpfleet-catalog")
    assert account["kind"] == "ServiceAccount"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["mcpfleet-catalog"],
            "verbs": ["get", "watch"],
        }
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mcpfleet-gateway", "namespace": "mcpfleet-system"}
    ]


def test_the_namespace_comes_before_what_lives_in_it() -> None:
    documents = manifests.platform_manifests()
    kinds = [d["kind"] for d in documents]
    assert kinds[:2] == ["CustomResourceDefinition", "Namespace"]
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= set(kinds)
    assert "ValidatingAdmissionPolicy" in kinds, "the tool report's admission policy (`mcpfleet rbac print`)"


# -- configs and the token -----------------------------------------------------------------------------------


def gateway_document(tmp_path: Path, port: int = 8765) -> dict[str, Any]:
    return configs.gateway_config(
        port=port,
        redis_url="redis://127.0.0.1:6390/0",
        audit_dir=tmp_path / "audit",
        catalog_namespace="mcpfleet-system",
        catalog_name="mcpfleet-catalog",
        kubeconfig=tmp_path / "gateway.kubeconfig",
    )


def test_the_gateway_config_is_valid_and_keeps_the_signing_secret_out_of_the_file(tmp_path: Path) -> None:
    document = gateway_document(tmp_path)
    assert "s3cret-signing-key" not in str(document)
    config = GatewayConfig.model_validate(expand_env(document, {configs.TOKEN_SECRET_ENV: "s3cret-signing-key"}))
    assert config.listen.host == "127.0.0.1"
    assert config.catalog.configmap is not None
    assert config.catalog.configmap.namespace == "mcpfleet-system"
    assert config.rate_limits.user_limit is not None
    assert config.redis.url is not None
    assert config.audit.log_path == tmp_path / "audit" / "audit-{replica}.jsonl"


async def test_the_minted_token_is_accepted_by_the_gateway_as_an_admin(tmp_path: Path) -> None:
    config = GatewayConfig.model_validate(
        expand_env(gateway_document(tmp_path, 9000), {configs.TOKEN_SECRET_ENV: "k" * 32})
    )
    token = configs.mint_token("k" * 32, 9000)
    principal = await Authenticator(config.auth).authenticate(f"Bearer {token}")
    assert principal.roles == ("admin",)
    assert principal.subject == "developer"

    other_port = configs.mint_token("k" * 32, 9001)
    with pytest.raises(Unauthenticated, match="audience"):
        await Authenticator(config.auth).authenticate(f"Bearer {other_port}")


def test_the_client_config_names_the_gateway_and_refers_to_the_token() -> None:
    catalog = Catalog(revision=1, generated_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), servers=[])
    document = configs.client_config(catalog, 8765)
    assert document == {
        "mcpServers": {
            "mcpfleet": {
                "type": "http",
                "url": "http://127.0.0.1:8765/mcp",
                "headers": {"Authorization": "Bearer ${MCPFLEET_TOKEN}"},
            }
        }
    }


def test_prometheus_scrapes_one_job_per_component_and_itself() -> None:
    targets = [
        configs.ScrapeTarget("mcpfleet-operator", 1),
        configs.ScrapeTarget("mcpfleet-servers", 2, {"server": "k8s-ops"}),
        configs.ScrapeTarget("mcpfleet-servers", 3, {"server": "cmdb"}),
    ]
    document = configs.prometheus_config(targets, own_port=9)
    jobs = {job["job_name"]: job["static_configs"] for job in document["scrape_configs"]}
    assert jobs["mcpfleet-operator"] == [{"targets": ["127.0.0.1:1"]}]
    assert jobs["mcpfleet-servers"] == [
        {"targets": ["127.0.0.1:2"], "labels": {"server": "k8s-ops"}},
        {"targets": ["127.0.0.1:3"], "labels": {"server": "cmdb"}},
    ]
    assert jobs["prometheus"] == [{"targets": ["127.0.0.1:9"]}]


def test_ports_are_all_different_and_a_chosen_gateway_port_is_kept() -> None:
    ports = Ports.allocate(8765)
    assert ports.gateway == 8765
    every = [ports.redis, ports.prometheus, ports.operator_metrics, ports.consul_http]
    every += [*ports.consul_other.values(), *ports.servers.values()]
    assert len(set(every)) == len(every)
    assert set(ports.servers) == set(manifests.BUILT_IN)
    assert Ports.allocate(0).gateway != 0


def test_a_developers_shell_settings_do_not_reach_the_children(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KUBECONFIG", "MCP_READ_ONLY", "K8S_NAMESPACE", "MON_PROMETHEUS_URL", "MCPFLEET_OPERATOR_PEERING"):
        monkeypatch.setenv(name, "from-the-shell")
    environment = child_environment(KUBECONFIG="/mine")
    assert environment["KUBECONFIG"] == "/mine"
    assert not {"MCP_READ_ONLY", "K8S_NAMESPACE", "MON_PROMETHEUS_URL", "MCPFLEET_OPERATOR_PEERING"} & set(environment)
    assert environment["PATH"] == os.environ["PATH"]


# -- the state directory and the ready file ------------------------------------------------------------------


def test_a_directory_that_is_not_ours_is_never_wiped(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(LayoutError, match="not `mcpfleet dev`'s"):
        Layout(tmp_path).prepare()
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_previous_runs_directory_starts_afresh_and_cleanup_keeps_logs_and_audit(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "dev")
    layout.prepare()
    (layout.logs / "operator.log").write_text("old run")
    layout.prepare()
    assert not (layout.logs / "operator.log").exists()
    assert (layout.root / MARKER).exists()
    assert int(layout.pid_file.read_text()) == os.getpid()
    assert oct(layout.root.stat().st_mode & 0o777) == "0o700"

    (layout.logs / "gateway.log").write_text("kept")
    (layout.config / "gateway.json").write_text("{}")
    layout.cleanup()
    assert (layout.logs / "gateway.log").exists()
    assert layout.audit.exists()
    assert not layout.config.exists()
    assert not layout.pid_file.exists()


def ready_info(pid: int) -> ReadyInfo:
    return ReadyInfo(
        url="http://127.0.0.1:8765",
        mcp_url="http://127.0.0.1:8765/mcp",
        token="secret-token",
        kubeconfig="/state/cluster/kubeconfig",
        redis="redis://127.0.0.1:1/0",
        operator_metrics="http://127.0.0.1:2/metrics",
        logs="/state/logs",
        pid=pid,
        started_at="2026-01-01T00:00:00+00:00",
    )


def test_the_ready_file_is_private_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "ready.json"
    assert read_ready(path) is None
    write_ready(path, ready_info(123))
    assert oct(path.stat().st_mode & 0o777) == "0o600", "it holds the token"
    assert read_ready(path) == ready_info(123)

    path.write_text('{"url": 1}')
    with pytest.raises(ReadyFileError, match="not a ready file"):
        read_ready(path)


def test_a_ready_file_whose_writer_is_gone_is_not_running() -> None:
    assert not is_running(ready_info(2**22 + 17))  # above any pid this machine hands out


# -- what it prints ------------------------------------------------------------------------------------------


def test_the_summary_shows_the_token_once_the_kubeconfig_and_how_to_stop() -> None:
    catalog = Catalog(revision=3, generated_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), servers=[])
    lines = summary_lines(
        ready_info(1), SERVERS, catalog, port=8765, ready_file=Path("/state/ready.json"), elapsed_seconds=21.4
    )
    text = "\n".join(lines)
    assert text.count("secret-token") == 1
    assert "export MCPFLEET_TOKEN=secret-token" in text
    assert "export KUBECONFIG=/state/cluster/kubeconfig" in text
    assert "http://127.0.0.1:8765/mcp" in text
    assert '"Authorization": "Bearer ${MCPFLEET_TOKEN}"' in text
    assert "consul      not running" in text
    assert text.rstrip().endswith("Ctrl-C stops everything.")


# -- make run ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "command"), [("run", ".venv/bin/mcpfleet dev"), ("doctor", ".venv/bin/mcpfleet doctor")]
)
def test_make_targets_run_the_commands(target: str, command: str) -> None:
    dry = subprocess.run(["make", "-n", "-C", str(REPO_ROOT), target], capture_output=True, text=True, check=False)
    assert dry.returncode == 0, dry.stderr
    steps = [line.strip() for line in dry.stdout.splitlines() if line.strip() and not line.startswith("make")]
    assert steps[-1] == command
    if target == "run":
        assert "hack/system-deps.sh" in steps, "make run installs redis-server and prometheus when missing"
