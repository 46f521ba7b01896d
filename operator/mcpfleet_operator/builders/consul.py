"""What Consul gets for one MCPServer: service name and id, address, tags, meta and a health check.

Pure: the registrar (:mod:`mcpfleet_operator.consul`) sends what these functions build and compares
what Consul reports with it, so a registration that is already right is never written again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from consul import Check

from mcpfleet_contracts.mcpserver import ConsulSpec, MCPServerSpec, ServerType, Transport
from mcpfleet_operator.builders.defaults import effective_path, effective_tool_prefix
from mcpfleet_operator.builders.model import Owner

# Every registration carries this tag: the registrar lists (and only ever removes) services tagged with it.
FLEET_TAG = "mcpfleet"
DEFAULT_HEALTH_PATH = "/health"
DNS_LABEL_MAX = 63
# Consul accepts at most 64 meta pairs, keys of [A-Za-z0-9_-] up to 128 characters and values up to 512.
META_VALUE_MAX = 512
_META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

META_TYPE = "mcp_type"
META_PREFIX = "mcp_prefix"
META_TRANSPORT = "mcp_transport"
META_PATH = "mcp_path"
META_SCHEME = "mcp_scheme"
META_NAMESPACE = "k8s_namespace"
META_NAME = "mcpserver"
META_TOOLS_DIGEST = "tools_digest"
# A digest over everything else in the registration, the health check included: the agent's service list
# does not show checks, and this lets one cheap listing tell whether a registration is still exactly ours.
META_DIGEST = "mcpfleet_digest"

_DEFAULTS = ConsulSpec()


@dataclass(frozen=True)
class Registration:
    """Everything Consul gets for one MCPServer."""

    service_id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: Mapping[str, str] = field(hash=False)
    check: dict[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        # A read-only copy: a caller changing its dict afterwards must not change what was compared.
        object.__setattr__(self, "meta", MappingProxyType(dict(sorted(self.meta.items()))))

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name) of the MCPServer, read back from the meta."""
        return self.meta[META_NAMESPACE], self.meta[META_NAME]

    def matches(self, live: Mapping[str, Any]) -> bool:
        """Whether an entry of Consul's /v1/agent/services is this registration."""
        return (
            live.get("ID") == self.service_id
            and live.get("Service") == self.name
            and live.get("Address") == self.address
            and live.get("Port") == self.port
            and tuple(live.get("Tags") or ()) == self.tags
            and dict(live.get("Meta") or {}) == dict(self.meta)
        )


def _dns_label(text: str) -> str:
    """``text`` if it fits a DNS label, else a stable shortening that keeps a hash of the whole."""
    if len(text) <= DNS_LABEL_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: DNS_LABEL_MAX - len(digest) - 1].rstrip('-')}-{digest}"


def consul_service_name(owner: Owner, spec: MCPServerSpec) -> str:
    """spec.consul.serviceName, or mcp-<namespace>-<name> shortened to a DNS label."""
    if spec.consul is not None and spec.consul.service_name:
        return spec.consul.service_name
    return _dns_label(f"mcp-{owner.namespace}-{owner.name}")


def consul_service_id(owner: Owner, spec: MCPServerSpec) -> str:
    """Unique per MCPServer and stable across operator restarts, so that a restarted operator finds its own."""
    return f"mcpfleet-{spec.type.value}-{owner.namespace}-{owner.name}"


