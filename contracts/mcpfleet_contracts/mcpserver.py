"""The MCPServer custom resource (mcpfleet.io/v1alpha1): spec and status.

These models are the source of truth: ``mcpfleet crd print`` generates the
CRD's openAPIV3Schema from them (see :mod:`mcpfleet_contracts.crd`), and the
operator parses every object through them. Descriptions become
``kubectl explain`` text, so they are written for the person reading it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, WithJsonSchema

from mcpfleet_contracts.base import CRDModel
from mcpfleet_contracts.rules import CrossFieldRule

GROUP = "mcpfleet.io"
VERSION = "v1alpha1"
KIND = "MCPServer"
PLURAL = "mcpservers"
SINGULAR = "mcpserver"
SHORT_NAMES = ("mcps",)
CATEGORIES = ("mcpfleet",)
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
HTTP_URL = r"^https?://[^\s/$.?#][^\s]*$"
DURATION = r"^([0-9]+(ms|s|m|h))+$"
TOOL_PREFIX = r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$"
TOOL_PATTERN = r"^[A-Za-z0-9_.:*?-]+$"
URL_PATH = r"^/[A-Za-z0-9._~/-]*$"
IMAGE_REF = r"^[^\s]+$"
QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY)


def _check_quantity(value: str | int) -> str | int:
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 100m, 0.5, 256Mi, 1Gi)")
    return value


Quantity = Annotated[
    str | int,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


class ServerType(StrEnum):
    """Which MCP server an MCPServer runs."""

    K8S_OPS = "k8s-ops"
    MONITORING = "monitoring"
    CMDB = "cmdb"
    CUSTOM = "custom"


class Transport(StrEnum):
    """How MCP clients talk to the server."""

    STREAMABLE_HTTP = "streamable-http"
    SSE = "sse"
    STDIO = "stdio"


class Risk(StrEnum):
    """How much harm a tool call can do; drives confirmation, caching and limits."""

    SAFE = "SAFE"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class RBACPreset(StrEnum):
    """Ready-made permission sets for the server's ServiceAccount."""

    NONE = "none"
    READ_ONLY = "read-only"
    OPERATOR = "operator"


class RBACScope(StrEnum):
    """Where the server's permissions apply."""

    NAMESPACE = "Namespace"
    CLUSTER = "Cluster"


class PullPolicy(StrEnum):
    """Kubernetes image pull policy."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class Phase(StrEnum):
    """The one-word summary of an MCPServer's state."""

    PENDING = "Pending"
    DEPLOYING = "Deploying"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


# ---------------------------------------------------------------- typed config


class SecretKeyRef(CRDModel):
    """A key of a Secret in the MCPServer's namespace."""

    name: str = Field(description="Name of the Secret.", max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(description="Key inside the Secret.", max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class K8sOpsConfig(CRDModel):
    """Settings of the k8s-ops server."""

    read_only: bool = Field(
        default=False,
        description="Serve only read-only tools; write tools are hidden and refused even if RBAC allows them.",
    )
    namespaces: list[Annotated[str, Field(max_length=63, pattern=DNS_LABEL)]] | None = Field(
        default=None,
        max_length=64,
        description="Namespaces the tools may touch. Empty means every namespace the RBAC grants.",
    )
    require_confirmation: bool = Field(
        default=True,
        description="Ask the user to confirm (MCP elicitation) before every HIGH-risk call.",
    )


class MonitoringConfig(CRDModel):
    """Settings of the monitoring server (Prometheus, Alertmanager, Grafana)."""

    prometheus_url: str = Field(
        description="Base URL of the Prometheus HTTP API the tools query, e.g. http://prometheus.monitoring:9090.",
        max_length=2048,
        pattern=HTTP_URL,
    )
    alertmanager_url: str | None = Field(
        default=None,
        description="Base URL of Alertmanager, for silences and alerts. Without it, alerts come from Prometheus.",
        max_length=2048,
        pattern=HTTP_URL,
    )
    grafana_url: str | None = Field(
        default=None,
        description="Base URL of Grafana, for dashboards, datasources and annotations.",
        max_length=2048,
        pattern=HTTP_URL,
    )
    prometheus_token_secret: SecretKeyRef | None = Field(
        default=None,
        description=(
            "Secret key holding a bearer token for Prometheus (e.g. behind an auth proxy or a hosted service); "
            "mounted as a file, never put in env."
        ),
    )
    alertmanager_token_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a bearer token for Alertmanager; mounted as a file, never put in env.",
    )
    grafana_token_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a Grafana service-account token; mounted as a file, never put in env.",
    )
    grafana_org_id: int | None = Field(
        default=None, ge=1, description="Grafana organization the tools act in (sent as X-Grafana-Org-Id)."
    )


