"""The objects `mcpfleet dev` puts into its control plane. Pure: specs in, manifests out.

The servers run as local processes, not Pods, so the operator deploys nothing for them: each is an external
``MCPServer`` (``spec.endpoint``) that the operator only catalogs. Their identities are what the operator would
give the same server running in the cluster, built by the operator's own builders, minus the owner reference
(there is no owning object whose deletion should collect them) and marked as the dev platform's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from mcpfleet_contracts.crd import build_crd
from mcpfleet_contracts.mcpserver import API_VERSION, KIND, ServerType, parse_spec
from mcpfleet_operator.builders.children import build_rbac, build_service_account
from mcpfleet_operator.builders.defaults import TYPE_DEFAULTS
from mcpfleet_operator.builders.model import LABEL_MANAGED_BY, LABEL_OWNER_UID, Manifest, Owner
from mcpfleet_operator.builders.operator_rbac import operator_rbac
from mcpfleet_operator.builders.report_policy import report_policy

NAMESPACE = "mcpfleet-system"
MANAGED_BY = "mcpfleet-dev"
GATEWAY_ACCOUNT = "mcpfleet-gateway"
BUILT_IN = (ServerType.K8S_OPS, ServerType.MONITORING, ServerType.CMDB)
# Not a real object's uid: the identities below are owned by nothing.
_NO_OWNER = "mcpfleet-dev"


@dataclass(frozen=True)
class LocalServer:
    """A built-in server running as a local process on a loopback port."""

    server_type: ServerType
    port: int

    @property
    def name(self) -> str:
        return self.server_type.value

    @property
    def prefix(self) -> str:
        prefix = TYPE_DEFAULTS[self.server_type].tool_prefix
        assert prefix is not None, "built-in types have a prefix"
        return prefix

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def namespace_manifest(name: str = NAMESPACE) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def platform_manifests(namespace: str = NAMESPACE) -> list[Manifest]:
    """The CRD, the namespace, the operator's RBAC and the tool report's admission policy (`mcpfleet rbac print`)."""
    return [build_crd(), namespace_manifest(namespace), *operator_rbac(namespace), *report_policy()]


def _in_cluster_spec(server_type: ServerType) -> dict[str, Any]:
    """The spec the same server would have if the operator ran it as a Pod: what its RBAC derives from."""
    spec: dict[str, Any] = {"type": server_type.value}
    if server_type is ServerType.MONITORING:
        # Required by the type; the URL plays no part in the permissions.
        spec["config"] = {"monitoring": {"prometheusUrl": "http://127.0.0.1:9090"}}
    return spec


def _unowned(manifest: Manifest) -> Manifest:
    manifest = copy.deepcopy(manifest)
    metadata = manifest["metadata"]
    metadata.pop("ownerReferences", None)
    labels = metadata.setdefault("labels", {})
    labels.pop(LABEL_OWNER_UID, None)
    # Not the operator's: it must neither adopt nor clean these up.
    labels[LABEL_MANAGED_BY] = MANAGED_BY
    return manifest


def server_identity(server: LocalServer, namespace: str = NAMESPACE) -> list[Manifest]:
    """The ServiceAccount, Role/ClusterRole and bindings the operator would give ``server`` in the cluster."""
    owner = Owner(server.name, namespace, _NO_OWNER)
    spec = parse_spec(_in_cluster_spec(server.server_type))
    built = [build_service_account(owner, spec), *(m for m in build_rbac(owner, spec).values() if m is not None)]
    return [_unowned(manifest) for manifest in built]


def external_mcpserver(server: LocalServer, namespace: str = NAMESPACE) -> Manifest:
    """The MCPServer that catalogs a local server: the operator lists its tools at its endpoint."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": server.name, "namespace": namespace, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
        "spec": {"type": server.server_type.value, "endpoint": server.endpoint, "toolPrefix": server.prefix},
    }


def gateway_reader(configmap: str, namespace: str = NAMESPACE, account: str = GATEWAY_ACCOUNT) -> list[Manifest]:
    """A ServiceAccount that may get and watch the catalog ConfigMap and nothing else."""
    labels = {LABEL_MANAGED_BY: MANAGED_BY, "app.kubernetes.io/part-of": "mcpfleet"}
    metadata = {"name": account, "namespace": namespace, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata,
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [configmap],
                    "verbs": ["get", "watch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]
