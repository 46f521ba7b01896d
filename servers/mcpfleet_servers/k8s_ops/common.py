"""What every k8s-ops tool shares: its dependencies, the namespace policy and the common parameter types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, Field

from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.toolkit import Refused
from mcpfleet_servers.k8s_ops.client import NAMESPACE, K8sBackend, ResourceType
from mcpfleet_servers.k8s_ops.manifests import DNS_LABEL
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings

ContextArg = Annotated[
    str | None,
    Field(
        max_length=253,
        description="kubeconfig context to use (multi-cluster kubeconfigs); default: K8S_CONTEXT or the current one.",
    ),
]
NamespaceArg = Annotated[
    str | None,
    Field(max_length=63, pattern=DNS_LABEL, description="Namespace; default: K8S_NAMESPACE."),
]
NameArg = Annotated[str, Field(min_length=1, max_length=253, description="Object name.")]
LimitArg = Annotated[int | None, Field(ge=1, le=1000, description="Most items to return; the server budget caps it.")]
ContinueArg = Annotated[
    str | None,
    Field(max_length=4096, description="continue_token from the previous page of the same call."),
]
LabelSelectorArg = Annotated[
    str | None, Field(max_length=1024, description="Label selector, e.g. app=web,tier!=cache.")
]
FieldSelectorArg = Annotated[
    str | None, Field(max_length=1024, description="Field selector, e.g. status.phase=Running.")
]
AllNamespacesArg = Annotated[bool, Field(description="List across every allowed namespace.")]


class ChangeResult(BaseModel):
    """What a change tool did."""

    kind: str = Field(description="Kind of the changed object.")
    namespace: str | None = Field(default=None, description="Namespace of the object.")
    name: str = Field(description="Object name.")
    action: str = Field(description="What was done, e.g. scaled, restarted, rolled back, deleted.")
    message: str = Field(description="One sentence for the user.")
    before: str | None = Field(default=None, description="The relevant value before the change.")
    after: str | None = Field(default=None, description="The relevant value after the change.")


@dataclass(frozen=True)
class Deps:
    """The tools' closure: backend client, settings and output budget."""

    backend: K8sBackend
    settings: K8sOpsSettings
    budget: Budget

    def readable(self, namespace: str | None) -> str:
        """The namespace a read uses; Refused outside K8S_ALLOWED_NAMESPACES."""
        ns = namespace or self.settings.namespace
        if not self.settings.is_allowed(ns):
            raise Refused(
                f"namespace {ns!r} is outside K8S_ALLOWED_NAMESPACES "
                f"({', '.join(self.settings.allowed_namespaces)}); add it there (spec.config.k8sOps.namespaces)"
            )
        return ns

    def writable(self, namespace: str | None) -> str:
        """The namespace a change uses; Refused when protected or not allowed."""
        ns = self.readable(namespace)
        if self.settings.is_protected(ns):
            raise Refused(
                f"namespace {ns!r} is protected: changes there are refused. Reads are allowed. To allow changes, "
                "remove it from K8S_PROTECTED_NAMESPACES."
            )
        return ns

    def list_scope(self, namespace: str | None, all_namespaces: bool) -> str | None:
        """None for a cluster-wide list, else the (checked) namespace."""
        return None if all_namespaces else self.readable(namespace)

    def in_scope(self, namespace: str | None) -> bool:
        """Whether an object from a cluster-wide list may be shown."""
        return namespace is None or self.settings.is_allowed(namespace)

    def check_cluster_scoped_change(self, rtype: ResourceType, name: str) -> None:
        """Changes of cluster-scoped objects: refused for protected namespaces and when namespaces are limited."""
        if rtype == NAMESPACE or (rtype.kind == "Namespace" and rtype.group == ""):
            self.writable(name)
        if self.settings.allowed_namespaces:
            raise Refused(
                f"{rtype.kind} {name} is cluster-scoped and K8S_ALLOWED_NAMESPACES limits this server to "
                f"namespaces {', '.join(self.settings.allowed_namespaces)}; clear that setting to change it"
            )

    def scope_for(self, rtype: ResourceType, namespace: str | None, *, write: bool) -> str | None:
        """The namespace a call on ``rtype`` uses (None for cluster-scoped kinds), with the policy checks."""
        if not rtype.namespaced:
            return None
        return self.writable(namespace) if write else self.readable(namespace)