class CMDBBackend(StrEnum):
    """Where the CMDB server reads its assets from."""

    KUBERNETES = "kubernetes"
    REST = "rest"
    NETBOX = "netbox"


class CMDBConfig(CRDModel):
    """Settings of the cmdb server."""

    cel_rules: ClassVar[tuple[CrossFieldRule, ...]] = (
        CrossFieldRule(
            cel="self.backend == 'kubernetes' || has(self.url)",
            message=(
                "spec.config.cmdb.backend rest and netbox need spec.config.cmdb.url (the CMDB's base URL); "
                "the kubernetes backend needs none"
            ),
            holds=lambda c: c.backend == CMDBBackend.KUBERNETES or c.url is not None,
            field_path=".url",
            reason="FieldValueRequired",
        ),
        CrossFieldRule(
            cel="self.backend == 'kubernetes' || (!has(self.auditRedisUrl) && !has(self.auditStreams))",
            message=(
                "spec.config.cmdb.auditRedisUrl and auditStreams are read by the kubernetes backend only: "
                "remove them, or set backend: kubernetes"
            ),
            holds=lambda c: (
                c.backend == CMDBBackend.KUBERNETES or (c.audit_redis_url is None and c.audit_streams is None)
            ),
            field_path=".auditRedisUrl",
            reason="FieldValueForbidden",
        ),
        CrossFieldRule(
            cel="!has(self.auditRedisUrl) || !self.auditRedisUrl.contains('@')",
            message=(
                "spec.config.cmdb.auditRedisUrl must not carry credentials (anyone who can read the MCPServer "
                "would see them): put the password in a Secret and name it in auditRedisPasswordSecret"
            ),
            holds=lambda c: c.audit_redis_url is None or "@" not in c.audit_redis_url,
            field_path=".auditRedisUrl",
            reason="FieldValueInvalid",
        ),
    )

    backend: CMDBBackend = Field(
        default=CMDBBackend.KUBERNETES,
        description=(
            "kubernetes: the cluster itself is the CMDB (nodes, namespaces, workloads, services, ingresses, "
            "volumes; needs nothing else); rest: a CMDB's generic REST API; netbox: NetBox's REST API."
        ),
    )
    url: str | None = Field(
        default=None,
        description="Base URL of the CMDB (backends rest and netbox).",
        max_length=2048,
        pattern=HTTP_URL,
    )
    token_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the CMDB API token (rest, netbox); mounted as a file."
    )
    audit_redis_url: str | None = Field(
        default=None,
        description=(
            "kubernetes backend: the Redis holding the gateway's audit streams, e.g. redis://redis.mcpfleet:6379/0; "
            "successful changing calls through the gateway then appear among an asset's change records. "
            "Unset: change records come from Events and rollout revisions only."
        ),
        max_length=2048,
        pattern=r"^(rediss?|unix)://[^\s]+$",
    )
    audit_redis_password_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the password of auditRedisUrl; mounted as a file."
    )
    audit_streams: list[Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^\s,]+$")]] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Stream names or glob patterns of the gateway's audit trail. Default: mcpfleet:audit:*.",
    )


class ServerConfig(CRDModel):
    """Type-specific settings. Set only the block that matches spec.type."""

    # Explicit alias: to_camel("k8s_ops") gives "k8SOps", which neither users nor the CEL rules spell.
    k8s_ops: K8sOpsConfig | None = Field(default=None, alias="k8sOps", description="Settings for type k8s-ops.")
    monitoring: MonitoringConfig | None = Field(default=None, description="Settings for type monitoring.")
    cmdb: CMDBConfig | None = Field(default=None, description="Settings for type cmdb.")
    custom: dict[str, Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None,
        max_length=64,
        description="Settings for type custom: passed to the container as environment variables.",
    )


