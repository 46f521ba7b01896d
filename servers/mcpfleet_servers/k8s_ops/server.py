"""The k8s-ops server module: the Kubernetes backend, its tools, resources and prompts for the common base."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mcpfleet_servers.base.module import BackendStatus, SettingsRejected
from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.toolkit import InvalidArgument, ToolFailure, Toolset
from mcpfleet_servers.k8s_ops.client import K8sBackend, Target
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from mcpfleet_servers.k8s_ops.tools import register

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mcpfleet_servers.base.settings import ConfigFile, ServerSettings

logger = logging.getLogger(__name__)

# What a reload may change while serving: the tools read these when they run. The rest (credentials,
# context, timeouts, protected namespaces, denied kinds, exec) is bound to the client or to which tools
# exist, and keeps its running value until a restart.
LIVE_FIELDS = frozenset({"allowed_namespaces"})

INSTRUCTIONS = """\
Kubernetes operations for one cluster (or the contexts of a kubeconfig).
Read first: cluster_info, list_pods, get_pod_logs, list_events, describe_resource, rollout_status.
Lists are paged: pass continue_token back for more. Secret values are never shown.
Changes (scale_deployment, restart_deployment, rollback_deployment, apply_manifest, delete_resource) are
refused in protected namespaces; apply_manifest always shows a server-side dry-run diff first, and
dry_run_only=true changes nothing. generate_deployment_yaml builds and validates manifests without applying.
"""


class K8sOpsServer:
    """``mcpfleet server k8s-ops``: implements mcpfleet_servers.base.module.ServerModule."""

    type_name = "k8s-ops"
    instructions = INSTRUCTIONS

    def __init__(self, settings: K8sOpsSettings, budget: Budget) -> None:
        self.settings = settings
        self.budget = budget
        self.backend = K8sBackend(settings)
        self._toolset: Toolset | None = None

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()

    async def backend_status(self) -> BackendStatus:
        name = "Kubernetes API"
        try:
            name = f"Kubernetes API at {await self.backend.server_url()}"
            version = await asyncio.wait_for(
                self.backend.request(
                    "GET",
                    "/version",
                    Target("get", None, None, "version"),
                    request_timeout=self.settings.probe_timeout_seconds,
                ),
                self.settings.probe_timeout_seconds + 1,
            )
        except (ToolFailure, InvalidArgument) as exc:
            return BackendStatus(name, False, str(exc))
        except TimeoutError:
            return BackendStatus(name, False, f"no answer within {self.settings.probe_timeout_seconds}s")
        return BackendStatus(name, True, f"Kubernetes {version.get('gitVersion', 'unknown version')}")

    def toolset(self) -> Toolset:
        if self._toolset is None:
            toolset = Toolset()
            register(toolset, self.backend, self.settings, self.budget)
            self._toolset = toolset
        return self._toolset

    async def reconfigure(self, settings: ServerSettings, config: ConfigFile | None) -> None:
        """Reloaded settings (SIGHUP): the namespaces allow-list (config.k8sOps.namespaces or K8S_ALLOWED_NAMESPACES)
        applies from the next call on; read-only mode and allow/deny lists are the base's and follow by themselves.
        """
        try:
            reloaded = K8sOpsSettings.from_config({"config": config.config} if config is not None else None)
        except ValidationError as exc:
            raise SettingsRejected(
                [
                    f"K8S_{str(error['loc'][0]).upper() if error['loc'] else '?'}: {error['msg']}"
                    for error in exc.errors(include_url=False)
                ]
            ) from exc
        changed = {
            name for name in K8sOpsSettings.model_fields if getattr(reloaded, name) != getattr(self.settings, name)
        }
        if changed - LIVE_FIELDS:
            logger.warning(
                "reloaded k8s-ops settings change %s: that needs a restart; running with the previous values of those",
                ", ".join(f"K8S_{name.upper()}" for name in sorted(changed - LIVE_FIELDS)),
            )
        live = changed & LIVE_FIELDS
        if live:
            self.settings = self.settings.model_copy(update={name: getattr(reloaded, name) for name in live})
            self._toolset = None  # the tools close over the settings: the next toolset() is built with the new ones
            logger.info("k8s-ops namespaces allowed: %s", ", ".join(self.settings.allowed_namespaces) or "all")

    def register_extras(self, server: MCPServer) -> None:
        async def call(tool: str, **kwargs: Any) -> str:
            # The current toolset, not the one at start: a reload may have rebuilt it with new settings.
            result = await self.toolset()[tool].fn(**kwargs)
            return result.model_dump_json(indent=2)

        @server.resource("k8s://cluster", mime_type="application/json", title="Cluster")
        async def cluster() -> str:
            """The cluster: API server, version, nodes, contexts and namespace policy."""
            return await call("cluster_info")

        @server.resource("k8s://namespaces", mime_type="application/json", title="Namespaces")
        async def namespaces() -> str:
            """The first page of namespaces this server may touch."""
            return await call("list_namespaces")

        @server.resource("k8s://namespaces/{ns}/pods/{name}", mime_type="application/json", title="Pod")
        async def pod(ns: str, name: str) -> str:
            """One pod, trimmed and redacted."""
            return await call("get_pod", name=name, namespace=ns)

        @server.prompt(title="Diagnose a failing pod")
        def diagnose_pod(namespace: str, pod: str) -> str:
            """Steps to find out why a pod fails."""
            return (
                f"Pod {pod} in namespace {namespace} is failing. Find out why, using the k8s tools:\n"
                f"1. get_pod(name={pod!r}, namespace={namespace!r}): phase, container states, restarts, conditions.\n"
                f"2. list_events(namespace={namespace!r}, kind='Pod', name={pod!r}): scheduling, image pull, probes.\n"
                f"3. get_pod_logs(name={pod!r}, namespace={namespace!r}, tail_lines=200) and, after restarts, "
                "previous=true for the crashed instance.\n"
                f"4. describe_resource(kind='Pod', name={pod!r}, namespace={namespace!r}) for the owner chain.\n"
                "Then state the most likely cause, the evidence, and the smallest fix. Change nothing without asking."
            )

        @server.prompt(title="Explain a rollout")
        def explain_rollout(namespace: str, deployment: str) -> str:
            """Steps to explain the state and history of a deployment's rollout."""
            return (
                f"Explain the rollout of deployment {deployment} in namespace {namespace}:\n"
                f"1. rollout_status(name={deployment!r}, namespace={namespace!r}).\n"
                f"2. rollout_history(name={deployment!r}, namespace={namespace!r}): what changed between revisions.\n"
                f"3. list_events(namespace={namespace!r}, kind='Deployment', name={deployment!r}) and the events of "
                "its newest ReplicaSet.\n"
                "Say whether it is healthy, what is blocking it if not, and whether rollback_deployment would help."
            )
