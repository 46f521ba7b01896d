"""UpstreamSpec: what each transport needs, what it must not carry, and messages that name the field."""

from __future__ import annotations

import base64
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from mcpfleet_gateway.upstreams import build_upstream, registered_transports
from mcpfleet_gateway.upstreams.spec import Transport, UpstreamSpec

VALID: dict[str, dict[str, Any]] = {
    "streamable-http": {"transport": "streamable-http", "url": "https://mcp.example.com/mcp"},
    "sse": {"transport": "sse", "url": "http://mcp.example.com/sse"},
    "websocket": {"transport": "websocket", "url": "wss://mcp.example.com/ws"},
    "stdio": {"transport": "stdio", "command": "mcp-server-git", "args": ["--repo", "."], "env": {"LOG": "1"}},
    "in-process": {"transport": "in-process", "target": "mcpfleet_servers.cmdb.server:build"},
}


def error_of(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        UpstreamSpec.model_validate(document)
    return str(caught.value)


@pytest.mark.parametrize("transport", list(VALID))
def test_valid_specs_and_defaults(transport: str) -> None:
    spec = UpstreamSpec.model_validate(VALID[transport])
    assert spec.timeouts.connect == 5
    assert spec.timeouts.call == 30
    assert spec.timeouts.list == 10
    assert spec.retries.attempts == 2
    assert spec.retries.backoff_seconds == 0.1
    assert spec.retries.max_backoff_seconds == 2
    assert spec.pool.max_connections == 100
    assert spec.health.interval_seconds == 15
    assert spec.breaker.failure_threshold == 5
    assert spec.breaker.reset_seconds == 10
    assert spec.protocol == "auto"
    assert spec.prefix is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"transport": "streamable-http"}, "transport streamable-http needs url"),
        ({"transport": "sse"}, "transport sse needs url"),
        ({"transport": "websocket"}, "transport websocket needs url"),
        ({"transport": "stdio"}, "transport stdio needs command"),
        ({"transport": "in-process"}, "transport in-process needs target"),
    ],
)
def test_required_field_is_named(document: dict[str, Any], message: str) -> None:
    assert message in error_of(document)


@pytest.mark.parametrize(
    ("transport", "extra", "field"),
    [
        ("streamable-http", {"command": "x"}, "command"),
        ("streamable-http", {"target": "a:b"}, "target"),
        ("sse", {"args": ["x"]}, "args"),
        ("websocket", {"env": {"A": "1"}}, "env"),
        ("websocket", {"protocol": "handshake"}, "protocol"),
        ("stdio", {"url": "http://x/mcp"}, "url"),
        ("stdio", {"auth": {"bearer": "t"}}, "auth"),
        ("stdio", {"pool": {"max_connections": 3}}, "pool"),
        ("websocket", {"pool": {"max_connections": 3}}, "pool"),
        ("in-process", {"cwd": "/tmp"}, "cwd"),
        ("in-process", {"command": "x"}, "command"),
    ],
)
def test_fields_of_other_transports_are_refused(transport: str, extra: dict[str, Any], field: str) -> None:
    message = error_of({**VALID[transport], **extra})
    assert f"{field} does not apply to transport {transport}" in message


@pytest.mark.parametrize(
    ("transport", "url", "wanted"),
    [
        ("streamable-http", "ws://host/mcp", "http:// or https://"),
        ("sse", "host:8000/sse", "http:// or https://"),
        ("websocket", "http://host/ws", "ws:// or wss://"),
    ],
)
def test_url_scheme_matches_the_transport(transport: str, url: str, wanted: str) -> None:
    message = error_of({"transport": transport, "url": url})
    assert f"url: {url!r} is not an absolute {wanted} URL" in message


def test_unknown_fields_are_refused() -> None:
    assert "Extra inputs are not permitted" in error_of({**VALID["sse"], "token": "x"})


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"bearer": "a", "basic": {"username": "u", "password": "p"}}, "set either bearer or basic, not both"),
        ({"headers": {"bad header": "x"}}, "'bad header' is not a valid HTTP header name"),
        ({"headers": {"Mcp-Session-Id": "x"}}, "set by the transport itself"),
        ({"bearer": "a", "headers": {"authorization": "x"}}, "'Authorization' conflicts"),
        ({"basic": {"username": "a:b", "password": "p"}}, "cannot contain ':'"),
    ],
)
def test_auth_validation(auth: dict[str, Any], message: str) -> None:
    assert message in error_of({**VALID["streamable-http"], "auth": auth})


def test_auth_headers_and_secrets() -> None:
    bearer = UpstreamSpec.model_validate({**VALID["sse"], "auth": {"bearer": "t0k", "headers": {"X-Tenant": "a"}}})
    assert bearer.auth.http_headers() == {"Authorization": "Bearer t0k", "X-Tenant": "a"}
    assert "t0k" not in repr(bearer)
    assert "t0k" not in bearer.model_dump_json()
    basic = UpstreamSpec.model_validate({**VALID["sse"], "auth": {"basic": {"username": "u", "password": "p"}}})
    assert basic.auth.http_headers() == {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    assert UpstreamSpec.model_validate(VALID["sse"]).auth.http_headers() == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target": "no-colon"}, "target: 'no-colon' is not of the form 'package.module:attribute'"),
        ({"prefix": "Bad_Prefix"}, "prefix"),
        ({"retries": {"backoff_seconds": 3, "max_backoff_seconds": 1}}, "max_backoff_seconds must be at least"),
        ({"timeouts": {"call": 0}}, "timeouts.call"),
        ({"breaker": {"failure_threshold": 0}}, "breaker.failure_threshold"),
        ({"health": {"url": "ftp://x/health"}}, "health.url: 'ftp://x/health' is not an absolute http:// or https://"),
    ],
)
def test_value_validation_names_the_field(changes: dict[str, Any], message: str) -> None:
    assert message in error_of({**VALID["in-process"], **changes})


def test_env_names_are_checked() -> None:
    assert "env: '1BAD' is not a valid environment variable name" in error_of({**VALID["stdio"], "env": {"1BAD": "x"}})


def test_every_field_is_described() -> None:
    def walk(schema: dict[str, Any], defs: dict[str, Any], path: str) -> None:
        for name, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{path}{name} has no description"
            ref = prop.get("$ref") or next((item["$ref"] for item in prop.get("anyOf", []) if "$ref" in item), None)
            if ref:
                walk(defs[ref.rsplit("/", 1)[-1]], defs, f"{path}{name}.")

    schema = UpstreamSpec.model_json_schema()
    walk(schema, schema.get("$defs", {}), "")


def test_every_transport_has_an_implementation() -> None:
    assert set(registered_transports()) == set(get_args(Transport))
    for transport, document in VALID.items():
        upstream = build_upstream("example", UpstreamSpec.model_validate(document))
        assert upstream.transport == transport
        assert upstream.prefix == "example"
    named = build_upstream("example", UpstreamSpec.model_validate({**VALID["sse"], "prefix": "ex"}))
    assert named.prefix == "ex"