# ------------------------------------------------------------------ pod wiring


class KeySelector(CRDModel):
    """A key of a Secret or ConfigMap."""

    name: str = Field(description="Name of the Secret or ConfigMap.", max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(description="The key to read.", max_length=253)
    optional: bool | None = Field(default=None, description="Start the container even if the key is missing.")


class FieldSelector(CRDModel):
    """A field of the pod, via the downward API."""

    field_path: str = Field(description="Path of the field, e.g. metadata.name or status.podIP.", max_length=256)


class EnvVarSource(CRDModel):
    """Where an environment variable's value comes from."""

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: FieldSelector | None = Field(default=None, description="A field of the pod.")


class EnvVar(CRDModel):
    """One environment variable of the server container."""

    name: str = Field(description="Variable name.", max_length=128, pattern=ENV_NAME)
    value: str | None = Field(default=None, description="Literal value.", max_length=32768)
    value_from: EnvVarSource | None = Field(
        default=None, description="Value read from a Secret, ConfigMap or pod field."
    )


class NamedRef(CRDModel):
    """A reference to an object by name in the MCPServer's namespace."""

    name: str = Field(description="Name of the object.", max_length=253, pattern=DNS_SUBDOMAIN)
    optional: bool | None = Field(default=None, description="Start the container even if the object is missing.")


class EnvFromSource(CRDModel):
    """All keys of a ConfigMap or Secret as environment variables."""

    prefix: str | None = Field(default=None, description="Prefix added to every variable name.", max_length=64)
    config_map_ref: NamedRef | None = Field(default=None, description="The ConfigMap to read.")
    secret_ref: NamedRef | None = Field(default=None, description="The Secret to read.")


class SecretMount(CRDModel):
    """A Secret mounted read-only as files into the server container."""

    name: str = Field(description="Name of the Secret.", max_length=253, pattern=DNS_SUBDOMAIN)
    mount_path: str | None = Field(
        default=None,
        description="Directory to mount the Secret at. Defaults to /var/run/secrets/mcpfleet/<name>.",
        max_length=1024,
        pattern=r"^/[^\s]*$",
    )


class ResourceRequirements(CRDModel):
    """CPU and memory for the server container."""

    requests: dict[str, Quantity] | None = Field(
        default=None, max_length=8, description="Guaranteed resources, e.g. {cpu: 50m, memory: 64Mi}."
    )
    limits: dict[str, Quantity] | None = Field(
        default=None, max_length=8, description="Upper bounds, e.g. {memory: 256Mi}."
    )


# ------------------------------------------------------------------- policies


class PolicyRule(CRDModel):
    """One RBAC rule, as in a Kubernetes Role."""

    api_groups: list[Annotated[str, Field(max_length=253)]] = Field(
        max_length=16, description='API groups, "" for the core group.'
    )
    resources: list[Annotated[str, Field(max_length=253)]] = Field(
        min_length=1, max_length=64, description="Resources, e.g. pods or deployments/scale."
    )
    verbs: list[Annotated[str, Field(max_length=32)]] = Field(
        min_length=1, max_length=16, description="Verbs, e.g. get, list, watch, patch."
    )
    resource_names: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None, max_length=64, description="Restrict the rule to these object names."
    )


class RBACSpec(CRDModel):
    """The permissions of the server's own ServiceAccount (least privilege)."""

    cel_rules: ClassVar[tuple[CrossFieldRule, ...]] = (
        CrossFieldRule(
            cel="!(has(self.preset) && has(self.rules))",
            message="spec.rbac.preset and spec.rbac.rules exclude each other: pick a preset or list explicit rules",
            holds=lambda r: r.preset is None or r.rules is None,
            reason="FieldValueForbidden",
        ),
    )

    preset: RBACPreset | None = Field(
        default=None,
        description=(
            "read-only: get/list/watch on workloads, pods, logs and events (never Secrets); "
            "operator: read-only plus scale, restart and rollback (for cmdb: asset status annotations and Events); "
            "none: no API access. Defaults to read-only for k8s-ops, monitoring and cmdb on its kubernetes "
            "backend, none for custom and for cmdb on rest or netbox."
        ),
    )
    scope: RBACScope | None = Field(
        default=None,
        description=(
            "Namespace: a Role in the MCPServer's namespace; Cluster: a ClusterRole bound cluster-wide. "
            "Defaults to Cluster for k8s-ops, monitoring and cmdb (kubernetes backend), Namespace otherwise."
        ),
    )
    rules: list[PolicyRule] | None = Field(
        default=None, max_length=32, description="Explicit rules instead of a preset."
    )


