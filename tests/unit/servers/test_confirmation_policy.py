"""Which calls ask the user first: the threshold, a tool's own trait, a per-call risk, and where they come from."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_servers.base.policy import ConfirmationPolicy, raised_risk, risk_at_least
from mcpfleet_servers.base.settings import ServerSettings, settings_error_lines
from mcpfleet_servers.base.toolkit import Toolset


class Out(BaseModel):
    ok: bool


def _always_high(arguments: dict[str, Any]) -> Risk:
    return Risk.HIGH


def _toolset(confirm_from: Risk | None = None) -> Toolset:
    tools = Toolset(confirm_from=confirm_from)

    @tools.tool(risk=Risk.SAFE, read_only=True)
    async def get_asset() -> Out:
        """Read."""
        return Out(ok=True)

    @tools.tool(risk=Risk.MEDIUM, read_only=False)
    async def update_asset() -> Out:
        """Update."""
        return Out(ok=True)

    @tools.tool(risk=Risk.MEDIUM, read_only=False, risk_for=_always_high)
    async def update_status() -> Out:
        """Update, HIGH for some arguments."""
        return Out(ok=True)

    @tools.tool(risk=Risk.MEDIUM, read_only=False, confirm=False)
    async def touch_asset() -> Out:
        """Never confirmed."""
        return Out(ok=True)

    @tools.tool(risk=Risk.SAFE, read_only=False, confirm=True)
    async def note() -> Out:
        """Always confirmed."""
        return Out(ok=True)

    @tools.tool(risk=Risk.HIGH, read_only=False, destructive=True)
    async def delete_asset() -> Out:
        """Delete."""
        return Out(ok=True)

    return tools


def _may_confirm(policy: ConfirmationPolicy) -> list[str]:
    return [tool.name for tool in _toolset() if policy.may_confirm(tool)]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ConfirmationPolicy(), ["update_status", "note", "delete_asset"]),
        (ConfirmationPolicy(threshold=Risk.MEDIUM), ["update_asset", "update_status", "note", "delete_asset"]),
        (
            ConfirmationPolicy(threshold=Risk.SAFE),
            ["get_asset", "update_asset", "update_status", "note", "delete_asset"],
        ),
        (ConfirmationPolicy(required=False, threshold=Risk.SAFE), []),
    ],
)
def test_which_tools_may_ask(policy: ConfirmationPolicy, expected: list[str]) -> None:
    assert _may_confirm(policy) == expected


@pytest.mark.parametrize(
    ("threshold", "risk", "asks"),
    [
        (Risk.HIGH, Risk.MEDIUM, False),
        (Risk.HIGH, Risk.HIGH, True),
        (Risk.MEDIUM, Risk.MEDIUM, True),
        (Risk.MEDIUM, Risk.SAFE, False),
        (Risk.SAFE, Risk.SAFE, True),
    ],
)
def test_a_call_asks_when_its_risk_reaches_the_threshold(threshold: Risk, risk: Risk, asks: bool) -> None:
    tool = _toolset()["update_status"]
    assert ConfirmationPolicy(threshold=threshold).confirms(tool, risk) is asks


def test_a_tools_own_trait_decides_whatever_the_risk() -> None:
    tools = _toolset()
    assert not ConfirmationPolicy(threshold=Risk.SAFE).confirms(tools["touch_asset"], Risk.HIGH)
    assert ConfirmationPolicy(threshold=Risk.HIGH).confirms(tools["note"], Risk.SAFE)
    assert not ConfirmationPolicy(required=False).confirms(tools["note"], Risk.SAFE)


def test_a_hook_raises_a_risk_but_never_lowers_it() -> None:
    assert raised_risk(Risk.MEDIUM, Risk.HIGH) == Risk.HIGH
    assert raised_risk(Risk.MEDIUM, Risk.SAFE) == Risk.MEDIUM
    assert raised_risk(Risk.SAFE, Risk.MEDIUM) == Risk.MEDIUM
    assert risk_at_least(Risk.HIGH, Risk.MEDIUM)
    assert not risk_at_least(Risk.SAFE, Risk.MEDIUM)


def test_a_read_only_tool_cannot_have_a_risk_hook() -> None:
    tools = Toolset()
    with pytest.raises(ValueError, match="read-only tool is SAFE on every call"):

        @tools.tool(risk=Risk.SAFE, read_only=True, risk_for=_always_high)
        async def get_asset() -> Out:
            """Read."""
            return Out(ok=True)


@pytest.mark.parametrize(
    ("env", "module_threshold", "required", "threshold"),
    [
        ({}, None, True, Risk.HIGH),
        ({}, Risk.MEDIUM, True, Risk.MEDIUM),
        ({"MCP_CONFIRM_FROM": "HIGH"}, Risk.MEDIUM, True, Risk.HIGH),
        ({"MCP_CONFIRM_FROM": " medium "}, None, True, Risk.MEDIUM),
        ({"MCP_CONFIRM_FROM": ""}, Risk.MEDIUM, True, Risk.MEDIUM),
        ({"MCP_CONFIRM_FROM": "SAFE", "MCP_REQUIRE_CONFIRMATION": "false"}, Risk.MEDIUM, False, Risk.SAFE),
    ],
)
def test_the_threshold_comes_from_the_setting_then_the_module_then_high(
    server_env: pytest.MonkeyPatch,
    env: dict[str, str],
    module_threshold: Risk | None,
    required: bool,
    threshold: Risk,
) -> None:
    for name, value in env.items():
        server_env.setenv(name, value)
    policy = ServerSettings.load().confirmation_policy(module_threshold)
    assert policy == ConfirmationPolicy(required=required, threshold=threshold)


def test_a_bad_threshold_names_the_variable(server_env: pytest.MonkeyPatch) -> None:
    server_env.setenv("MCP_CONFIRM_FROM", "CRITICAL")
    with pytest.raises(ValidationError) as caught:
        ServerSettings.load()
    (line,) = settings_error_lines(caught.value)
    assert line.startswith("MCP_CONFIRM_FROM")
    assert "'SAFE', 'MEDIUM' or 'HIGH'" in line
