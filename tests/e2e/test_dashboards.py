"""Every query of every shipped Grafana dashboard returns data from a real Prometheus after a short real workload.

On the real control plane: the operator (with a real Consul agent) reconciles the three built-in servers,
run as local processes and declared as external ``MCPServer`` objects, plus one whose ConfigMap name is
taken (a real reconcile error); the gateway serves them from the catalog ConfigMap with Redis for rate
limits and audit. A real MCP client then calls tools through the gateway, in two rounds with a scrape
between them (a counter has a rate only once Prometheus saw it move): calls that succeed, come from the
result cache, fail in the server, are refused by the server (a confirmation the gateway cannot relay),
denied by RBAC, rate limited, rejected for bad arguments, and a request without credentials. Prometheus
scrapes all of it every second.

Then each dashboard query runs as Grafana would send it: template variables at their All value,
``$__rate_interval`` as 1m; time series panels as range queries over the run, stat panels as instant
queries at its end. An invalid query (HTTP 400) or one without a single non-NaN value fails, naming the
dashboard, panel and query. Template variable queries (``label_values``) must find values too.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import MCPError

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_contracts.catalog import Catalog
from tests.consul_agent import ConsulAgent, running_consul
from tests.e2e.conftest import OPERATOR_NAMESPACE, REPO_ROOT, Cluster, OperatorProcess, eventually
from tests.e2e.servers import ServerProcess, clean_environment, start_server
from tests.integration.gateway.harness import GatewayProcess, config_document, mcp_client, token, write_config
from tests.prometheus_scrape import QueryAnswer, ScrapeTarget, ScrapingPrometheus, running_prometheus
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.timeout(600)

DASHBOARDS_DIR = REPO_ROOT / "charts" / "mcpfleet" / "dashboards"
CATALOG = "mcpfleet-catalog"
OPERATOR_JOB = "mcpfleet-operator"
PREFIXES = {"k8s-ops": "k8s", "monitoring": "monitoring", "cmdb": "cmdb"}
CLASH = "clash"  # an MCPServer whose ConfigMap name someone else's object holds
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval is with its default 15 s scrape interval
RANGE_STEP_SECONDS = 2.0
LIMITED_TOOL = "cmdb:get_change_records"
LIMIT = 2
CACHED_TOOL = "k8s:list_namespaces"
APP = "web"  # a Deployment the change tools aim at (they are refused: nobody can confirm through the gateway)
ROUNDS = 2
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


# ------------------------------------------------------------------------------------------- the queries


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    def where(self) -> str:
        return f"dashboard {self.dashboard!r}, panel {self.panel!r}, query {self.ref}"


def shipped_dashboards() -> dict[str, dict[str, Any]]:
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS_DIR}: run `make dashboards`"
    return {path.name: json.loads(path.read_text()) for path in files}


def all_values(document: dict[str, Any]) -> dict[str, str]:
    """Each query variable's All value (what Grafana substitutes when All is selected, the default)."""
    values = {"__rate_interval": RATE_INTERVAL, "__interval": f"{RANGE_STEP_SECONDS:g}s"}
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            assert variable.get("includeAll"), f"{variable['name']} offers no All"
            assert variable.get("allValue"), f"{variable['name']} has no All value"
            values[variable["name"]] = variable["allValue"]
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"{expr!r} uses ${name}, which the dashboard does not define"
        return values[name]

    return _VARIABLE.sub(value, expr)


def panel_queries(dashboards: dict[str, dict[str, Any]]) -> tuple[int, list[PanelQuery]]:
    panels, queries = 0, []
    for document in dashboards.values():
        values = all_values(document)
        for panel in document["panels"]:
            if panel["type"] == "row":
                continue
            panels += 1
            for target in panel["targets"]:
                queries.append(
                    PanelQuery(
                        document["title"],
                        panel["title"],
                        target["refId"],
                        substitute(target["expr"], values),
                        bool(target.get("instant")),
                    )
                )
    return panels, queries


def variable_queries(dashboards: dict[str, dict[str, Any]]) -> list[PanelQuery]:
    """label_values(selector, label) of each query variable, as an instant query for the label's values."""
    found = []
    for document in dashboards.values():
        values = all_values(document)
        for variable in document["templating"]["list"]:
            if variable["type"] != "query":
                continue
            parsed = _LABEL_VALUES.match(variable["query"])
            assert parsed, f"{document['title']}: variable {variable['name']} is not label_values(...)"
            selector = substitute(parsed["selector"], values)
            expr = f"count by ({parsed['label']}) ({selector})"
            found.append(PanelQuery(document["title"], f"${variable['name']}", "variable", expr, True))
    return found


