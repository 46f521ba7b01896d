"""The state the gateway wraps around an upstream's requestState, and which questions it relays."""

from __future__ import annotations

import mcp_types as types
import pytest
from pydantic import SecretStr, ValidationError

from mcpfleet_gateway.config import ConfirmationSettings
from mcpfleet_gateway.relay import Downstream, StateSeal, unsupported_request

ARGS = {"name": "db-1", "status": "draining"}


def test_a_sealed_state_opens_for_the_same_caller_tool_and_arguments() -> None:
    seal = StateSeal()
    wire = seal.seal("otto", "assets:update", ARGS, "upstream-state")
    assert "upstream-state" in wire
    assert seal.open("otto", "assets:update", dict(reversed(ARGS.items())), wire) == ("upstream-state", True)


def test_an_absent_upstream_state_stays_absent() -> None:
    seal = StateSeal()
    assert seal.open("otto", "t", ARGS, seal.seal("otto", "t", ARGS, None)) == (None, True)


def test_another_caller_tool_arguments_or_key_is_not_a_continuation_but_the_state_is_forwarded() -> None:
    seal = StateSeal()
    wire = seal.seal("otto", "assets:update", ARGS, "s1")
    assert seal.open("mallory", "assets:update", ARGS, wire) == ("s1", False)
    assert seal.open("otto", "assets:delete", ARGS, wire) == ("s1", False)
    assert seal.open("otto", "assets:update", {**ARGS, "status": "gone"}, wire) == ("s1", False)
    assert StateSeal().open("otto", "assets:update", ARGS, wire) == ("s1", False)


def test_an_expired_or_foreign_state_is_not_a_continuation() -> None:
    expired = StateSeal(ttl_seconds=-1)
    assert expired.open("otto", "t", ARGS, expired.seal("otto", "t", ARGS, "s1")) == ("s1", False)
    seal = StateSeal()
    assert seal.open("otto", "t", ARGS, "the-upstream's-own") == ("the-upstream's-own", False)
    assert seal.open("otto", "t", ARGS, "mcpfleet1.garbage") == ("mcpfleet1.garbage", False)


def _form() -> types.ElicitRequest:
    return types.ElicitRequest(
        params=types.ElicitRequestFormParams(message="Confirm?", requested_schema={"type": "object", "properties": {}})
    )


def test_only_elicitation_is_relayed() -> None:
    ask = Downstream(mode="pass-through")
    assert unsupported_request(types.InputRequiredResult(input_requests={"c": _form()}), ask) is None
    sampling = types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text="hi"))],
            max_tokens=5,
        )
    )
    problem = unsupported_request(types.InputRequiredResult(input_requests={"c": _form(), "s": sampling}), ask)
    assert problem is not None
    assert "sample" in problem
    roots = types.InputRequiredResult(input_requests={"r": types.ListRootsRequest()})
    assert "roots" in (unsupported_request(roots, ask) or "")
    url = types.ElicitRequest(
        params=types.ElicitRequestURLParams(message="Log in", url="https://idp.example/x", elicitation_id="e1")
    )
    assert "URL" in (unsupported_request(types.InputRequiredResult(input_requests={"u": url}), ask) or "")
    with_url = Downstream(mode="pass-through", elicitation_url=True)
    assert unsupported_request(types.InputRequiredResult(input_requests={"u": url}), with_url) is None


def test_replicas_sharing_the_configured_secret_recognise_each_others_seals() -> None:
    settings = ConfirmationSettings(state_secret=SecretStr("s" * 32), state_ttl_seconds=60)
    replica_a, replica_b = StateSeal.for_settings(settings), StateSeal.for_settings(settings)
    wire = replica_a.seal("otto", "assets:update", ARGS, "s1")
    assert replica_b.open("otto", "assets:update", ARGS, wire) == ("s1", True)
    # Without a configured secret each process draws its own key.
    unset = ConfirmationSettings()
    assert StateSeal.for_settings(unset).open("otto", "assets:update", ARGS, wire) == ("s1", False)


def test_a_short_state_secret_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        ConfirmationSettings(state_secret=SecretStr("short"))
    assert caught.value.errors()[0]["loc"] == ("state_secret",)
