"""The shared JSON-over-HTTP backend against a real local aiohttp server: auth hook, limits, classified errors."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp.web
import pytest
from aiohttp.test_utils import TestServer

from mcpfleet_servers.base.http import HttpOptions, JsonHttpBackend, read_token_file, ssl_context
from mcpfleet_servers.base.toolkit import BackendUnavailable, NotFound, ToolFailure

# (status, body) answered by /status/<status>; /echo answers the request's headers and form.
_ANSWERS = {
    "400": (400, "bad field"),
    "401": (401, "who are you"),
    "404": (404, "gone"),
    "429": (429, "slow down"),
    "503": (503, "maintenance"),
    "empty": (200, ""),
    "text": (200, "<html>"),
    "big": (200, json.dumps(["x" * 100] * 100)),
}


async def _status(request: aiohttp.web.Request) -> aiohttp.web.Response:
    status, body = _ANSWERS[request.match_info["name"]]
    return aiohttp.web.Response(status=status, text=body)


async def _echo(request: aiohttp.web.Request) -> aiohttp.web.Response:
    form = await request.post()
    return aiohttp.web.json_response({"headers": dict(request.headers), "form": dict(form)})


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = aiohttp.web.Application()
    app.router.add_get("/status/{name}", _status)
    app.router.add_post("/echo", _echo)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


def _options() -> HttpOptions:
    return HttpOptions(
        request_timeout_seconds=5.0,
        max_response_bytes=4096,
        user_agent="mcpfleet-test",
        too_large_advice="ask for less",
        credentials_advice="check TEST_TOKEN",
        headers={"X-Extra": "1"},
    )


class _TokenBackend(JsonHttpBackend):
    unavailable_statuses = frozenset({429})

    async def authorization(self) -> dict[str, str]:
        return {"Authorization": "Bearer s3cret"}


@pytest.fixture
async def backend(base_url: str) -> AsyncIterator[JsonHttpBackend]:
    client = _TokenBackend("Test", base_url, _options())
    await client.start()
    yield client
    await client.close()


async def test_headers_auth_and_form_reach_the_backend(backend: JsonHttpBackend) -> None:
    answer = await backend.request("POST", "/echo", form=[("query", "up")])
    assert answer["form"] == {"query": "up"}
    headers = answer["headers"]
    assert (headers["Accept"], headers["User-Agent"], headers["X-Extra"]) == ("application/json", "mcpfleet-test", "1")
    assert headers["Authorization"] == "Bearer s3cret"


async def test_empty_answers_are_none_and_non_json_is_unavailable(backend: JsonHttpBackend) -> None:
    assert await backend.request("GET", "/status/empty") is None
    with pytest.raises(BackendUnavailable, match="answered 200 with something that is not JSON"):
        await backend.request("GET", "/status/text")


@pytest.mark.parametrize(
    ("name", "failure", "text"),
    [
        ("503", BackendUnavailable, "Test at .* is unavailable: answered 503: maintenance"),
        ("429", BackendUnavailable, "answered 429: slow down"),
        ("401", ToolFailure, r"refused the credentials \(401\): who are you; check TEST_TOKEN"),
        ("404", NotFound, r"dashboard 7 not found \(gone\)"),
        ("400", ToolFailure, r"rejected the request for dashboard 7 \(400\): bad field"),
    ],
)
async def test_error_answers_are_classified(
    backend: JsonHttpBackend, name: str, failure: type[ToolFailure], text: str
) -> None:
    with pytest.raises(failure, match=text) as caught:
        await backend.request("GET", f"/status/{name}", "dashboard 7")
    assert type(caught.value) is failure


async def test_answers_over_the_limit_say_how_to_ask_for_less(backend: JsonHttpBackend) -> None:
    with pytest.raises(ToolFailure, match="more than 4096 bytes; ask for less"):
        await backend.request("GET", "/status/big")


async def test_a_client_that_is_not_started_or_cannot_connect_is_unavailable(base_url: str) -> None:
    idle = JsonHttpBackend("Idle", base_url, _options())
    with pytest.raises(BackendUnavailable, match="not started"):
        await idle.request("GET", "/status/empty")
    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = JsonHttpBackend("Closed", f"http://127.0.0.1:{port}", _options())
    await closed.start()
    try:
        with pytest.raises(BackendUnavailable, match=f"Closed at http://127.0.0.1:{port} is unavailable"):
            await closed.request("GET", "/")
    finally:
        await closed.close()


async def test_token_files_and_tls_settings(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    assert await read_token_file(token, "Test", "fix TEST_TOKEN_FILE") == "abc"
    with pytest.raises(ToolFailure, match=r"cannot read the Test token file .*; fix TEST_TOKEN_FILE"):
        await read_token_file(tmp_path / "missing", "Test", "fix TEST_TOKEN_FILE")
    assert ssl_context(False, None) is False
    assert ssl_context(True, None) is True
