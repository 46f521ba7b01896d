"""Pure builders: an MCPServer spec in, the manifests of its children out.

``build_children`` answers, for every child kind, either the manifest the
object must match or ``None`` when the object must not exist (e.g. the
NetworkPolicy after it was disabled, the Deployment of an external server).
Builders emit values in the form the API server stores them, so comparing a
live object with a manifest needs no knowledge of defaulting.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from mcpfleet_contracts.mcpserver import (
    SERVER_CONFIG_DIR,
    SERVER_TMP_DIR,
    MCPServerSpec,
    RBACScope,
    ServerType,
    Transport,
)
from mcpfleet_operator.builders.defaults import effective_path, effective_rbac, effective_tool_prefix
from mcpfleet_operator.builders.model import (
    ANNOTATION_CONFIG_HASH,
    CHILD_KINDS,
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    CONFIG_MAP,
    DEPLOYMENT,
    NETWORK_POLICY,
    ROLE,
    ROLE_BINDING,
    SERVICE,
    SERVICE_ACCOUNT,
    BuildDefaults,
    Manifest,
    Owner,
    ResourceKind,
    child_metadata,
    selector_labels,
)

CONFIG_DIR = SERVER_CONFIG_DIR
CONFIG_FILE = "config.json"
SECRETS_DIR = "/var/run/secrets/mcpfleet"
CONTAINER_NAME = "server"
PORT_NAME = "mcp"

Children = dict[ResourceKind, Manifest | None]


def build_children(owner: Owner, spec: MCPServerSpec, defaults: BuildDefaults) -> Children:
    """Every child kind mapped to its desired manifest, or to None where it must be absent."""
    children: Children = dict.fromkeys(CHILD_KINDS)
    if spec.endpoint is not None:
        return children  # an external server: nothing runs in the cluster

    config_map = build_config_map(owner, spec)
    children[SERVICE_ACCOUNT] = build_service_account(owner, spec)
    children.update(build_rbac(owner, spec))
    children[CONFIG_MAP] = config_map
    children[DEPLOYMENT] = build_deployment(owner, spec, defaults, config_map)
    children[SERVICE] = build_service(owner, spec)
    children[NETWORK_POLICY] = build_network_policy(owner, spec)
    return children


def service_endpoint(owner: Owner, spec: MCPServerSpec) -> str:
    """Where MCP clients (the gateway) reach the server."""
    if spec.endpoint is not None:
        return spec.endpoint
    if spec.transport == Transport.STDIO:
        # One pod, attached through the Kubernetes API (hence replicas 1).
        return f"stdio://{owner.namespace}/{owner.name}"
    return f"http://{owner.name}.{owner.namespace}.svc:{spec.port}{effective_path(spec)}"


def server_config(owner: Owner, spec: MCPServerSpec) -> dict[str, Any]:
    """The settings file a built-in server reads at start (``mcpfleet server --config``)."""
    typed = spec.config.to_wire() if spec.config is not None else {}
    document: dict[str, Any] = {
        "name": owner.name,
        "namespace": owner.namespace,
        "type": spec.type.value,
        "transport": spec.transport.value,
        "port": spec.port,
        "toolPrefix": effective_tool_prefix(spec, owner.name),
        "config": typed,
        "tools": spec.tools.to_wire() if spec.tools is not None else {},
    }
    path = effective_path(spec)
    if path is not None:
        document["path"] = path
    return document


def build_config_map(owner: Owner, spec: MCPServerSpec) -> Manifest | None:
    if spec.type == ServerType.CUSTOM:
        settings = spec.config.custom if spec.config is not None else None
        if not settings:
            return None
        data = dict(sorted(settings.items()))
    else:
        data = {CONFIG_FILE: json.dumps(server_config(owner, spec), indent=2, sort_keys=True)}
    return {
        "apiVersion": CONFIG_MAP.api_version,
        "kind": CONFIG_MAP.kind,
        "metadata": child_metadata(CONFIG_MAP, owner, spec.type.value),
        "data": data,
    }


def build_service_account(owner: Owner, spec: MCPServerSpec) -> Manifest:
    return {
        "apiVersion": SERVICE_ACCOUNT.api_version,
        "kind": SERVICE_ACCOUNT.kind,
        "metadata": child_metadata(SERVICE_ACCOUNT, owner, spec.type.value),
        "automountServiceAccountToken": False,
    }


# Contract 2: a built-in server writes its tool report on its own Pod (read it, patch two annotations).
# Pod names are generated, so the grant is namespaced rather than per name; it is a Role even when the
# server's other rules are cluster-wide, so no server can patch Pods outside its own namespace.
REPORT_RULE: dict[str, Any] = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}


def reports_tools(spec: MCPServerSpec) -> bool:
    """Built-in servers write the tool report; a custom image is listed by the operator instead."""
    return spec.type != ServerType.CUSTOM


def _role_pair(
    role_kind: ResourceKind, binding_kind: ResourceKind, owner: Owner, spec: MCPServerSpec, rules: list[dict[str, Any]]
) -> Children:
    return {
        role_kind: {
            "apiVersion": role_kind.api_version,
            "kind": role_kind.kind,
            "metadata": child_metadata(role_kind, owner, spec.type.value),
            "rules": rules,
        },
        binding_kind: {
            "apiVersion": binding_kind.api_version,
            "kind": binding_kind.kind,
            "metadata": child_metadata(binding_kind, owner, spec.type.value),
            "roleRef": {"apiGroup": role_kind.group, "kind": role_kind.kind, "name": role_kind.name_for(owner)},
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT.name_for(owner), "namespace": owner.namespace}
            ],
        },
    }


def build_rbac(owner: Owner, spec: MCPServerSpec) -> Children:
    """The server's own rules (a Role, or a ClusterRole when cluster-wide) plus the tool-report rule (a Role)."""
    result: Children = dict.fromkeys((ROLE, ROLE_BINDING, CLUSTER_ROLE, CLUSTER_ROLE_BINDING))
    scope, rules = effective_rbac(spec)
    namespaced = [copy.deepcopy(REPORT_RULE)] if reports_tools(spec) else []
    if rules and scope == RBACScope.CLUSTER:
        result.update(_role_pair(CLUSTER_ROLE, CLUSTER_ROLE_BINDING, owner, spec, rules))
    else:
        namespaced = rules + namespaced
    if namespaced:
        result.update(_role_pair(ROLE, ROLE_BINDING, owner, spec, namespaced))
    return result


