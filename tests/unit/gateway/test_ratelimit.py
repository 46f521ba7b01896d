"""Rate-limit settings, rule selection and the per-replica fallback used while Redis is unreachable."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_gateway.ratelimit import (
    RateDecision,
    RateLimiter,
    RateLimitMetrics,
    RateLimitSettings,
    parse_limit,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "count", "window"),
    [
        ("5/second", 5, 1),
        ("5/seconds", 5, 1),
        ("5/s", 5, 1),
        ("100/minute", 100, 60),
        ("100/min", 100, 60),
        ("10/hour", 10, 3600),
        ("10/h", 10, 3600),
        ("1000/day", 1000, 86400),
        ("1000/d", 1000, 86400),
        ("3/30s", 3, 30),
        (" 3 / 5 minutes ", 3, 300),
        ("7/Hour", 7, 3600),
    ],
)
def test_limits_parse(text: str, count: int, window: float) -> None:
    limit = parse_limit(text)
    assert (limit.count, limit.window) == (count, window)
    assert limit.text == text.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5/fortnight", "is not a rate limit; use N/second, N/minute, N/hour, N/day"),
        ("5/ms", "is not a rate limit"),
        ("five/hour", "is not a rate limit"),
        ("5", "is not a rate limit"),
        ("-1/hour", "is not a rate limit"),
        ("0/hour", "allows 0 calls; use 1 to"),
        ("5/0s", "has a window of 0 s"),
        ("5/8d", "has a window of 691200 s; use 1 s to 7 days"),
    ],
)
def test_bad_limits_name_the_key_and_the_accepted_forms(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as tool:
        RateLimitSettings(tool_limits={"k8s:scale*": "10/hour", "k8s:delete_resource": text})
    assert f"tool_limits['k8s:delete_resource']: {text!r}" in str(tool.value)
    assert message in str(tool.value)
    for field in ("global_limit", "user_limit"):
        with pytest.raises(ValidationError, match=f"{field}: ") as scalar:
            RateLimitSettings.model_validate({field: text})
        assert message in str(scalar.value)
    with pytest.raises(ValidationError, match=r"user_tool_limits\['\*'\]: "):
        RateLimitSettings(user_tool_limits={"*": text})


def test_settings_refuse_unknown_keys_and_a_zero_divisor() -> None:
    with pytest.raises(ValidationError, match="global_limits"):
        RateLimitSettings.model_validate({"global_limits": "5/s"})
    with pytest.raises(ValidationError, match="fallback_divisor"):
        RateLimitSettings(fallback_divisor=0)
    with pytest.raises(ValidationError, match="tool name or glob is empty"):
        RateLimitSettings(tool_limits={"": "5/s"})


def test_exact_tool_names_win_over_globs_and_the_first_glob_applies() -> None:
    limiter = RateLimiter(
        RateLimitSettings(
            tool_limits={"k8s:scale*": "20/hour", "k8s:*": "500/hour", "k8s:scale_deployment": "10/hour"},
            user_tool_limits={"*:delete*": "2/hour", "k8s:*": "50/hour"},
        ),
        None,
    )

    def limits(tool: str) -> dict[str, str]:
        return {rule.scope: rule.limit.text for rule in limiter.rules("alice", tool)}

    assert limits("k8s:scale_deployment") == {"tool": "10/hour", "user-tool": "50/hour"}
    assert limits("k8s:scale_statefulset") == {"tool": "20/hour", "user-tool": "50/hour"}
    assert limits("k8s:delete_resource") == {"tool": "500/hour", "user-tool": "2/hour"}
    assert limits("helm:delete_release") == {"user-tool": "2/hour"}
    assert limits("monitoring:query_metrics") == {}
    # Matching is case-sensitive, as tool names are.
    assert limits("K8S:scale_deployment") == {}


def test_keys_escape_user_provided_parts() -> None:
    limiter = RateLimiter(
        RateLimitSettings(user_limit="5/s", tool_limits={"*": "5/s"}, user_tool_limits={"*": "5/s"}), None
    )
    # Without escaping, subject "a:b" with tool "c" and subject "a" with tool "b:c" would share a key.
    first = {rule.key for rule in limiter.rules("a:b", "c")}
    second = {rule.key for rule in limiter.rules("a", "b:c")}
    assert first.isdisjoint(second)
    keys = [rule.key for rule in limiter.rules("{evil}:x", "k8s:get")]
    assert keys == [
        "mcpfleet:rl:{rl}:user:%7Bevil%7D%3Ax",
        "mcpfleet:rl:{rl}:tool:k8s%3Aget",
        "mcpfleet:rl:{rl}:user-tool:%7Bevil%7D%3Ax:k8s%3Aget",
    ]
    long = limiter.rules("x" * 500, "t")[0].key
    assert long.startswith("mcpfleet:rl:{rl}:user:!")
    assert len(long) < 100


async def test_disabled_or_without_rules_everything_passes() -> None:
    off = RateLimiter(RateLimitSettings(enabled=False, global_limit="1/hour"), None)
    unlimited = RateLimiter(RateLimitSettings(tool_limits={"k8s:*": "1/hour"}), None)
    for _ in range(3):
        assert await off.check("alice", "k8s:delete_resource", Risk.HIGH) == RateDecision(True, "none", backend="off")
        decision = await unlimited.check("alice", "helm:delete_release", Risk.HIGH)
        assert decision == RateDecision(True, "none", backend="off")


async def test_without_redis_high_risk_calls_fail_closed() -> None:
    registry = CollectorRegistry()
    limiter = RateLimiter(RateLimitSettings(user_limit="100/hour"), None, RateLimitMetrics(registry))
    decision = await limiter.check("alice", "k8s:delete_resource", Risk.HIGH)
    assert not decision.allowed
    assert (decision.scope, decision.backend, decision.limit) == ("unavailable", "local", None)
    assert "k8s:delete_resource is HIGH risk" in decision.reason
    assert "no Redis is configured" in decision.reason
    assert (await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).backend == "local"
    assert registry.get_sample_value("mcpfleet_gateway_ratelimit_backend_up") == 0
    assert registry.get_sample_value("mcpfleet_gateway_ratelimit_fallback_total", {"reason": "no_redis"}) == 2
    labels = {"scope": "unavailable", "result": "limited", "backend": "local"}
    assert registry.get_sample_value("mcpfleet_gateway_ratelimit_decisions_total", labels) == 1


async def test_fail_closed_risks_are_configurable() -> None:
    limiter = RateLimiter(RateLimitSettings(user_limit="100/hour", fail_closed_risks=(Risk.MEDIUM, Risk.HIGH)), None)
    assert (await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).scope == "unavailable"
    assert (await limiter.check("alice", "k8s:get", Risk.SAFE)).allowed
    open_limiter = RateLimiter(RateLimitSettings(user_limit="100/hour", fail_closed_risks=()), None)
    assert (await open_limiter.check("alice", "k8s:delete_resource", Risk.HIGH)).allowed


async def test_local_window_divides_limits_and_slides() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimitSettings(user_limit="10/minute", tool_limits={"k8s:scale*": "100/hour"}, fallback_divisor=3),
        None,
        clock=clock,
    )
    allowed = []
    for second in range(5):
        clock.now = 1000.0 + second
        allowed.append((await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).allowed)
    assert allowed == [True, True, True, False, False]  # 10 // 3 = 3 per replica

    refused = await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)
    assert (refused.scope, refused.limit, refused.backend) == ("user", "10/minute", "local")
    assert refused.retry_after == pytest.approx(56.0)  # the first call (at 1000) leaves the window at 1060
    assert "this replica alone allows 3: no Redis is configured" in refused.reason
    # Other users have their own windows.
    assert (await limiter.check("bob", "k8s:scale_deployment", Risk.SAFE)).allowed

    clock.now = 1060.0  # exactly one window after the first call: it has left the window
    assert (await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).allowed
    assert not (await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).allowed
    clock.now = 1061.0
    assert (await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).allowed


async def test_local_refusal_consumes_nothing_and_names_the_rule_freeing_last() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimitSettings(user_limit="2/minute", tool_limits={"k8s:scale_deployment": "3/hour"}), None, clock=clock
    )
    assert (await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).allowed
    assert (await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).allowed
    # alice is at her user limit: bob's call of the same tool still fits in the tool's window...
    assert not (await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).allowed
    assert not (await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)).allowed
    assert (await limiter.check("bob", "k8s:scale_deployment", Risk.MEDIUM)).allowed
    # ...and now the tool is full; once alice's minute is over, the hour-long tool window still refuses.
    clock.now += 61
    refused = await limiter.check("alice", "k8s:scale_deployment", Risk.MEDIUM)
    assert (refused.allowed, refused.scope, refused.limit) == (False, "tool", "3/hour")
    assert refused.retry_after == pytest.approx(3600 - 61)
    assert (await limiter.check("alice", "k8s:list_pods", Risk.SAFE)).allowed


async def test_the_divided_limit_is_at_least_one() -> None:
    limiter = RateLimiter(RateLimitSettings(global_limit="2/hour", fallback_divisor=5), None, clock=FakeClock())
    assert (await limiter.check("alice", "k8s:get", Risk.SAFE)).allowed
    refused = await limiter.check("bob", "k8s:get", Risk.SAFE)
    assert (refused.allowed, refused.scope) == (False, "global")
    assert "this replica alone allows 1: no Redis is configured" in refused.reason


async def test_unreachable_redis_falls_back_and_backs_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis on a port nothing listens on: refused connections, fallback, and no retry until the pause ends."""
    clock = FakeClock()
    registry = CollectorRegistry()
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    attempts = 0
    pipeline = client.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return pipeline(*args, **kwargs)

    monkeypatch.setattr(client, "pipeline", counting_pipeline)
    limiter = RateLimiter(
        RateLimitSettings(user_limit="4/hour", fallback_divisor=2, retry_redis_after_seconds=5),
        client,
        RateLimitMetrics(registry),
        clock=clock,
    )
    try:
        assert registry.get_sample_value("mcpfleet_gateway_ratelimit_backend_up") == 1
        high = await limiter.check("alice", "k8s:delete_resource", Risk.HIGH)
        assert (high.allowed, high.scope) == (False, "unavailable")
        assert "Redis is unreachable" in high.reason
        assert high.retry_after == pytest.approx(5)
        assert registry.get_sample_value("mcpfleet_gateway_ratelimit_backend_up") == 0
        results = [(await limiter.check("alice", "k8s:get", Risk.SAFE)) for _ in range(3)]
        assert [r.allowed for r in results] == [True, True, False]
        assert {r.backend for r in results} == {"local"}
        assert registry.get_sample_value("mcpfleet_gateway_ratelimit_fallback_total", {"reason": "connection"}) == 4
        assert attempts == 1  # the pause after the failure spared the other calls a wait on Redis
        clock.now += 5
        assert not (await limiter.check("alice", "k8s:get", Risk.SAFE)).allowed  # local window survives a failed retry
        assert attempts == 2
    finally:
        await client.aclose()