def has_data(answer: QueryAnswer) -> bool:
    for series in answer.series:
        points = series.get("values") or [series.get("value")]
        if any(point and not math.isnan(float(point[1])) for point in points):
            return True
    return False


# ------------------------------------------------------------------------------------------ the platform


@pytest.fixture
def consul_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsulAgent]:
    """A Consul agent, and the operator's environment pointing at it (requested before `operator`)."""
    with running_consul(tmp_path / "consul") as agent:
        monkeypatch.setenv("MCPFLEET_OPERATOR_CONSUL_ADDRESS", agent.address)
        monkeypatch.setenv("MCPFLEET_OPERATOR_CONSUL_RETRY_SECONDS", "2")
        yield agent


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


def server_environment(server_type: str, cluster: Cluster, prometheus: ScrapingPrometheus) -> dict[str, str]:
    environment = clean_environment("K8S_", "MON_", "CMDB_", "POD_")
    environment["MCP_LOG_LEVEL"] = "INFO"
    kubeconfig = str(cluster.kubeconfig)
    environment.update(
        {
            "k8s-ops": {"K8S_KUBECONFIG_PATH": kubeconfig},
            "monitoring": {
                "MON_PROMETHEUS_URL": prometheus.url,
                # An Alertmanager that is down (nothing listens there): a real backend failure.
                "MON_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
                "MON_KUBECONFIG": kubeconfig,
            },
            "cmdb": {"CMDB_BACKEND": "kubernetes", "CMDB_KUBECONFIG_PATH": kubeconfig},
        }[server_type]
    )
    return environment