def _tags(spec: MCPServerSpec, prefix: str) -> tuple[str, ...]:
    tags = ["mcp", FLEET_TAG, f"type:{spec.type.value}", f"prefix:{prefix}", f"transport:{spec.transport.value}"]
    if spec.consul is not None:
        tags.extend(spec.consul.tags or ())
    return tuple(dict.fromkeys(tags))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _endpoint_parts(endpoint: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an external endpoint; credentials in the URL are left out on purpose."""
    parts = urlsplit(endpoint)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, parts.hostname or "", port, parts.path or "/"


def _check(spec: MCPServerSpec, address: str, port: int, health_scheme: str) -> dict[str, Any]:
    consul = spec.consul or _DEFAULTS
    timing = {
        "interval": consul.check_interval,
        "timeout": consul.check_timeout,
        "deregister": consul.deregister_critical_after,
    }
    if spec.endpoint is not None:
        scheme, host, endpoint_port, _ = _endpoint_parts(spec.endpoint)
        if spec.health_path is None:
            return dict(Check.tcp(host, endpoint_port, **timing))
        return dict(Check.http(f"{scheme}://{_url_host(host)}:{endpoint_port}{spec.health_path}", **timing))
    health_path = spec.health_path or (None if spec.type == ServerType.CUSTOM else DEFAULT_HEALTH_PATH)
    if health_path is None:
        # A custom image without spec.healthPath may serve nothing but MCP: an open port is all we can ask.
        return dict(Check.tcp(address, port, **timing))
    return dict(Check.http(f"{health_scheme}://{_url_host(address)}:{port}{health_path}", **timing))


def _meta(owner: Owner, spec: MCPServerSpec, prefix: str, tools_digest: str | None) -> dict[str, str]:
    scheme, path = "http", effective_path(spec)
    if spec.endpoint is not None:
        scheme, _, _, path = _endpoint_parts(spec.endpoint)
    meta = {
        META_TYPE: spec.type.value,
        META_PREFIX: prefix,
        META_TRANSPORT: spec.transport.value,
        META_PATH: path or "",
        META_SCHEME: scheme,
        META_NAMESPACE: owner.namespace,
        META_NAME: owner.name,
    }
    if tools_digest:
        meta[META_TOOLS_DIGEST] = tools_digest
    return {key: value[:META_VALUE_MAX] for key, value in meta.items()}


def _digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def build_registration(
    owner: Owner,
    spec: MCPServerSpec,
    *,
    address: str,
    port: int,
    tools_digest: str | None,
    health_scheme: str = "http",
) -> Registration | None:
    """The registration of a server reachable at address:port.

    None when spec.consul.register is false, or for a stdio server, which no network client can reach.
    """
    if spec.consul is not None and not spec.consul.register_service:
        return None
    if spec.transport == Transport.STDIO:
        return None
    prefix = effective_tool_prefix(spec, owner.name)
    service_id = consul_service_id(owner, spec)
    name = consul_service_name(owner, spec)
    tags = _tags(spec, prefix)
    meta = _meta(owner, spec, prefix, tools_digest)
    check = _check(spec, address, port, health_scheme)
    meta[META_DIGEST] = _digest(
        {"id": service_id, "name": name, "address": address, "port": port, "tags": tags, "meta": meta, "check": check}
    )
    invalid = [key for key in meta if not _META_KEY.match(key)]
    if invalid:
        raise ValueError(f"meta keys {invalid} are not valid in Consul (only A-Z, a-z, 0-9, _ and -)")
    return Registration(service_id=service_id, name=name, address=address, port=port, tags=tags, meta=meta, check=check)


def _service_port(service: Mapping[str, Any], default: int) -> int:
    ports = (service.get("spec") or {}).get("ports") or ()
    for entry in ports:
        if entry.get("port") == default:
            return default
    first = ports[0].get("port") if ports else None
    return first if isinstance(first, int) else default


def registration_target(owner: Owner, spec: MCPServerSpec, service: Mapping[str, Any] | None) -> tuple[str, int] | None:
    """Address and port to register: the external endpoint, or the server's Service.

    None when there is nothing reachable to register yet: a stdio server (no network listener), or a
    managed server whose Service does not exist yet.
    """
    if spec.endpoint is not None:
        _, host, port, _ = _endpoint_parts(spec.endpoint)
        return (host, port) if host else None
    if spec.transport == Transport.STDIO or service is None:
        return None
    port = _service_port(service, spec.port)
    cluster_ip = (service.get("spec") or {}).get("clusterIP")
    if isinstance(cluster_ip, str) and cluster_ip and cluster_ip != "None":
        return cluster_ip, port
    # Headless, or not assigned yet: the name resolves wherever cluster DNS does.
    return f"{owner.name}.{owner.namespace}.svc", port
