"""mcpfleet's Grafana dashboards as code; `python hack/dashboards/dashboards.py` writes them into the chart.

A build-time tool, not part of the installed package: the image has no use for it, and its library
(grafana-foundation-sdk) is a development dependency.

Each dashboard reads one Prometheus data source chosen by the ``datasource`` variable; the namespace, job
and instance variables default to All (``.*``), so every query matches a Prometheus whatever labels its
scrape configuration gives the targets. The per-server dashboards select their server type by joining
with ``mcpfleet_server_info{type=...}`` on the target (job, instance), not by a job name, which differs
between installations. The chart ships the JSON files as ConfigMaps labelled for Grafana's sidecar
(docs/dashboards.md); `make dashboards` regenerates them and the unit tests fail while they are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

OUT_DIR = Path(__file__).resolve().parents[2] / "charts" / "mcpfleet" / "dashboards"
TAG = "mcpfleet"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
ALL_VALUE = ".*"
RATE = "$__rate_interval"
BUILTIN_SERVERS = ("k8s-ops", "monitoring", "cmdb")
QUANTILES = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))
# Gateway outcomes that are failures of the call itself; refusals (denied, rate-limited, invalid) are not errors.
GATEWAY_ERRORS = "tool-error|upstream-error|timeout"
GRID_WIDTH = 24
STAT_WIDTH, STAT_HEIGHT = 4, 4
GRAPH_WIDTH, GRAPH_HEIGHT = 12, 8
UP_MAPPING = ValueMap(
    {"0": ValueMappingResult(text="down", color="red"), "1": ValueMappingResult(text="up", color="green")}
)


# ----------------------------------------------------------------------------------------------- queries


def matchers(*variables: str, **fixed: str) -> str:
    """A label matcher list: each variable as ``name=~"$name"``, then the fixed ``name="value"`` pairs."""
    parts = [f'{name}=~"${name}"' for name in variables] + [f'{name}="{value}"' for name, value in fixed.items()]
    return "{" + ", ".join(parts) + "}"


def with_extra(selector: str, extra: str) -> str:
    """``{a=~"$a"}`` plus ``b="c"`` → ``{a=~"$a", b="c"}``."""
    return selector[:-1] + ", " + extra + "}"


def quantile(q: float, buckets: str, by: str = "") -> str:
    """histogram_quantile over the rate of a histogram's buckets, grouped by ``le`` and ``by``."""
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) ({buckets}))"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"


# ------------------------------------------------------------------------------------------------ panels


def _targets(queries: Sequence[Query], *, instant: bool) -> list[prometheus.Dataquery]:
    built = []
    for index, query in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
        )
        built.append(target.instant() if instant else target.range())
    return built


def graph(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = GRAPH_WIDTH,
    up_down: bool = False,
) -> timeseries.Panel:
    """A time series panel (range queries, what happened over the dashboard's time range)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets(queries, instant=False)))
        .unit(unit)
        .span(width)
        .height(GRAPH_HEIGHT)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            gcommon.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(gcommon.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    )
    if up_down:
        panel = panel.mappings([UP_MAPPING]).min(0).max(1)
    return panel


def single(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
    up_down: bool = False,
) -> stat.Panel:
    """A stat panel: one instant query, the value now."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(_targets([query], instant=True)))
        .unit(unit)
        .span(STAT_WIDTH)
        .height(STAT_HEIGHT)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(gcommon.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(
            gdash.ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=value, color=color) for value, color in thresholds])
        )
    )
    if up_down:
        panel = panel.mappings([UP_MAPPING])
    return panel


