"""The Consul registration builder: names, ids, tags, meta and health checks of one MCPServer."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mcpfleet_contracts.mcpserver import MCPServerSpec, parse_spec
from mcpfleet_operator.builders.consul import (
    META_DIGEST,
    Registration,
    build_registration,
    consul_service_id,
    consul_service_name,
    registration_target,
)
from mcpfleet_operator.builders.model import Owner

OWNER = Owner("k8s", "team-a", "uid-1")
DIGEST = "sha256:" + "ab" * 32
CONSUL_META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def spec(**fields: Any) -> MCPServerSpec:
    return parse_spec({"type": "k8s-ops", **fields})


def registration(parsed: MCPServerSpec, owner: Owner = OWNER, digest: str | None = DIGEST) -> Registration:
    built = build_registration(owner, parsed, address="10.96.0.12", port=8080, tools_digest=digest)
    assert built is not None
    return built


def service(cluster_ip: str | None = "10.96.0.12", port: int = 8080) -> dict[str, Any]:
    body: dict[str, Any] = {"ports": [{"name": "mcp", "port": port}]}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    return {"metadata": {"name": "k8s", "namespace": "team-a"}, "spec": body}


# ------------------------------------------------------------------ names and ids


def test_service_name_defaults_to_namespace_and_name() -> None:
    assert consul_service_name(OWNER, spec()) == "mcp-team-a-k8s"


def test_service_name_from_the_spec_wins() -> None:
    assert consul_service_name(OWNER, spec(consul={"serviceName": "ops-tools"})) == "ops-tools"


def test_long_service_names_are_shortened_to_a_stable_unique_dns_label() -> None:
    first = Owner("a" * 60, "b" * 60, "uid")
    second = Owner("a" * 59 + "c", "b" * 60, "uid")
    name = consul_service_name(first, spec())
    assert len(name) <= 63
    assert DNS_LABEL.match(name)
    assert name == consul_service_name(first, spec())
    assert name != consul_service_name(second, spec())
    assert name.startswith("mcp-bbb")


def test_service_id_names_type_namespace_and_name() -> None:
    assert consul_service_id(OWNER, spec()) == "mcpfleet-k8s-ops-team-a-k8s"
    assert consul_service_id(Owner("k8s", "team-b", "uid"), spec()) != consul_service_id(OWNER, spec())
    monitoring = spec(type="monitoring", config={"monitoring": {"prometheusUrl": "http://prom:9090"}})
    assert consul_service_id(OWNER, monitoring) == "mcpfleet-monitoring-team-a-k8s"


# ------------------------------------------------------------------ tags and meta


def test_tags_describe_the_server_and_keep_the_spec_tags_in_order_without_duplicates() -> None:
    built = registration(spec(consul={"tags": ["prod", "mcp", "team-a", "prod"]}))
    assert built.tags == (
        "mcp",
        "mcpfleet",
        "type:k8s-ops",
        "prefix:k8s",
        "transport:streamable-http",
        "prod",
        "team-a",
    )


def test_meta_names_the_server_and_its_tools_digest() -> None:
    built = registration(spec())
    assert {key: value for key, value in built.meta.items() if key != META_DIGEST} == {
        "mcp_type": "k8s-ops",
        "mcp_prefix": "k8s",
        "mcp_transport": "streamable-http",
        "mcp_path": "/mcp",
        "mcp_scheme": "http",
        "k8s_namespace": "team-a",
        "mcpserver": "k8s",
        "tools_digest": DIGEST,
    }
    assert built.key == ("team-a", "k8s")


def test_meta_is_valid_for_consul() -> None:
    built = registration(spec(type="custom", image="example/srv:1", transport="sse", toolPrefix="x"))
    assert len(built.meta) <= 64
    assert all(CONSUL_META_KEY.match(key) and not key.startswith("consul-") for key in built.meta)
    assert all(len(value) <= 512 for value in built.meta.values())
    assert built.meta["mcp_path"] == "/sse"


def test_an_unknown_tools_digest_is_left_out() -> None:
    assert "tools_digest" not in registration(spec(), digest=None).meta


def test_the_registration_digest_changes_with_anything_consul_gets() -> None:
    base = registration(spec())
    assert registration(spec()) == base
    assert registration(spec()).meta[META_DIGEST] == base.meta[META_DIGEST]
    for changed in (
        registration(spec(), digest="sha256:" + "cd" * 32),
        registration(spec(consul={"checkInterval": "5s"})),
        registration(spec(consul={"tags": ["x"]})),
    ):
        assert changed.meta[META_DIGEST] != base.meta[META_DIGEST]
        assert changed != base


def test_meta_cannot_be_changed_through_the_callers_dict() -> None:
    meta = {"k8s_namespace": "a", "mcpserver": "b"}
    built = Registration("id", "name", "10.0.0.1", 80, ("mcpfleet",), meta, {})
    meta["mcpserver"] = "changed"
    assert built.meta["mcpserver"] == "b"
    with pytest.raises(TypeError):
        built.meta["mcpserver"] = "changed"  # type: ignore[index]


def test_matches_compares_with_what_the_agent_lists() -> None:
    built = registration(spec())
    listed: dict[str, Any] = {
        "ID": built.service_id,
        "Service": built.name,
        "Address": built.address,
        "Port": built.port,
        "Tags": list(built.tags),
        "Meta": dict(built.meta),
        "Weights": {"Passing": 1, "Warning": 1},
        "Datacenter": "dc1",
    }
    assert built.matches(listed)
    assert not built.matches({**listed, "Port": 9090})
    assert not built.matches({**listed, "Meta": {**listed["Meta"], "tools_digest": "sha256:old"}})
    assert not built.matches({**listed, "Tags": list(reversed(built.tags))})


# ------------------------------------------------------------------ health checks


def test_builtin_servers_get_an_http_check_on_health_with_the_crd_defaults() -> None:
    assert registration(spec()).check == {
        "http": "http://10.96.0.12:8080/health",
        "interval": "30s",
        "timeout": "10s",
        "DeregisterCriticalServiceAfter": "3m",
    }


def test_check_timing_and_path_come_from_the_spec() -> None:
    parsed = spec(
        healthPath="/ready",
        consul={"checkInterval": "5s", "checkTimeout": "2s", "deregisterCriticalAfter": "1h"},
    )
    built = build_registration(OWNER, parsed, address="10.0.0.9", port=9000, tools_digest=None, health_scheme="https")
    assert built is not None
    assert built.check == {
        "http": "https://10.0.0.9:9000/ready",
        "interval": "5s",
        "timeout": "2s",
        "DeregisterCriticalServiceAfter": "1h",
    }


def test_custom_servers_without_health_path_get_a_tcp_check() -> None:
    built = registration(spec(type="custom", image="example/srv:1"))
    assert built.check == {
        "tcp": "10.96.0.12:8080",
        "interval": "30s",
        "timeout": "10s",
        "DeregisterCriticalServiceAfter": "3m",
    }


def test_custom_servers_with_health_path_get_an_http_check() -> None:
    built = registration(spec(type="custom", image="example/srv:1", healthPath="/healthz"))
    assert built.check["http"] == "http://10.96.0.12:8080/healthz"


def test_an_ipv6_address_is_bracketed_in_the_check_url() -> None:
    built = build_registration(OWNER, spec(), address="fd00::12", port=8080, tools_digest=None)
    assert built is not None
    assert built.check["http"] == "http://[fd00::12]:8080/health"


# ------------------------------------------------------------------ external endpoints


def external(endpoint: str, **fields: Any) -> MCPServerSpec:
    return parse_spec({"type": "custom", "endpoint": endpoint, **fields})


def test_external_endpoints_register_the_urls_host_and_port() -> None:
    assert registration_target(OWNER, external("https://mcp.example.com/v1/mcp"), None) == ("mcp.example.com", 443)
    assert registration_target(OWNER, external("http://mcp.example.com/mcp"), None) == ("mcp.example.com", 80)
    assert registration_target(OWNER, external("http://10.1.2.3:9000/mcp"), service()) == ("10.1.2.3", 9000)


def test_external_endpoints_are_checked_on_their_origin_without_credentials() -> None:
    parsed = external("https://user:secret@mcp.example.com:8443/v1/mcp", healthPath="/status")
    target = registration_target(OWNER, parsed, None)
    assert target == ("mcp.example.com", 8443)
    built = build_registration(OWNER, parsed, address=target[0], port=target[1], tools_digest=None)
    assert built is not None
    assert built.check["http"] == "https://mcp.example.com:8443/status"
    assert (built.meta["mcp_path"], built.meta["mcp_scheme"]) == ("/v1/mcp", "https")
    assert "secret" not in repr(built)


def test_external_endpoints_without_health_path_get_a_tcp_check() -> None:
    built = build_registration(
        OWNER, external("https://mcp.example.com/mcp"), address="mcp.example.com", port=443, tools_digest=None
    )
    assert built is not None
    assert built.check["tcp"] == "mcp.example.com:443"


# ------------------------------------------------------------------ targets and opting out


def test_managed_servers_register_the_cluster_ip_of_their_service() -> None:
    assert registration_target(OWNER, spec(), service("10.96.0.12")) == ("10.96.0.12", 8080)
    assert registration_target(OWNER, spec(port=9000), service("10.96.0.13", port=9000)) == ("10.96.0.13", 9000)


@pytest.mark.parametrize("cluster_ip", ["None", "", None])
def test_without_a_cluster_ip_the_service_dns_name_is_registered(cluster_ip: str | None) -> None:
    assert registration_target(OWNER, spec(), service(cluster_ip)) == ("k8s.team-a.svc", 8080)


def test_nothing_is_registered_before_the_service_exists() -> None:
    assert registration_target(OWNER, spec(), None) is None


def test_stdio_servers_are_not_registered() -> None:
    parsed = spec(type="custom", image="example/srv:1", transport="stdio")
    assert registration_target(OWNER, parsed, service()) is None
    assert build_registration(OWNER, parsed, address="10.0.0.1", port=8080, tools_digest=None) is None


def test_register_false_builds_nothing() -> None:
    parsed = spec(consul={"register": False})
    assert build_registration(OWNER, parsed, address="10.96.0.12", port=8080, tools_digest=DIGEST) is None