def app_deployment() -> dict[str, Any]:
    labels = {"app": APP}
    container = {"name": APP, "image": "registry.example/web:1.0"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def declare_servers(cluster: Cluster, namespace: str, servers: dict[str, ServerProcess]) -> None:
    """The servers as external MCPServers, one whose ConfigMap name is already taken, and the app."""
    taken = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{CLASH}-config"}, "data": {}}
    objects: list[dict[str, Any]] = [taken, app_deployment()]
    for server_type, process in servers.items():
        spec = {"type": server_type, "endpoint": process.url, "toolPrefix": PREFIXES[server_type]}
        objects.append(
            {"apiVersion": "mcpfleet.io/v1alpha1", "kind": "MCPServer", "metadata": {"name": server_type}, "spec": spec}
        )
    objects.append(
        {
            "apiVersion": "mcpfleet.io/v1alpha1",
            "kind": "MCPServer",
            "metadata": {"name": CLASH},
            "spec": {"type": "cmdb"},
        }
    )
    result = cluster.apply(objects, "-n", namespace)
    assert result.returncode == 0, result.stderr


def cataloged_prefixes(cluster: Cluster, namespace: str) -> set[str]:
    found = cluster.get("configmap", CATALOG, "-n", OPERATOR_NAMESPACE)
    catalog = Catalog.model_validate_json(found["data"]["catalog.json"])
    mine = {s.prefix for s in catalog.servers if s.name.startswith(f"{namespace}/") and s.tools}
    assert mine == set(PREFIXES.values()), f"catalog revision {catalog.revision} has {mine}"
    return mine


def consul_registered(agent: ConsulAgent, namespace: str) -> bool:
    mine = [s for s in agent.services().values() if (s.get("Meta") or {}).get("k8s_namespace") == namespace]
    assert len(mine) >= len(PREFIXES), f"registered in Consul: {[s['ID'] for s in mine]}"
    return True


def gateway_config(tmp_path: Path, cluster: Cluster, redis: RedisServer) -> Path:
    catalog = {
        "configmap": {"namespace": OPERATOR_NAMESPACE, "name": CATALOG},
        "kubeconfig": str(cluster.kubeconfig),
    }
    rate_limits = {"tool_limits": {LIMITED_TOOL: f"{LIMIT}/minute"}}
    document = config_document(
        tmp_path,
        upstreams={},
        redis_url=redis.url,
        catalog=catalog,
        rate_limits=rate_limits,
        tools={CACHED_TOOL: {"cache_ttl_seconds": 300}},
    )
    return write_config(tmp_path / "gateway.json", document)


# ------------------------------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Call:
    """One call through the gateway and what must come of it: ok, tool-error (a result with isError) or
    refused (a JSON-RPC error: denied, rate limited, invalid arguments)."""

    caller: str
    tool: str
    arguments: dict[str, Any]
    expect: str


def workload(namespace: str, round_number: int) -> list[Call]:
    """One round of calls; the rate-limited tool is allowed LIMIT calls a minute, all in the first round."""
    missing = {"namespace": namespace, "name": "no-such-thing"}
    app = {"namespace": namespace, "name": APP}
    calls = [
        Call("admin", CACHED_TOOL, {}, "ok"),
        Call("admin", CACHED_TOOL, {}, "ok"),  # from the gateway's result cache
        Call("viewer", "k8s:list_pods", {"namespace": namespace}, "ok"),
        Call("admin", "k8s:get_pod", missing, "tool-error"),
        Call("admin", "k8s:restart_deployment", app, "tool-error"),  # HIGH: needs a confirmation
        Call("viewer", "k8s:scale_deployment", {**app, "replicas": 2}, "refused"),  # RBAC: MEDIUM > viewer
        Call("admin", "k8s:list_pods", {"namespace": 7}, "refused"),  # invalid arguments
        Call("admin", "monitoring:query_metrics", {"query": "up"}, "ok"),
        Call("admin", "monitoring:get_targets", {}, "ok"),
        Call("admin", "monitoring:query_metrics", {"query": "sum(rate(up[1m]"}, "refused"),  # the server's invalid
        Call("admin", "monitoring:list_silences", {}, "tool-error"),  # its Alertmanager is down
        Call(
            "admin",
            "monitoring:create_silence",
            {"matchers": [{"name": "job", "value": "web"}], "author": "e2e", "comment": "dashboards test"},
            "tool-error",  # MEDIUM on monitoring needs a confirmation
        ),
        Call("admin", "cmdb:query_assets", {"limit": 5}, "ok"),
        Call("admin", "cmdb:get_asset", {"asset_id": f"deployment/{namespace}/no-such-thing"}, "tool-error"),
        Call(
            "admin",
            "cmdb:update_asset_status",
            {"asset_id": f"deployment/{namespace}/{APP}", "status": "maintenance", "reason": "e2e"},
            "tool-error",  # MEDIUM on cmdb needs a confirmation
        ),
    ]
    if round_number == 0:
        calls += [Call("admin", LIMITED_TOOL, {"limit": 1}, "ok")] * LIMIT
    calls.append(Call("admin", LIMITED_TOOL, {"limit": 1}, "refused"))
    return calls


async def run_round(gateway: GatewayProcess, namespace: str, round_number: int) -> list[str]:
    """One round of the workload; the calls whose result was not the expected one."""
    tokens = {"admin": token("ada", ("admin",)), "viewer": token("vic", ("viewer",))}
    url = f"{gateway.url}/mcp"
    surprises = []
    async with mcp_client(url, tokens["admin"]) as admin, mcp_client(url, tokens["viewer"]) as viewer:
        clients = {"admin": admin, "viewer": viewer}
        for attempt in range(100):  # the gateway may still be connecting to the upstreams it just read
            names = {tool.name for tool in (await admin.list_tools(cache_mode="refresh")).tools}
            if {"k8s:list_namespaces", "monitoring:query_metrics", LIMITED_TOOL} <= names:
                break
            assert attempt < 99, f"the gateway does not serve the cataloged tools: {sorted(names)}"
            await anyio.sleep(0.2)
        for call in workload(namespace, round_number):
            try:
                result = await clients[call.caller].call_tool(call.tool, call.arguments)
                got, detail = ("tool-error" if result.is_error else "ok"), str(result.content)[:300]
            except MCPError as exc:
                got, detail = "refused", str(exc)
            if got != call.expect:
                surprises.append(
                    f"{call.caller} {call.tool}({call.arguments}): {got}, expected {call.expect}: {detail}"
                )
    async with httpx2.AsyncClient(timeout=10) as http:  # no credentials: a denial before any tool
        answer = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        if answer.status_code != 401:
            surprises.append(f"a request without credentials got HTTP {answer.status_code}")
    return surprises


def run_workload(
    prometheus: ScrapingPrometheus, gateway: GatewayProcess, servers: dict[str, ServerProcess], namespace: str
) -> list[str]:
    """ROUNDS rounds, each scraped before the next: a counter only has a rate once it moved between scrapes."""
    surprises = []
    for round_number in range(ROUNDS):
        surprises += anyio.run(run_round, gateway, namespace, round_number)
        for server in servers.values():  # the readiness probe sets mcpfleet_backend_up
            assert server.http_json("/ready")[0] == 200
        prometheus.wait_scraped_since(time.time() + 1)
    return surprises


# ------------------------------------------------------------------------------------------------ the test


def test_every_panel_query_of_every_dashboard_returns_data(
    cluster: Cluster,
    namespace: str,
    consul_agent: ConsulAgent,
    operator: OperatorProcess,
    redis: RedisServer,
    tmp_path: Path,
    summary_line: Callable[[str], None],
) -> None:
    dashboards = shipped_dashboards()
    server_ports = {server_type: free_port() for server_type in PREFIXES}
    gateway = GatewayProcess(gateway_config(tmp_path, cluster, redis), "gw-dashboards", tmp_path / "gateway.log")
    targets = [
        ScrapeTarget(OPERATOR_JOB, f"127.0.0.1:{operator.metrics_port}", {"namespace": OPERATOR_NAMESPACE}),
        ScrapeTarget("mcpfleet-gateway", f"127.0.0.1:{gateway.port}", {"namespace": OPERATOR_NAMESPACE}),
        *(
            ScrapeTarget(f"mcp-{server_type}", f"127.0.0.1:{port}", {"namespace": namespace})
            for server_type, port in server_ports.items()
        ),
    ]
    with running_prometheus(tmp_path / "prometheus", targets) as prometheus:
        started = time.time()
        # A histogram has quantiles only once Prometheus saw it move: scraped before the first reconcile.
        prometheus.wait_scraped_since(started, jobs=[OPERATOR_JOB])
        servers: dict[str, ServerProcess] = {}
        try:
            for server_type, port in server_ports.items():
                environment = server_environment(server_type, cluster, prometheus)
                servers[server_type] = start_server(
                    server_type, tmp_path / f"{server_type}.log", environment, port=port
                )
            declare_servers(cluster, namespace, servers)
            eventually(lambda: cataloged_prefixes(cluster, namespace), within=90, what="the servers in the catalog")
            eventually(lambda: consul_registered(consul_agent, namespace), within=60, what="the Consul registrations")
            eventually(
                lambda: operator.metric("mcpfleet_operator_errors_total", error="temporary") >= 1,
                within=60,
                what=f"the operator's reconcile error for {CLASH} (its ConfigMap name is taken)",
            )
            gateway.start(timeout=60)
            try:
                surprises = run_workload(prometheus, gateway, servers, namespace)
                evaluated_at = time.time()
                failures = execute(prometheus, dashboards, started, evaluated_at, summary_line)
                # Checked while they run: a server stopped with the operator's tool-list stream open logs
                # the cancelled stream at shutdown, which is not what this test is about.
                for server in servers.values():
                    server.assert_no_traceback()
            finally:
                gateway.stop()
        finally:
            for server in servers.values():
                server.stop()
    problems = [f"the workload did not go as planned: {surprise}" for surprise in surprises] + failures
    assert not problems, f"{len(failures)} dashboard queries failed:\n" + "\n".join(problems)


def execute(
    prometheus: ScrapingPrometheus,
    dashboards: dict[str, dict[str, Any]],
    start: float,
    end: float,
    report: Callable[[str], None],
) -> list[str]:
    """Run every panel and variable query; the failures, each naming its dashboard, panel and query."""
    panels, queries = panel_queries(dashboards)
    variables = variable_queries(dashboards)
    failures = []
    # Steps counted back from the end: the last one is at `end`, after the final scrape.
    first_step = end - RANGE_STEP_SECONDS * int((end - start) // RANGE_STEP_SECONDS)
    for query in [*queries, *variables]:
        if query.instant:
            answer = prometheus.query(query.expr, at=end)
        else:
            answer = prometheus.query_range(query.expr, first_step, end, RANGE_STEP_SECONDS)
        if not answer.ok:
            failures.append(f"{query.where()}: invalid: {answer.error}\n    {query.expr}")
        elif not has_data(answer):
            failures.append(f"{query.where()}: no data\n    {query.expr}")
    report(
        f"dashboards: executed {panels} panels, {len(queries)} queries on {len(dashboards)} dashboards "
        f"(and {len(variables)} template variable queries), {len(failures)} failed"
    )
    return failures