def variable(name: str, label: str, query: str) -> gdash.QueryVariable:
    """A multi-value query variable whose default is All, matching every value (and series without the label)."""
    return (
        gdash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(ALL_VALUE)
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def target_variables(metric: str, replica: str) -> list[gdash.QueryVariable]:
    """namespace, job and instance, each narrowed by the ones before it, from a metric every target exposes."""
    return [
        variable("namespace", "Namespace", f"label_values({metric}, namespace)"),
        variable("job", "Job", f'label_values({metric}{{namespace=~"$namespace"}}, job)'),
        variable("instance", replica, f'label_values({metric}{{namespace=~"$namespace", job=~"$job"}}, instance)'),
    ]


@dataclass
class Board:
    """One dashboard: its file, uid, title, variables and rows of panels."""

    file: str
    uid: str
    title: str
    description: str
    variables: list[gdash.QueryVariable] = field(default_factory=list)
    rows: list[tuple[str, list[stat.Panel | timeseries.Panel]]] = field(default_factory=list)

    def row(self, title: str, *panels: stat.Panel | timeseries.Panel) -> None:
        self.rows.append((title, list(panels)))

    def build(self) -> dict[str, Any]:
        builder = (
            gdash.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags([TAG])
            .editable()
            .tooltip(DashboardCursorSync.CROSSHAIR)
            .time("now-1h", "now")
            .refresh("30s")
            .timezone("browser")
            .with_variable(gdash.DatasourceVariable("datasource").label("Data source").type("prometheus").regex(""))
        )
        for query_variable in self.variables:
            builder = builder.with_variable(query_variable)
        for title, panels in self.rows:
            builder = builder.with_row(gdash.Row(title))
            for panel in panels:
                builder = builder.with_panel(panel)
        document: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
        for number, panel in enumerate(document["panels"], start=1):
            panel["id"] = number  # stable ids: Grafana links and embeds panels by id
        return document


# ------------------------------------------------------------------------------------ platform overview


def overview() -> Board:
    gw = matchers("namespace", "job", "instance")
    calls_selector = with_extra(gw, 'server=~"$server"')
    calls = "mcpfleet_gateway_tool_calls_total" + calls_selector
    errors = "mcpfleet_gateway_tool_calls_total" + with_extra(calls_selector, f'outcome=~"{GATEWAY_ERRORS}"')
    refused = "mcpfleet_gateway_tool_calls_total" + with_extra(calls_selector, 'outcome=~"denied|rate-limited"')
    latency = f"rate(mcpfleet_gateway_tool_call_duration_seconds_bucket{calls_selector}[{RATE}])"
    upstream_latency = f"rate(mcpfleet_gateway_upstream_call_duration_seconds_bucket{gw}[{RATE}])"
    board = Board(
        "mcpfleet-overview.json",
        "mcpfleet-overview",
        "mcpfleet / Platform overview",
        "Tool calls through the mcpfleet gateway: traffic, errors, latency, refusals, audit, upstreams and catalog.",
        [
            *target_variables("mcpfleet_gateway_tools", "Gateway replica"),
            variable("server", "Server prefix", f"label_values(mcpfleet_gateway_tool_calls_total{gw}, server)"),
        ],
    )
    board.row(
        "Now",
        single(
            "Tool calls/s", "Tool calls answered or refused per second.", "reqps", Query(f"sum(rate({calls}[{RATE}]))")
        ),
        single(
            "Error ratio",
            f"Share of calls that failed ({GATEWAY_ERRORS.replace('|', ', ')}); refusals are not errors.",
            "percentunit",
            Query(f"sum(rate({errors}[{RATE}])) / sum(rate({calls}[{RATE}]))"),
            thresholds=((None, "green"), (0.01, "orange"), (0.05, "red")),
        ),
        single(
            "Refused calls/s",
            "Calls denied by RBAC or refused by a rate limit, per second.",
            "reqps",
            Query(f"sum(rate({refused}[{RATE}]))"),
            thresholds=((None, "green"), (0.1, "orange")),
        ),
        single(
            "Calls in flight",
            "Tool calls being answered by upstreams right now, all replicas.",
            "short",
            Query(f"sum(mcpfleet_gateway_calls_in_flight{gw})"),
        ),
        single(
            "Audit backlog",
            "Audit records not yet in every sink (in memory or spooled on disk); growing means a sink is down.",
            "short",
            Query(f"sum(mcpfleet_gateway_audit_backlog{gw})"),
            thresholds=((None, "green"), (100, "orange"), (1000, "red")),
        ),
        single(
            "Catalog revision",
            "Catalog revision served by the gateway (lowest of the replicas: one behind shows here).",
            "none",
            Query(f"min(mcpfleet_gateway_catalog_revision{gw})"),
        ),
    )
    board.row(
        "Traffic",
        graph(
            "Tool calls/s by server",
            "Calls per second by server prefix (k8s, monitoring, cmdb, ...), all outcomes.",
            "reqps",
            Query(f"sum by (server) (rate({calls}[{RATE}]))", "{{server}}"),
        ),
        graph(
            "Tool calls/s by tool",
            "The 20 busiest tools, calls per second, all outcomes.",
            "reqps",
            Query(f"topk(20, sum by (tool) (rate({calls}[{RATE}])))", "{{tool}}"),
        ),
        graph(
            "Tool calls/s by outcome",
            "ok, cached, tool-error, upstream-error, timeout, denied, rate-limited, invalid, unknown-tool.",
            "reqps",
            Query(f"sum by (outcome) (rate({calls}[{RATE}]))", "{{outcome}}"),
        ),
        graph(
            "Error ratio by server",
            f"Share of each server's calls that failed ({GATEWAY_ERRORS.replace('|', ', ')}).",
            "percentunit",
            Query(f"sum by (server) (rate({errors}[{RATE}])) / sum by (server) (rate({calls}[{RATE}]))", "{{server}}"),
        ),
    )
    board.row(
        "Latency",
        graph(
            "Call latency p50 / p95 / p99",
            "From a call's arrival at the gateway to its answer, over all tools.",
            "s",
            *(Query(quantile(q, latency), name) for q, name in QUANTILES),
        ),
        graph(
            "Call latency p95 by server",
            "95th percentile per server prefix.",
            "s",
            Query(quantile(0.95, latency, "server"), "{{server}}"),
        ),
    )
    board.row(
        "Refusals and rate limits",
        graph(
            "Denials/s by reason",
            "Refused requests: unauthenticated, denied (RBAC), rate-limited, invalid arguments, unknown tool, "
            "and the HTTP hardening checks.",
            "reqps",
            Query(f"sum by (reason) (rate(mcpfleet_gateway_denials_total{gw}[{RATE}]))", "{{reason}}"),
        ),
        graph(
            "Rate-limit decisions/s",
            "Decisions by the scope that refused (none when allowed), result and backend (redis or local).",
            "reqps",
            Query(
                f"sum by (scope, result, backend) (rate(mcpfleet_gateway_ratelimit_decisions_total{gw}[{RATE}]))",
                "{{result}} {{scope}} ({{backend}})",
            ),
        ),
    )
    board.row(
        "Audit",
        graph(
            "Audit backlog",
            "Records submitted but not yet written to every sink, per replica.",
            "short",
            Query(f"sum by (instance) (mcpfleet_gateway_audit_backlog{gw})", "{{instance}}"),
        ),
        graph(
            "Audit records/s by sink and outcome",
            "log ok/error; redis ok, duplicate, error, lost, conflict; spool spooled or overflow.",
            "ops",
            Query(
                f"sum by (sink, outcome) (rate(mcpfleet_gateway_audit_records_total{gw}[{RATE}]))",
                "{{sink}} {{outcome}}",
            ),
        ),
    )
    board.row(
        "Upstreams and catalog",
        graph(
            "Upstream health",
            "1 when the last health check or request reached the upstream (lowest of the replicas).",
            "none",
            Query(f"min by (upstream) (mcpfleet_gateway_upstream_up{gw})", "{{upstream}}"),
            up_down=True,
        ),
        graph(
            "Circuit breakers open",
            "1 while an upstream's circuit breaker is open or half-open on any replica.",
            "none",
            Query(f"max by (upstream) (mcpfleet_gateway_upstream_breaker_open{gw})", "{{upstream}}"),
        ),
        graph(
            "Upstream calls/s by outcome",
            "Requests the gateway sent to each upstream, by outcome.",
            "reqps",
            Query(
                f"sum by (upstream, outcome) (rate(mcpfleet_gateway_upstream_calls_total{gw}[{RATE}]))",
                "{{upstream}} {{outcome}}",
            ),
        ),
        graph(
            "Upstream latency p95",
            "Time an upstream took to answer a tool call (retries included).",
            "s",
            Query(quantile(0.95, upstream_latency, "upstream"), "{{upstream}}"),
        ),
        graph(
            "Catalog revision: operator and gateway",
            "The revision the operator wrote and the revisions the gateway replicas serve; a gap that stays "
            "means a gateway does not follow the catalog.",
            "none",
            Query('max(mcpfleet_operator_catalog_revision{namespace=~"$namespace"})', "operator"),
            Query(f"min(mcpfleet_gateway_catalog_revision{gw})", "gateway (lowest)"),
        ),
        graph(
            "Result cache lookups/s",
            "Lookups of the result cache (SAFE tools only) by result.",
            "ops",
            Query(f"sum by (result) (rate(mcpfleet_gateway_cache_lookups_total{gw}[{RATE}]))", "{{result}}"),
        ),
    )
    return board


# --------------------------------------------------------------------------------------------- operator


def operator() -> Board:
    op = matchers("namespace", "job", "instance")
    board = Board(
        "mcpfleet-operator.json",
        "mcpfleet-operator",
        "mcpfleet / Operator",
        "The MCPServer operator: reconciliations, errors, the tool catalog and Consul registrations.",
        [
            *target_variables("mcpfleet_operator_managed_objects", "Operator replica"),
        ],
    )
    board.row(
        "Now",
        single(
            "Managed MCPServers",
            "MCPServer objects the operator manages.",
            "short",
            Query(f"max(mcpfleet_operator_managed_objects{op})"),
        ),
        single(
            "Catalog revision",
            "Revision of the catalog ConfigMap last written or read.",
            "none",
            Query(f"max(mcpfleet_operator_catalog_revision{op})"),
        ),
        single(
            "Tools pending approval",
            "Tools held out of the catalog until approved (spec.tools.requireApproval).",
            "short",
            Query(f"max(mcpfleet_operator_tools_pending_approval{op})"),
            thresholds=((None, "green"), (1, "orange")),
        ),
        single(
            "Registered in Consul",
            "MCPServers whose registration is in Consul.",
            "short",
            Query("max(mcpfleet_operator_consul_registrations" + with_extra(op, 'state="registered"') + ")"),
        ),
        single(
            "Wanted in Consul",
            "MCPServers the operator wants registered in Consul; more than registered means some are not.",
            "short",
            Query("max(mcpfleet_operator_consul_registrations" + with_extra(op, 'state="desired"') + ")"),
        ),
        single(
            "Consul reachable",
            "Whether the last call to Consul got an answer.",
            "none",
            Query(f"min(mcpfleet_operator_consul_up{op})"),
            thresholds=((None, "red"), (1, "green")),
            up_down=True,
        ),
    )
    board.row(
        "Reconciliation",
        graph(
            "Reconciles/s by result",
            "MCPServer reconciliations by result (ok, error, invalid, namespace-terminating).",
            "ops",
            Query(f"sum by (result) (rate(mcpfleet_operator_reconciles_total{op}[{RATE}]))", "{{result}}"),
        ),
        graph(
            "Errors/s by class",
            "Reconciliation errors: temporary ones are retried, permanent ones wait for a spec change.",
            "ops",
            Query(f"sum by (error) (rate(mcpfleet_operator_errors_total{op}[{RATE}]))", "{{error}}"),
        ),
        graph(
            "Reconcile duration p50 / p95 / p99",
            "Time to reconcile one MCPServer (after it got a reconcile slot).",
            "s",
            *(
                Query(quantile(q, f"rate(mcpfleet_operator_reconcile_duration_seconds_bucket{op}[{RATE}])"), name)
                for q, name in QUANTILES
            ),
        ),
        graph(
            "Kubernetes writes/s by kind and action",
            "Writes of child objects (Deployment, Service, RBAC, ConfigMap, NetworkPolicy) to the API server.",
            "ops",
            Query(
                f"sum by (kind, action) (rate(mcpfleet_operator_api_writes_total{op}[{RATE}]))", "{{action}} {{kind}}"
            ),
        ),
    )
    sync = f"rate(mcpfleet_operator_catalog_sync_seconds_bucket{op}[{RATE}])"
    board.row(
        "Catalog",
        graph(
            "Catalog revision",
            "Revision of the catalog ConfigMap; each step is a new set of tools for the gateways.",
            "none",
            Query(f"max(mcpfleet_operator_catalog_revision{op})", "revision"),
        ),
        graph(
            "Catalog writes/s by result",
            "written, unchanged (skipped: nothing changed), pinned, error.",
            "ops",
            Query(f"sum by (result) (rate(mcpfleet_operator_catalog_writes_total{op}[{RATE}]))", "{{result}}"),
        ),
        graph(
            "Catalog sync latency p50 / p99",
            "From a tool report (or an endpoint change) to the catalog revision that includes it.",
            "s",
            Query(quantile(0.5, sync), "p50"),
            Query(quantile(0.99, sync), "p99"),
        ),
        graph(
            "Tool reports/s by result",
            "Tool lists confirmed with tools/list, by result (confirmed, mismatch, unreachable, ...).",
            "ops",
            Query(f"sum by (result) (rate(mcpfleet_operator_tool_reports_total{op}[{RATE}]))", "{{result}}"),
        ),
        graph(
            "Tool drift and pending approval",
            "Tools that kept their name but changed description or input schema (per interval), and tools "
            "waiting for approval.",
            "short",
            Query(f"sum(increase(mcpfleet_operator_tool_drift_total{op}[{RATE}]))", "drifted"),
            Query(f"max(mcpfleet_operator_tools_pending_approval{op})", "pending approval"),
        ),
    )
    board.row(
        "Consul",
        graph(
            "Registrations by state",
            "MCPServers by the reason of their Registered condition (Registered, Pending, ConsulUnreachable, "
            "ACLDenied, ConsulError, ConsulTokenUnreadable, Disabled).",
            "short",
            Query(f"max by (reason) (mcpfleet_operator_consul_registration_states{op})", "{{reason}}"),
        ),
        graph(
            "Wanted and registered",
            "Registrations the operator wants and those Consul has.",
            "short",
            Query(f"max by (state) (mcpfleet_operator_consul_registrations{op})", "{{state}}"),
        ),
        graph(
            "Consul calls/s by operation and result",
            "register, deregister and verify (the periodic listing), ok or error.",
            "ops",
            Query(
                f"sum by (operation, result) (rate(mcpfleet_operator_consul_operations_total{op}[{RATE}]))",
                "{{operation}} {{result}}",
            ),
        ),
        graph(
            "Consul reachable",
            "1 when the last call to Consul got an answer.",
            "none",
            Query(f"min(mcpfleet_operator_consul_up{op})", "reachable"),
            up_down=True,
        ),
    )
    return board


# ------------------------------------------------------------------------------------- built-in servers


def server(server_type: str) -> Board:
    base = matchers("namespace", "instance")
    # The type lives on mcpfleet_server_info; joining on the target picks this type's servers.
    of_type = f'* on (job, instance) group_left () mcpfleet_server_info{{type="{server_type}"}}'

    def per_target(metric: str, selector: str = base) -> str:
        return f"rate({metric}{selector}[{RATE}]) {of_type}"

    def gauge(metric: str) -> str:
        return f"{metric}{base} {of_type}"

    calls = per_target("mcpfleet_tool_calls_total")
    failed = per_target("mcpfleet_tool_calls_total", with_extra(base, 'outcome="error"'))
    latency = per_target("mcpfleet_tool_call_duration_seconds_bucket")
    board = Board(
        f"mcpfleet-server-{server_type}.json",
        f"mcpfleet-server-{server_type}",
        f"mcpfleet / Server {server_type}",
        f"The built-in {server_type} MCP server: calls by tool and outcome, errors, latency, refusals, tools and "
        "backend.",
        [
            variable(
                "namespace", "Namespace", f'label_values(mcpfleet_server_info{{type="{server_type}"}}, namespace)'
            ),
            variable(
                "instance",
                "Server replica",
                f'label_values(mcpfleet_server_info{{type="{server_type}", namespace=~"$namespace"}}, instance)',
            ),
        ],
    )
    board.row(
        "Now",
        single(
            "Replicas up",
            "Server targets Prometheus scrapes successfully.",
            "short",
            Query(f"sum(up{base} {of_type})"),
            thresholds=((None, "red"), (1, "green")),
        ),
        single(
            "Tools exposed",
            "Tools the server serves after its policy (read-only, allow and deny lists).",
            "short",
            Query(f"max({gauge('mcpfleet_tools')})"),
        ),
        single(
            "Backend up",
            "Whether the last readiness probe reached the server's backend (lowest of the replicas).",
            "none",
            Query(f"min({gauge('mcpfleet_backend_up')})"),
            thresholds=((None, "red"), (1, "green")),
            up_down=True,
        ),
        single("Calls/s", "Tool calls per second, all outcomes.", "reqps", Query(f"sum({calls})")),
        single(
            "Error ratio",
            "Share of calls that failed (outcome error); refused and invalid calls are not errors.",
            "percentunit",
            Query(f"sum({failed}) / sum({calls})"),
            thresholds=((None, "green"), (0.01, "orange"), (0.05, "red")),
        ),
    )
    board.row(
        "Calls",
        graph(
            "Calls/s by tool and outcome",
            "Tool calls by tool and outcome (ok, error, refused, invalid).",
            "reqps",
            Query(f"sum by (tool, outcome) ({calls})", "{{tool}} {{outcome}}"),
            width=GRID_WIDTH,
        ),
        graph(
            "Errors/s by kind",
            "Failed calls by kind (timeout, backend_unavailable, not_found, invalid_argument, tool_failure, ...).",
            "reqps",
            Query(f"sum by (kind) ({per_target('mcpfleet_tool_errors_total')})", "{{kind}}"),
        ),
        graph(
            "Refusals/s by reason",
            "Calls refused before or after running: declined or unconfirmable confirmations, output budget, policy.",
            "reqps",
            Query(f"sum by (reason) ({per_target('mcpfleet_tool_refusals_total')})", "{{reason}}"),
        ),
    )
    board.row(
        "Latency",
        graph(
            "Latency p50 / p95 / p99",
            "From the start of a tool's body to its answer (confirmation waits excluded).",
            "s",
            *(Query(quantile(q, latency), name) for q, name in QUANTILES),
        ),
        graph(
            "Latency p95 by tool", "95th percentile per tool.", "s", Query(quantile(0.95, latency, "tool"), "{{tool}}")
        ),
    )
    board.row(
        "Tools and backend",
        graph(
            "Tools exposed",
            "Tools each replica serves after policy; a change follows a config reload.",
            "short",
            Query(f"max by (instance) ({gauge('mcpfleet_tools')})", "{{instance}}"),
        ),
        graph(
            "Backend up",
            "1 when the replica's last readiness probe reached the backend.",
            "none",
            Query(f"min by (instance) ({gauge('mcpfleet_backend_up')})", "{{instance}}"),
            up_down=True,
        ),
    )
    return board


# ------------------------------------------------------------------------------------------- generation


def build_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON by file name."""
    boards = [overview(), operator(), *(server(server_type) for server_type in BUILTIN_SERVERS)]
    return {board.file: board.build() for board in boards}


def render(document: dict[str, Any]) -> str:
    """The file's text: sorted keys, two-space indent, a final newline (stable diffs)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale_files(out: Path, dashboards: dict[str, dict[str, Any]]) -> list[str]:
    """Files in ``out`` that differ from what the code generates, are missing, or are no longer generated."""
    stale = []
    for name, document in sorted(dashboards.items()):
        path = out / name
        if not path.is_file() or path.read_text() != render(document):
            stale.append(name)
    stale += sorted(p.name for p in out.glob("*.json") if p.name not in dashboards)
    return stale


def write(out: Path, dashboards: dict[str, dict[str, Any]]) -> list[Path]:
    """Write every dashboard into ``out`` and remove JSON files the code no longer generates."""
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob("*.json"):
        if leftover.name not in dashboards:
            leftover.unlink()
    written = []
    for name, document in sorted(dashboards.items()):
        path = out / name
        path.write_text(render(document))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python hack/dashboards/dashboards.py", description="Write mcpfleet's Grafana dashboards as JSON."
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"directory of the JSON files (default: {OUT_DIR})")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file differs from what the code generates"
    )
    options = parser.parse_args(argv)
    dashboards = build_dashboards()
    if options.check:
        stale = stale_files(options.out, dashboards)
        for name in stale:
            print(f"{options.out / name} is stale: run `make dashboards` and commit the result", file=sys.stderr)
        return 1 if stale else 0
    for path in write(options.out, dashboards):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
