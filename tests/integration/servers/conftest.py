"""Fixtures for the server base: a clean MCP_* environment and servers built around the demo module."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mcpfleet_servers.base.app import FleetServer, build_server
from mcpfleet_servers.base.run import configure_logging
from mcpfleet_servers.base.settings import ServerSettings
from tests.integration.servers.demo import DemoModule

pytestmark = pytest.mark.integration

_PREFIXES = ("MCP_", "POD_", "MCPFLEET_SERVER_NAME")

MakeServer = Callable[..., FleetServer]


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith(_PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def make_server(server_env: pytest.MonkeyPatch) -> MakeServer:
    """A FleetServer around a DemoModule (or the one given), with settings overridden by keyword."""

    def make(module: DemoModule | None = None, **overrides: Any) -> FleetServer:
        settings = ServerSettings.load(**overrides)
        return build_server(module or DemoModule(settings.budget()), settings)

    return make


@pytest.fixture
def server_log(make_server: MakeServer) -> Iterator[io.StringIO]:
    """What the server's own log handler writes (the one `mcpfleet server` installs)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging(ServerSettings.load(log_level="INFO"), stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
