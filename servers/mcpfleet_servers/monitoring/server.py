"""The monitoring server module: Prometheus, Alertmanager and Grafana clients, a Kubernetes client for
health_check, their tools, resources and a prompt."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.http import ssl_context
from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.toolkit import ToolFailure, Toolset
from mcpfleet_servers.monitoring.client import HttpBackend
from mcpfleet_servers.monitoring.cluster import ServiceCluster
from mcpfleet_servers.monitoring.settings import MonitoringSettings
from mcpfleet_servers.monitoring.tools_alerts import register_alerts
from mcpfleet_servers.monitoring.tools_grafana import register_grafana
from mcpfleet_servers.monitoring.tools_health import register_health
from mcpfleet_servers.monitoring.tools_prometheus import register_prometheus

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mcpfleet_servers.base.module import ServerModule
    from mcpfleet_servers.base.settings import ConfigFile, ServerSettings

INSTRUCTIONS = """\
Metrics, alerts and dashboards of the platform: Prometheus (PromQL), Alertmanager and Grafana.
For one service, health_check(service, namespace) combines its ready endpoints, the up series of its targets
and the alerts naming it. Otherwise start with get_alerts (what is firing), then query_metrics / query_range
with PromQL; list_metrics, list_label_values and get_series help to find names. get_targets shows scrape
health, get_rules the rules.
Answers are bounded: when a note says series were dropped or points downsampled, narrow the query
(label matchers, sum by (...), topk) or pass a larger step. create_silence and expire_silence change
which alerts notify; give an author and a comment. With Grafana: search_dashboards and get_dashboard_summary
show what is graphed; create_dashboard and create_annotation add to it.
"""


class MonitoringServer:
    """``mcpfleet server monitoring``: implements mcpfleet_servers.base.module.ServerModule."""

    type_name = "monitoring"
    instructions = INSTRUCTIONS

    def __init__(self, settings: MonitoringSettings, budget: Budget) -> None:
        self.settings = settings
        self.budget = budget
        backends = {config.name: HttpBackend(config, settings) for config in settings.backends()}
        self.prometheus = backends["Prometheus"]
        self.alertmanager = backends.get("Alertmanager")
        self.grafana = backends.get("Grafana")
        self.cluster = ServiceCluster(settings)
        self._backends = list(backends.values())
        self._toolset: Toolset | None = None

    async def start(self) -> None:
        # Reading a CA file blocks; one context serves every backend.
        tls = await asyncio.to_thread(ssl_context, self.settings.tls_verify, self.settings.ca_file)
        for backend in self._backends:
            await backend.start(tls)
        await self.cluster.start()

    async def close(self) -> None:
        for backend in self._backends:
            await backend.close()
        await self.cluster.close()

    async def backend_status(self) -> BackendStatus:
        name = self.prometheus.label
        timeout = self.settings.probe_timeout_seconds
        try:
            answer = await asyncio.wait_for(
                self.prometheus.request("GET", "/api/v1/status/buildinfo", deadline_seconds=timeout), timeout + 1
            )
        except ToolFailure as exc:
            return BackendStatus(name, False, str(exc))
        except TimeoutError:
            return BackendStatus(name, False, f"no answer within {timeout}s")
        version = ((answer or {}).get("data") or {}).get("version", "unknown version")
        return BackendStatus(name, True, f"Prometheus {version}")

    def toolset(self) -> Toolset:
        if self._toolset is None:
            # MEDIUM calls are confirmed too: a silence hides alerts from everyone on call.
            toolset = Toolset(confirm_from=Risk.MEDIUM)
            register_prometheus(toolset, self.prometheus, self.settings, self.budget)
            register_alerts(toolset, self.prometheus, self.alertmanager, self.budget)
            register_health(toolset, self.prometheus, self.alertmanager, self.cluster)
            if self.grafana is not None:
                register_grafana(toolset, self.grafana, self.budget)
            self._toolset = toolset
        return self._toolset

    def register_extras(self, server: MCPServer) -> None:
        @server.resource("monitoring://alerts", mime_type="application/json", title="Alerts")
        async def alerts() -> str:
            """The first page of current alerts, firing first."""
            result = await self.toolset()["get_alerts"].fn()
            return result.model_dump_json(indent=2)

        if self.grafana is not None:

            @server.resource("monitoring://dashboards", mime_type="application/json", title="Dashboards")
            async def dashboards() -> str:
                """The first page of Grafana's dashboards, by title."""
                result = await self.toolset()["search_dashboards"].fn()
                return result.model_dump_json(indent=2)

        @server.prompt(title="Triage an incident")
        def triage_incident(service: str) -> str:
            """Steps to find out what is wrong with a service from its alerts and metrics."""
            return (
                f"Service {service} may be unhealthy. Triage it with the monitoring tools:\n"
                f"0. health_check({service!r}, <its namespace>): endpoints, scrape health and alerts in one answer.\n"
                f"1. get_alerts(): what fires; look for alerts whose labels name {service!r} (job, service, app).\n"
                f"2. get_targets(health='down'): is a target of {service!r} not scraped?\n"
                f"3. query_metrics('up{{job=~\".*{service}.*\"}}') and error/latency rates, e.g. "
                f'sum by (code) (rate(http_requests_total{{job=~".*{service}.*"}}[5m])).\n'
                "4. query_range over the last hour for the metrics that look wrong: when did it start?\n"
                "Then state the most likely cause, the evidence, and what to do next. Silence alerts "
                "(create_silence) only when asked, with an author and a comment."
            )


def create(settings: ServerSettings, config: ConfigFile | None) -> ServerModule:
    """The factory `mcpfleet server monitoring` calls: MON_* over the config file's ``config.monitoring``.

    Raises pydantic.ValidationError for a bad MON_* value (the registry names the variable).
    """
    monitoring = MonitoringSettings.from_config({"config": config.config} if config is not None else None)
    return MonitoringServer(monitoring, settings.budget())