class ToolsPolicy(CRDModel):
    """Which tools of the server the catalog exposes, and how risky they are."""

    allow: list[Annotated[str, Field(max_length=128, pattern=TOOL_PATTERN)]] | None = Field(
        default=None, max_length=256, description="Only tools matching one of these globs are cataloged."
    )
    deny: list[Annotated[str, Field(max_length=128, pattern=TOOL_PATTERN)]] | None = Field(
        default=None, max_length=256, description="Tools matching one of these globs are never cataloged."
    )
    risk_overrides: dict[str, Risk] | None = Field(
        default=None,
        max_length=256,
        description="Tool name to risk (SAFE, MEDIUM, HIGH), overriding the inferred risk.",
    )
    require_approval: bool = Field(
        default=False,
        description=(
            "Hold new tools, and tools whose description or input schema changed, out of the catalog until "
            "spec.tools.approvedDigest names the server's current tool digest (status.tools.pendingDigest)."
        ),
    )
    approved_digest: str | None = Field(
        default=None,
        description="The tool digest (sha256:...) a person approved; used with requireApproval.",
        max_length=80,
        pattern=r"^sha256:[0-9a-f]{64}$",
    )


class ConsulSpec(CRDModel):
    """Registration of the server in Consul."""

    register_service: bool = Field(
        default=True, alias="register", description="Register the server's Service in Consul."
    )
    service_name: str | None = Field(
        default=None,
        description="Consul service name. Defaults to mcp-<namespace>-<name>.",
        max_length=63,
        pattern=DNS_LABEL,
    )
    tags: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None, max_length=32, description="Extra Consul tags (mcpfleet adds type and prefix tags)."
    )
    check_interval: str = Field(
        default="30s",
        description="How often Consul checks the server's /health, e.g. 10s or 1m.",
        max_length=32,
        pattern=DURATION,
    )
    check_timeout: str = Field(
        default="10s",
        description="How long one health check may take before it counts as failed.",
        max_length=32,
        pattern=DURATION,
    )
    deregister_critical_after: str = Field(
        default="3m",
        description="Consul removes the registration after the check has been critical this long.",
        max_length=32,
        pattern=DURATION,
    )


class LabelSelector(CRDModel):
    """Objects whose labels contain all of these."""

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        max_length=16, description="Labels that must all match."
    )


class NetworkPeer(CRDModel):
    """Pods allowed to reach the server."""

    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="Namespaces whose pods may connect; omitted means the MCPServer's namespace.",
    )
    pod_selector: LabelSelector | None = Field(
        default=None, description="Pods that may connect; omitted means every pod of the selected namespaces."
    )


class NetworkPolicySpec(CRDModel):
    """An ingress NetworkPolicy for the server pods."""

    enabled: bool = Field(default=False, description="Create a NetworkPolicy that admits only the listed peers.")
    allow_from: list[NetworkPeer] | None = Field(
        default=None,
        max_length=16,
        description="Peers admitted in addition to the mcpfleet gateway and operator.",
    )


# ------------------------------------------------------------------------ spec


def _config_block_rule(block: str, attr: str, server_type: ServerType) -> CrossFieldRule:
    """spec.config.<block> may be set only when spec.type is the block's type."""

    def holds(spec: MCPServerSpec) -> bool:
        return spec.config is None or getattr(spec.config, attr) is None or spec.type == server_type

    return CrossFieldRule(
        cel=f"!has(self.config) || !has(self.config.{block}) || self.type == '{server_type.value}'",
        message=(
            f"spec.config.{block} is only for type {server_type.value}: "
            "use the spec.config block that matches spec.type"
        ),
        holds=holds,
        field_path=f".config.{block}",
        reason="FieldValueForbidden",
    )


