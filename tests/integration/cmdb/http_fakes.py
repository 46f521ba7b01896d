"""HTTP fakes of a generic CMDB REST API and of NetBox's REST API, and a fleet started on either.

These are fakes: a real CMDB or a real NetBox (Django, PostgreSQL, Redis) cannot run here. They answer the
documented shapes and record every request (method, path, query, Authorization header, JSON body) so the
tests can check what the server sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from mcpfleet_servers.base.app import FleetServer
from mcpfleet_servers.cmdb.server import CmdbServer
from mcpfleet_servers.cmdb.settings import CmdbSettings
from tests.integration.fleets import started_fleets

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    body: Any


@dataclass
class FakeApi:
    """A running fake: its base URL, the requests it saw, and a switch to refuse every token."""

    url: str
    requests: list[Seen] = field(default_factory=list)
    token: str = "s3cret-token"

    def paths(self, method: str = "GET") -> list[str]:
        return [r.path for r in self.requests if r.method == method]

    def last(self, method: str, path_prefix: str) -> Seen:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)][-1]


@asynccontextmanager
async def serve(routes: Callable[[FakeApi], list[web.RouteDef]], scheme: str) -> AsyncIterator[FakeApi]:
    """Serve the routes on 127.0.0.1 with a request log and ``<scheme> <token>`` auth (401 otherwise)."""
    api = FakeApi(url="")

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        authorization = request.headers.get("Authorization")
        api.requests.append(Seen(request.method, request.path, dict(request.query), authorization, body))
        if authorization != f"{scheme} {api.token}":
            return web.json_response({"detail": "Invalid token"}, status=401)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.add_routes(routes(api))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield api
    finally:
        await runner.cleanup()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


MakeFleet = Callable[..., Awaitable[FleetServer]]


@asynccontextmanager
async def fleets(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeFleet]:
    """Started CmdbServers inside the real FleetServer, as ``mcpfleet server cmdb`` builds them."""
    for name in list(os.environ):
        if name.upper().startswith(("MCP_", "CMDB_", "POD_")):
            monkeypatch.delenv(name)
    async with started_fleets() as started:

        async def make(cmdb: dict[str, Any], **overrides: Any) -> FleetServer:
            settings = CmdbSettings(**cmdb)
            return await started.start(lambda budget: CmdbServer(settings, budget), **overrides)

        yield make