def needs_api_access(spec: MCPServerSpec) -> bool:
    return bool(effective_rbac(spec)[1]) or reports_tools(spec)


def _config_hash(config_map: Manifest | None) -> str:
    payload = json.dumps(config_map["data"] if config_map else {}, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def _probes(spec: MCPServerSpec) -> dict[str, Any]:
    liveness: dict[str, Any]
    readiness: dict[str, Any]
    if spec.type != ServerType.CUSTOM:
        liveness = {"httpGet": {"path": "/health", "port": PORT_NAME}}
        readiness = {"httpGet": {"path": "/ready", "port": PORT_NAME}}
    elif spec.health_path is not None:
        liveness = readiness = {"httpGet": {"path": spec.health_path, "port": PORT_NAME}}
    elif spec.transport != Transport.STDIO:
        liveness = readiness = {"tcpSocket": {"port": PORT_NAME}}
    else:
        return {}  # a custom stdio server has nothing to probe
    timing = {"periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}
    return {
        "livenessProbe": {**liveness, "initialDelaySeconds": 5, **timing},
        "readinessProbe": {**readiness, "initialDelaySeconds": 2, **timing},
    }


def _env(owner: Owner, spec: MCPServerSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {
            "name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
        },
        # The server accepts its own address as a Host (DNS-rebinding protection) for direct pod calls.
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
        {"name": "MCPFLEET_SERVER_NAME", "value": owner.name},
        {"name": "MCP_TRANSPORT", "value": spec.transport.value},
        {"name": "MCP_HOST", "value": "0.0.0.0"},
        {"name": "MCP_PORT", "value": str(spec.port)},
    ]
    path = effective_path(spec)
    if path is not None:
        env.append({"name": "MCP_PATH", "value": path})
    env.extend(var.to_wire() for var in spec.env or ())
    return env


def _secret_volumes(spec: MCPServerSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts for spec.secretRefs and the typed config's token secrets."""
    mounts: dict[str, tuple[str, dict[str, Any]]] = {}
    for ref in spec.secret_refs or ():
        path = ref.mount_path or f"{SECRETS_DIR}/{ref.name}"
        mounts[ref.name] = (path, {"secretName": ref.name})
    config = spec.config
    monitoring = config.monitoring if config else None
    token_refs = [
        *(
            (monitoring.prometheus_token_secret, monitoring.alertmanager_token_secret, monitoring.grafana_token_secret)
            if monitoring
            else ()
        ),
        *((config.cmdb.token_secret, config.cmdb.audit_redis_password_secret) if config and config.cmdb else ()),
    ]
    for token in token_refs:
        if token is not None and token.name not in mounts:
            mounts[token.name] = (f"{SECRETS_DIR}/{token.name}", {"secretName": token.name})
    volumes, volume_mounts = [], []
    for index, (_, (path, source)) in enumerate(sorted(mounts.items())):
        volume = f"secret-{index}"
        volumes.append({"name": volume, "secret": {**source, "defaultMode": 0o440}})
        volume_mounts.append({"name": volume, "mountPath": path, "readOnly": True})
    return volumes, volume_mounts


def _resources(spec: MCPServerSpec, defaults: BuildDefaults) -> dict[str, Any]:
    """The user's values; defaults only for resources (cpu, memory) the user names nowhere.

    Filling a default limit beside a user's request could make the request exceed the limit.
    """
    requests: dict[str, Any] = dict(spec.resources.requests or {}) if spec.resources else {}
    limits: dict[str, Any] = dict(spec.resources.limits or {}) if spec.resources else {}
    mentioned = set(requests) | set(limits)
    for name, value in defaults.requests.items():
        if name not in mentioned:
            requests[name] = value
    for name, value in defaults.limits.items():
        if name not in mentioned:
            limits[name] = value
    return {"limits": dict(sorted(limits.items())), "requests": dict(sorted(requests.items()))}


def build_deployment(
    owner: Owner, spec: MCPServerSpec, defaults: BuildDefaults, config_map: Manifest | None
) -> Manifest:
    labels = child_metadata(DEPLOYMENT, owner, spec.type.value)["labels"]
    builtin = spec.type != ServerType.CUSTOM
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": SERVER_TMP_DIR}]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image or defaults.server_image,
    }
    if spec.image_pull_policy is not None:
        container["imagePullPolicy"] = spec.image_pull_policy.value
    if builtin:
        container["args"] = ["server", spec.type.value, "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
        volumes.append({"name": "config", "configMap": {"name": CONFIG_MAP.name_for(owner)}})
        mounts.append({"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})
    env_from = [source.to_wire() for source in spec.env_from or ()]
    if not builtin and config_map is not None:
        env_from.append({"configMapRef": {"name": CONFIG_MAP.name_for(owner)}})
    secret_volumes, secret_mounts = _secret_volumes(spec)
    volumes.extend(secret_volumes)
    mounts.extend(secret_mounts)

    container["env"] = _env(owner, spec)
    if env_from:
        container["envFrom"] = env_from
    container["ports"] = [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}]
    container.update(_probes(spec))
    container["resources"] = _resources(spec, defaults)
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    if spec.transport == Transport.STDIO:
        container["stdin"] = True
    container["volumeMounts"] = mounts

    # fsGroup on every pod: secret volumes are mode 0440, readable only through the group the
    # kubelet gives them, and a custom image's own non-root user is not root's group.
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "fsGroup": defaults.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if builtin:
        pod_security |= {"runAsUser": defaults.run_as_user, "runAsGroup": defaults.run_as_user}
    annotations = {ANNOTATION_CONFIG_HASH: _config_hash(config_map)}
    if builtin:
        annotations |= {"prometheus.io/scrape": "true", "prometheus.io/port": str(spec.port)}
        annotations["prometheus.io/path"] = "/metrics"

    strategy: dict[str, Any] = (
        {"type": "Recreate"}
        if spec.transport == Transport.STDIO
        else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    return {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": child_metadata(DEPLOYMENT, owner, spec.type.value),
        "spec": {
            "replicas": 1 if spec.replicas is None else spec.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(owner)},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT.name_for(owner),
                    "automountServiceAccountToken": needs_api_access(spec),
                    "enableServiceLinks": False,
                    "securityContext": pod_security,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def build_service(owner: Owner, spec: MCPServerSpec) -> Manifest | None:
    if spec.transport == Transport.STDIO:
        return None
    return {
        "apiVersion": SERVICE.api_version,
        "kind": SERVICE.kind,
        "metadata": child_metadata(SERVICE, owner, spec.type.value),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": spec.port,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def build_network_policy(owner: Owner, spec: MCPServerSpec) -> Manifest | None:
    policy = spec.network_policy
    if policy is None or not policy.enabled:
        return None
    platform_peer = {
        "namespaceSelector": {},
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/part-of": "mcpfleet"},
            "matchExpressions": [
                {"key": "app.kubernetes.io/component", "operator": "In", "values": ["gateway", "operator"]}
            ],
        },
    }
    # A peer with neither selector means "pods of this namespace"; the API server rejects an empty peer.
    peers = [platform_peer, *(peer.to_wire() or {"podSelector": {}} for peer in policy.allow_from or ())]
    return {
        "apiVersion": NETWORK_POLICY.api_version,
        "kind": NETWORK_POLICY.kind,
        "metadata": child_metadata(NETWORK_POLICY, owner, spec.type.value),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(owner)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": spec.port, "protocol": "TCP"}]}],
        },
    }