# Set by the operator from the spec; a user value would silently disagree with spec.port/transport/path.
RESERVED_ENV = (
    "POD_NAME",
    "POD_NAMESPACE",
    "MCPFLEET_SERVER_NAME",
    "MCP_TRANSPORT",
    "MCP_HOST",
    "MCP_PORT",
    "MCP_PATH",
    "POD_IP",
)
# The operator's own mounts in every server pod: the builders mount these, the rules keep users off them.
SERVER_TMP_DIR = "/tmp"
SERVER_CONFIG_DIR = "/etc/mcpfleet"
RESERVED_MOUNTS = (SERVER_TMP_DIR, SERVER_CONFIG_DIR)


def _no_reserved_mount(path: str | None) -> bool:
    return path is None or not any(path == root or path.startswith(root + "/") for root in RESERVED_MOUNTS)


def _unique_names(items: list[Any] | None) -> list[Any] | None:
    seen: set[str] = set()
    for item in items or ():
        if item.name in seen:
            raise ValueError(f"name {item.name!r} appears twice: each name may appear once")
        seen.add(item.name)
    return items


# The object's name becomes a Service name and a label value: a DNS-1035 label of at most 63 characters.
NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
_NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = CrossFieldRule(
    cel=f"size(self.metadata.name) <= 63 && self.metadata.name.matches('{NAME_PATTERN}')",
    message=(
        "metadata.name must start with a lowercase letter, contain only lowercase letters, digits and '-', "
        "and be at most 63 characters: it names the server's Service"
    ),
    holds=lambda name: bool(_NAME_RE.match(name)),
    reason="FieldValueInvalid",
)


def check_name(name: str) -> str | None:
    """The NAME_RULE message when an MCPServer's name cannot be used, else None."""
    return None if NAME_RULE.holds(name) else NAME_RULE.message


_ENDPOINT_ONLY_FORBIDS = ("env", "env_from", "secret_refs", "rbac", "network_policy", "image_pull_policy")


