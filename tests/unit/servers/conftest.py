"""An environment free of the developer's MCP_*, POD_* and MCPFLEET_SERVER_NAME settings."""

from __future__ import annotations

import os

import pytest

_PREFIXES = ("MCP_", "POD_", "MCPFLEET_SERVER_NAME", "K8S_")


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith(_PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch
