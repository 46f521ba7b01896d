"""Config of the catalog sources (file or ConfigMap, endpoint overrides) and of Consul discovery, and the pure parts
of both: which text a ConfigMap holds, which Consul instance a service is reached at."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from mcpfleet_gateway.catalog_watch import configmap_text
from mcpfleet_gateway.config import ConfigMapRef, GatewayConfig, config_schema, config_store, expand_env
from mcpfleet_gateway.config_store import ConfigInvalid
from mcpfleet_gateway.consul_source import DiscoveredService, discovered_service, next_index

QUIET = {"audit": {"enabled": False}}


def load(tmp_path: Path, document: dict[str, Any]) -> GatewayConfig:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({**QUIET, **document}))
    return config_store(path).load()


def problems_of(tmp_path: Path, document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigInvalid) as invalid:
        load(tmp_path, document)
    return invalid.value.problems


def test_a_configmap_source_has_the_operator_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, {"catalog": {"configmap": {"namespace": "mcpfleet"}, "poll_seconds": 0.05}})
    assert config.catalog.configmap == ConfigMapRef(namespace="mcpfleet", name="mcpfleet-catalog", key="catalog.json")
    assert config.catalog.path is None
    assert config.catalog.poll_seconds == 0.05


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        (
            {"path": "/etc/catalog.json", "configmap": {"namespace": "mcpfleet"}},
            "catalog.path and catalog.configmap are exclusive",
        ),
        ({"path": "/etc/catalog.json", "kubeconfig": "/root/.kube/config"}, "catalog.kubeconfig applies only with"),
        ({"context": "kind"}, "catalog.context applies only with"),
        ({"configmap": {}}, "catalog.configmap.namespace"),
        ({"configmap": {"namespace": "Team_A"}}, "catalog.configmap.namespace"),
        ({"configmap": {"namespace": "a", "key": "no/slash"}}, "catalog.configmap.key"),
        ({"endpoint_overrides": {"team-a/k8s": "k8s-ops:8080"}}, "is not an absolute http:// or https:// URL"),
        ({"endpoint_overrides": {"k8s": "ftp://host/mcp"}}, "endpoint_overrides.k8s"),
        ({"endpoint_overrides": {"k8s": "http://host:99999/mcp"}}, "has an invalid port"),
        ({"poll_seconds": 0}, "catalog.poll_seconds"),
    ],
)
def test_invalid_catalog_sources_say_what_to_change(tmp_path: Path, catalog: dict[str, Any], message: str) -> None:
    problems = problems_of(tmp_path, {"catalog": catalog})
    assert any(message in problem for problem in problems), problems


def test_endpoint_overrides_accept_names_and_prefixes(tmp_path: Path) -> None:
    overrides = {"team-a/k8s-ops": "http://127.0.0.1:18080/mcp", "cmdb": "https://cmdb.example.com/sse"}
    config = load(tmp_path, {"catalog": {"path": "/etc/catalog.json", "endpoint_overrides": overrides}})
    assert config.catalog.endpoint_overrides == overrides


def test_consul_is_off_unless_configured(tmp_path: Path) -> None:
    assert load(tmp_path, {}).consul is None


def test_consul_settings_defaults_and_token_expansion(tmp_path: Path) -> None:
    document = expand_env(
        {"consul": {"address": "consul.service:8500", "token": "${CONSUL_TOKEN}"}}, {"CONSUL_TOKEN": "t0k"}
    )
    config = load(tmp_path, document)
    assert config.consul is not None
    assert config.consul.endpoint == ("http", "consul.service", 8500)
    assert config.consul.token is not None
    assert config.consul.token.get_secret_value() == "t0k"
    assert "t0k" not in repr(config.consul)
    assert (config.consul.tag, config.consul.poll_seconds, config.consul.verify_tls) == ("mcp", 10.0, True)


@pytest.mark.parametrize(
    ("consul", "message"),
    [
        ({"address": "consul"}, "is not a Consul HTTP address"),
        ({"address": "ftp://consul:8500"}, "is not a Consul HTTP address"),
        ({"address": "http://consul:8500/v1"}, "is not a Consul HTTP address"),
        ({"token": "a", "token_file": "/run/secrets/consul"}, "consul.token and consul.token_file are exclusive"),
        ({"tag": ""}, "consul.tag"),
        ({"poll_seconds": 0}, "consul.poll_seconds"),
        ({"surprise": True}, "consul.surprise"),
    ],
)
def test_invalid_consul_settings_say_what_to_change(tmp_path: Path, consul: dict[str, Any], message: str) -> None:
    problems = problems_of(tmp_path, {"consul": consul})
    assert any(message in problem for problem in problems), problems


def test_the_schema_describes_the_new_sections() -> None:
    properties = config_schema()["properties"]
    assert "consul" in properties
    catalog = config_schema()["$defs"]["CatalogSource"]["properties"]
    assert {"configmap", "kubeconfig", "context", "endpoint_overrides"} <= set(catalog)


REF = ConfigMapRef(namespace="mcpfleet")


def test_the_catalog_text_is_read_from_data_or_binary_data() -> None:
    assert configmap_text(REF, {"data": {"catalog.json": "{}"}}) == "{}"
    encoded = base64.b64encode(b'{"revision": 1}').decode()
    assert configmap_text(REF, {"binaryData": {"catalog.json": encoded}}) == '{"revision": 1}'
    assert configmap_text(REF, {"data": {"other.json": "{}"}}) is None
    assert configmap_text(REF, {}) is None
    with pytest.raises(ValueError, match=r"binaryData\.catalog\.json"):
        configmap_text(REF, {"binaryData": {"catalog.json": "not base64!"}})


def entry(
    service_id: str, port: int, *, node: str = "node-1", address: str = "10.0.0.7", **meta: str
) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": "192.168.1.1"},
        "Service": {"ID": service_id, "Service": "k8s-ops", "Address": address, "Port": port, "Meta": meta},
        "Checks": [],
    }


def test_a_service_registered_by_the_operator_is_reached_as_its_meta_says() -> None:
    meta = {"mcp_prefix": "k8s", "mcp_transport": "sse", "mcp_path": "/events", "k8s_namespace": "team-a"}
    found = discovered_service("k8s-ops", [entry("k8s-ops-b", 9001, **meta), entry("k8s-ops-a", 9000, **meta)])
    assert found == DiscoveredService(
        service="k8s-ops", prefix="k8s", transport="sse", url="http://10.0.0.7:9000/events"
    )
    assert found.upstream_name == "consul/k8s-ops"
    spec = found.spec()
    assert (spec.transport, spec.url, spec.prefix) == ("sse", "http://10.0.0.7:9000/events", "k8s")


def test_a_service_without_meta_gets_the_defaults() -> None:
    found = discovered_service("inventory", [entry("inv-1", 8080, address="")])
    assert found == DiscoveredService(
        service="inventory", prefix="inventory", transport="streamable-http", url="http://192.168.1.1:8080/mcp"
    )
    ipv6 = discovered_service("inventory", [entry("inv-1", 8080, address="fd00::7")])
    assert ipv6 is not None
    assert ipv6.url == "http://[fd00::7]:8080/mcp"


def test_an_https_server_is_reached_over_https() -> None:
    found = discovered_service("vendor", [entry("v-1", 443, mcp_scheme="https", mcp_path="/v1/mcp")])
    assert found is not None
    assert found.url == "https://10.0.0.7:443/v1/mcp"
    odd = discovered_service("vendor", [entry("v-1", 8080, mcp_scheme="gopher")])
    assert odd is not None
    assert odd.url.startswith("http://"), "an unknown scheme falls back to http"


def test_services_that_cannot_be_served_are_left_out() -> None:
    assert discovered_service("k8s-ops", []) is None
    assert discovered_service("k8s-ops", [entry("a", 9000, mcp_transport="stdio")]) is None
    assert discovered_service("Bad_Name", [entry("a", 9000)]) is None
    assert discovered_service("k8s-ops", [entry("a", 9000, mcp_prefix="Not A Prefix")]) is None


def test_a_blocking_query_index_resets_when_consul_went_backwards() -> None:
    assert next_index(None, "42") == "42"
    assert next_index("42", "43") == "43"
    assert next_index("42", "7") is None  # a restarted agent
    assert next_index("42", "0") is None
    assert next_index("42", None) is None
    assert next_index("42", "garbage") is None