class MCPServerSpec(CRDModel):
    """The desired state of an MCP server."""

    cel_rules: ClassVar[tuple[CrossFieldRule, ...]] = (
        CrossFieldRule(
            cel="self.type != 'custom' || has(self.image) || has(self.endpoint)",
            message=(
                "type custom needs spec.image (a container mcpfleet runs) or spec.endpoint "
                "(an MCP server that runs elsewhere)"
            ),
            holds=lambda s: s.type != ServerType.CUSTOM or s.image is not None or s.endpoint is not None,
            reason="FieldValueRequired",
        ),
        CrossFieldRule(
            cel="!has(self.env) || self.env.all(e, !(e.name in " + str(list(RESERVED_ENV)) + "))",
            message=(
                "spec.env must not set " + ", ".join(RESERVED_ENV) + ": mcpfleet sets them from the spec "
                "(use spec.port, spec.transport and spec.path)"
            ),
            holds=lambda s: all(var.name not in RESERVED_ENV for var in s.env or ()),
            field_path=".env",
            reason="FieldValueForbidden",
        ),
        CrossFieldRule(
            cel=(
                "!has(self.secretRefs) || self.secretRefs.all(s, !has(s.mountPath) || !("
                + " || ".join(f"s.mountPath == '{r}' || s.mountPath.startsWith('{r}/')" for r in RESERVED_MOUNTS)
                + "))"
            ),
            message="spec.secretRefs[].mountPath must not be /tmp or /etc/mcpfleet or below: mcpfleet mounts its own "
            "volumes there",
            holds=lambda s: all(_no_reserved_mount(ref.mount_path) for ref in s.secret_refs or ()),
            field_path=".secretRefs",
            reason="FieldValueForbidden",
        ),
        CrossFieldRule(
            cel="!(has(self.image) && has(self.endpoint))",
            message=(
                "spec.image and spec.endpoint exclude each other: keep spec.image to run the server "
                "in the cluster, or spec.endpoint to catalog a server that runs elsewhere"
            ),
            holds=lambda s: s.image is None or s.endpoint is None,
            field_path=".endpoint",
            reason="FieldValueForbidden",
        ),
        CrossFieldRule(
            cel="!has(self.endpoint) || (!has(self.replicas) && !has(self.resources))",
            message=(
                "spec.replicas and spec.resources apply only to servers mcpfleet runs: remove them, "
                "or replace spec.endpoint with spec.image"
            ),
            holds=lambda s: s.endpoint is None or (s.replicas is None and s.resources is None),
            field_path=".endpoint",
            reason="FieldValueForbidden",
        ),
        CrossFieldRule(
            cel=(
                "!has(self.endpoint) || (!has(self.env) && !has(self.envFrom) && !has(self.secretRefs) "
                "&& !has(self.rbac) && !has(self.networkPolicy) && !has(self.imagePullPolicy))"
            ),
            message=(
                "spec.env, envFrom, secretRefs, rbac, networkPolicy and imagePullPolicy configure pods "
                "mcpfleet runs: remove them when spec.endpoint is set"
            ),
            holds=lambda s: s.endpoint is None or all(getattr(s, f) is None for f in _ENDPOINT_ONLY_FORBIDS),
            field_path=".endpoint",
            reason="FieldValueForbidden",
        ),
        CrossFieldRule(
            cel="self.transport != 'stdio' || !has(self.replicas) || self.replicas == 1",
            message="transport stdio serves one client through one pod: set spec.replicas to 1 or use streamable-http",
            holds=lambda s: s.transport != Transport.STDIO or s.replicas in (None, 1),
            field_path=".replicas",
            reason="FieldValueInvalid",
        ),
        CrossFieldRule(
            cel="self.transport != 'stdio' || !has(self.endpoint)",
            message="an external spec.endpoint is reached over HTTP: set spec.transport to streamable-http or sse",
            holds=lambda s: s.transport != Transport.STDIO or s.endpoint is None,
            field_path=".transport",
            reason="FieldValueInvalid",
        ),
        CrossFieldRule(
            cel="self.type != 'monitoring' || has(self.endpoint) || (has(self.config) && has(self.config.monitoring))",
            message="type monitoring needs spec.config.monitoring.prometheusUrl (the Prometheus its tools query)",
            holds=lambda s: (
                s.type != ServerType.MONITORING
                or s.endpoint is not None
                or (s.config is not None and s.config.monitoring is not None)
            ),
            reason="FieldValueRequired",
        ),
        *(
            _config_block_rule(block, attr, server_type)
            for block, attr, server_type in (
                ("k8sOps", "k8s_ops", ServerType.K8S_OPS),
                ("monitoring", "monitoring", ServerType.MONITORING),
                ("cmdb", "cmdb", ServerType.CMDB),
                ("custom", "custom", ServerType.CUSTOM),
            )
        ),
    )

    type: ServerType = Field(
        description="The server to run: k8s-ops, monitoring or cmdb (built in), or custom (your image or endpoint)."
    )
    image: str | None = Field(
        default=None,
        description="Container image. Required for custom unless spec.endpoint is set; overrides the built-in image.",
        max_length=512,
        pattern=IMAGE_REF,
    )
    image_pull_policy: PullPolicy | None = Field(default=None, description="Image pull policy of the container.")
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=50,
        description="Number of server pods; defaults to 1. 0 stops the server but keeps its configuration.",
    )
    transport: Transport = Field(
        default=Transport.STREAMABLE_HTTP,
        description="MCP transport the server speaks: streamable-http, sse (legacy) or stdio (one pod, one client).",
    )
    port: int = Field(
        default=8080,
        ge=1024,
        le=65535,
        description="Container port of the server; 1024 or above because servers never run as root.",
    )
    path: str | None = Field(
        default=None,
        description="HTTP path of the MCP endpoint; defaults to /mcp (streamable-http) or /sse (sse).",
        max_length=256,
        pattern=URL_PATH,
    )
    endpoint: str | None = Field(
        default=None,
        description="URL of an MCP server that runs elsewhere. mcpfleet deploys nothing and only catalogs it.",
        max_length=2048,
        pattern=HTTP_URL,
    )
    tool_prefix: str | None = Field(
        default=None,
        description="Prefix of this server's tools in the catalog (k8s -> k8s:get_pods). Defaults per type.",
        max_length=32,
        pattern=TOOL_PREFIX,
    )
    health_path: str | None = Field(
        default=None,
        description="HTTP path of a health endpoint for probes. Built-in servers use /health; custom servers "
        "without it get a TCP probe on spec.port.",
        max_length=256,
        pattern=URL_PATH,
    )
    config: ServerConfig | None = Field(default=None, description="Type-specific settings.")
    env: Annotated[list[EnvVar] | None, AfterValidator(_unique_names)] = Field(
        default=None,
        max_length=64,
        description="Extra environment variables of the server container.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] | None = Field(
        default=None,
        max_length=16,
        description="ConfigMaps or Secrets whose keys become environment variables.",
    )
    secret_refs: Annotated[list[SecretMount] | None, AfterValidator(_unique_names)] = Field(
        default=None,
        max_length=16,
        description="Secrets mounted read-only as files (preferred over env for secrets).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description="CPU and memory. Defaults: requests cpu 50m, memory 64Mi; limits cpu 500m, memory 256Mi.",
    )
    rbac: RBACSpec | None = Field(default=None, description="Permissions of the server's ServiceAccount.")
    tools: ToolsPolicy | None = Field(default=None, description="Tool allow/deny lists and risk overrides.")
    consul: ConsulSpec | None = Field(default=None, description="Consul registration; on by default.")
    network_policy: NetworkPolicySpec | None = Field(default=None, description="Ingress NetworkPolicy; off by default.")


# ---------------------------------------------------------------------- status


class Condition(CRDModel):
    """One aspect of the server's state (Kubernetes condition conventions)."""

    type: str = Field(description="Ready, Deployed, Registered or ToolsSynced.", max_length=64)
    status: str = Field(description="True, False or Unknown.", pattern=r"^(True|False|Unknown)$")
    reason: str | None = Field(default=None, description="CamelCase reason code.", max_length=128)
    message: str | None = Field(default=None, description="What happened, for people.", max_length=4096)
    last_transition_time: str | None = Field(
        default=None, description="When status last changed (RFC 3339).", max_length=64
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The spec generation the condition describes."
    )


class ToolsStatus(CRDModel):
    """The tools the server reported and the operator confirmed."""

    count: int = Field(default=0, ge=0, description="Number of cataloged tools.")
    digest: str | None = Field(default=None, description="sha256 of the canonical tool list.", max_length=80)
    names: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None, max_length=200, description="Tool names (at most 200 listed)."
    )
    pending_digest: str | None = Field(
        default=None,
        description="Digest of a tool list held for approval (spec.tools.requireApproval); copy it to approvedDigest.",
        max_length=80,
    )
    pending: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None, max_length=200, description="Tools held for approval: new, or changed since they were approved."
    )
    drifted: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None,
        max_length=200,
        description="Tools that kept their name but changed their description or input schema in the last change.",
    )
    catalog_revision: int | None = Field(
        default=None, ge=0, description="The catalog revision that last included this server's tools."
    )
    synced_at: str | None = Field(default=None, description="When the tools were last confirmed (RFC 3339).")


class MCPServerStatus(CRDModel):
    """The observed state of an MCP server, written by the operator."""

    phase: Phase | None = Field(default=None, description="Pending, Deploying, Ready, Degraded or Failed.")
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        description="Ready, Deployed, Registered and ToolsSynced.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(default=None, ge=0, description="The spec generation last acted on.")
    endpoint: str | None = Field(default=None, description="Where MCP clients reach the server.", max_length=2048)
    replicas: int | None = Field(default=None, ge=0, description="Desired server pods.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Server pods that are available.")
    tools: ToolsStatus | None = Field(default=None, description="The server's tools.")
    consul_service_id: str | None = Field(default=None, description="ID of the Consul registration.", max_length=256)


def parse_spec(raw: Any) -> MCPServerSpec:
    """Parse the spec of an object read from the API server."""
    return MCPServerSpec.model_validate(raw)


_STATUS_KEYS = frozenset(field.alias or name for name, field in MCPServerStatus.model_fields.items())


def parse_status(raw: Any) -> MCPServerStatus:
    """Parse a status written by an earlier operator run; keys of other writers are left out."""
    return MCPServerStatus.model_validate({k: v for k, v in (raw or {}).items() if k in _STATUS_KEYS})
