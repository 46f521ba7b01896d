"""Unit-test fixtures: an environment free of the developer's MCPFLEET_OPERATOR_* settings."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The monkeypatch, after removing every MCPFLEET_OPERATOR_* variable the shell may have set."""
    for name in list(os.environ):
        if name.upper().startswith("MCPFLEET_OPERATOR_"):
            monkeypatch.delenv(name)
    return monkeypatch
