"""Every k8s-ops tool, registered on a Toolset: reads, changes and manifest generation."""

from __future__ import annotations

from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.toolkit import Toolset
from mcpfleet_servers.k8s_ops.client import K8sBackend
from mcpfleet_servers.k8s_ops.common import Deps
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from mcpfleet_servers.k8s_ops.tools_change import register_change
from mcpfleet_servers.k8s_ops.tools_generate import register_generate
from mcpfleet_servers.k8s_ops.tools_read import register_read


def register(toolset: Toolset, backend: K8sBackend, settings: K8sOpsSettings, budget: Budget) -> None:
    """Declare every tool (exec_in_pod only with K8S_EXEC_ENABLED); the base's policy hides what a mode forbids."""
    deps = Deps(backend, settings, budget)
    register_read(toolset, deps)
    register_generate(toolset, deps)
    register_change(toolset, deps)
