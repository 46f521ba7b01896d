"""The rate limiter against a real redis-server: exact counts across replicas, sliding windows, outages."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from mcpfleet_contracts.mcpserver import Risk
from mcpfleet_gateway.ratelimit import RateDecision, RateLimiter, RateLimitMetrics, RateLimitSettings
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

SCALE = "k8s:scale_deployment"
DELETE = "k8s:delete_resource"
GET = "k8s:get_resource"


@dataclass
class Replica:
    limiter: RateLimiter
    registry: CollectorRegistry

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})

    def fallbacks(self) -> float:
        reasons = ("no_redis", "connection", "timeout", "error")
        return sum(self.sample("mcpfleet_gateway_ratelimit_fallback_total", {"reason": r}) or 0 for r in reasons)


ReplicaFactory = Callable[[RateLimitSettings], Replica]


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def replica(redis_server: RedisServer) -> AsyncIterator[ReplicaFactory]:
    """A gateway replica's limiter: its own connection pool and metrics registry."""
    clients: list[Redis] = []

    def make(settings: RateLimitSettings) -> Replica:
        client = Redis.from_url(redis_server.url)
        clients.append(client)
        registry = CollectorRegistry()
        return Replica(RateLimiter(settings, client, RateLimitMetrics(registry)), registry)

    yield make
    for client in clients:
        await client.aclose()


async def test_three_replicas_admit_exactly_the_limit(replica: ReplicaFactory, redis_client: Redis) -> None:
    settings = RateLimitSettings(user_limit="50/minute")
    replicas = [replica(settings) for _ in range(3)]
    decisions = await asyncio.gather(
        *(replicas[i % 3].limiter.check("alice", SCALE, Risk.MEDIUM) for i in range(300)),
        *(replicas[i % 3].limiter.check("bob", SCALE, Risk.MEDIUM) for i in range(30)),
    )
    alice, bob = decisions[:300], decisions[300:]
    assert sum(d.allowed for d in alice) == 50
    assert all(d.allowed for d in bob)
    assert {d.backend for d in decisions} == {"redis"}
    assert {(d.scope, d.limit) for d in alice if not d.allowed} == {("user", "50/minute")}
    assert all(0 < d.retry_after <= 60 for d in alice if not d.allowed)
    assert await redis_client.zcard("mcpfleet:rl:{rl}:user:alice") == 50
    assert await redis_client.zcard("mcpfleet:rl:{rl}:user:bob") == 30
    counted = [
        r.sample(
            "mcpfleet_gateway_ratelimit_decisions_total", {"scope": "user", "result": "limited", "backend": "redis"}
        )
        for r in replicas
    ]
    assert sum(c or 0 for c in counted) == 250
    assert all(r.sample("mcpfleet_gateway_ratelimit_backend_up") == 1 for r in replicas)


async def test_tool_limits_count_every_user_and_user_limits_each_user(replica: ReplicaFactory) -> None:
    one, two = (
        replica(
            RateLimitSettings(
                user_limit="4/minute", tool_limits={"k8s:scale*": "5/minute"}, user_tool_limits={DELETE: "1/minute"}
            )
        )
        for _ in range(2)
    )

    async def allowed(r: Replica, subject: str, tool: str, n: int) -> list[str]:
        return [
            "ok" if d.allowed else d.scope
            for d in [await r.limiter.check(subject, tool, Risk.MEDIUM) for _ in range(n)]
        ]

    assert await allowed(one, "alice", SCALE, 3) == ["ok", "ok", "ok"]
    assert await allowed(two, "bob", SCALE, 3) == ["ok", "ok", "tool"]  # 5 scales per minute, whoever asks
    assert await allowed(one, "bob", "k8s:scale_statefulset", 1) == ["ok"]  # the glob gives each tool its window
    assert await allowed(two, "bob", GET, 2) == ["ok", "user"]  # bob's 4th call of anything is his last
    assert await allowed(one, "alice", DELETE, 1) == ["ok"]
    assert await allowed(two, "alice", GET, 1) == ["user"]  # users are counted across replicas too
    assert await allowed(two, "carol", DELETE, 2) == ["ok", "user-tool"]  # one delete per user per minute
    assert await allowed(one, "dave", DELETE, 1) == ["ok"]


async def test_a_refused_call_consumes_no_quota(replica: ReplicaFactory, redis_client: Redis) -> None:
    r = replica(RateLimitSettings(global_limit="10/minute", user_limit="2/minute"))
    alice = [await r.limiter.check("alice", GET, Risk.SAFE) for _ in range(20)]
    assert [d.allowed for d in alice] == [True] * 2 + [False] * 18
    # alice's 18 refused calls took nothing from the global window: 8 calls remain for everybody else.
    others = [await r.limiter.check(f"user-{i}", GET, Risk.SAFE) for i in range(10)]
    assert [d.allowed for d in others] == [True] * 8 + [False] * 2
    assert {d.scope for d in others if not d.allowed} == {"global"}
    assert await redis_client.zcard("mcpfleet:rl:{rl}:global") == 10
    assert await redis_client.zcard("mcpfleet:rl:{rl}:user:alice") == 2
    assert await redis_client.zcard("mcpfleet:rl:{rl}:user:user-9") == 0
    ttl = await redis_client.pttl("mcpfleet:rl:{rl}:global")
    assert 59_000 < ttl <= 60_000  # keys expire once their window is empty


async def test_the_window_slides_and_retry_after_says_when(replica: ReplicaFactory) -> None:
    r = replica(RateLimitSettings(user_limit="5/second"))

    async def calls(n: int) -> list[RateDecision]:
        return [await r.limiter.check("alice", GET, Risk.SAFE) for _ in range(n)]

    start = time.monotonic()
    assert all(d.allowed for d in await calls(2))
    await asyncio.sleep(0.5)
    assert all(d.allowed for d in await calls(3))
    refused = (await calls(1))[0]
    assert (refused.allowed, refused.scope, refused.limit) == (False, "user", "5/second")
    # The two first calls leave the window one second after they were made.
    expected = 1.0 - (time.monotonic() - start)
    assert expected - 0.1 < refused.retry_after <= expected + 0.05
    await asyncio.sleep(refused.retry_after + 0.05)
    # A sliding window: only the two oldest calls have left; a fixed window would admit five now.
    later = await calls(3)
    assert [d.allowed for d in later] == [True, True, False]
    assert 0.3 < later[2].retry_after < 0.5  # the three calls made at 0.5 s leave at 1.5 s


async def test_the_refusal_names_the_rule_that_frees_last(replica: ReplicaFactory) -> None:
    r = replica(RateLimitSettings(user_limit="1/second", tool_limits={GET: "1/hour"}))
    assert (await r.limiter.check("alice", GET, Risk.SAFE)).allowed
    refused = await r.limiter.check("alice", GET, Risk.SAFE)
    assert (refused.scope, refused.limit) == ("tool", "1/hour")
    assert 3599 < refused.retry_after <= 3600
    assert "rate limit 1/hour on calls of k8s:get_resource (k8s:get_resource) reached" in refused.reason


async def test_a_hung_redis_costs_one_deadline(replica: ReplicaFactory, redis_server: RedisServer) -> None:
    r = replica(RateLimitSettings(user_limit="10/minute", redis_timeout_seconds=0.2, retry_redis_after_seconds=30))
    assert (await r.limiter.check("alice", GET, Risk.SAFE)).backend == "redis"
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        decisions = [await r.limiter.check("alice", GET, Risk.SAFE) for _ in range(5)]
        elapsed = time.monotonic() - start
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert {d.backend for d in decisions} == {"local"}
    assert elapsed < 0.5  # one deadline of 0.2 s, then the fallback without waiting
    assert r.sample("mcpfleet_gateway_ratelimit_fallback_total", {"reason": "timeout"}) == 5


async def test_outage_falls_back_per_replica_then_returns_to_redis(
    replica: ReplicaFactory, redis_server: RedisServer
) -> None:
    r = replica(
        RateLimitSettings(
            user_limit="10/minute", fallback_divisor=2, redis_timeout_seconds=0.25, retry_redis_after_seconds=0.3
        )
    )
    before = [await r.limiter.check("alice", GET, Risk.SAFE) for _ in range(4)]
    assert {(d.allowed, d.backend) for d in before} == {(True, "redis")}
    assert (await r.limiter.check("alice", DELETE, Risk.HIGH)).allowed

    redis_server.kill()
    high = await r.limiter.check("alice", DELETE, Risk.HIGH)
    assert (high.allowed, high.scope, high.backend) == (False, "unavailable", "local")
    assert "Redis is unreachable" in high.reason
    assert r.sample("mcpfleet_gateway_ratelimit_backend_up") == 0
    # This replica alone now allows 10 // 2 calls per minute; it does not know what Redis had counted.
    during = [await r.limiter.check("alice", GET, Risk.SAFE if i % 2 else Risk.MEDIUM) for i in range(7)]
    assert [d.allowed for d in during] == [True] * 5 + [False] * 2
    assert {d.backend for d in during} == {"local"}
    assert {(d.scope, d.limit) for d in during if not d.allowed} == {("user", "10/minute")}
    assert "this replica alone allows 5: Redis is unreachable" in during[-1].reason
    assert (await r.limiter.check("bob", GET, Risk.SAFE)).allowed
    assert r.fallbacks() == 9
    limited_locally = {"scope": "user", "result": "limited", "backend": "local"}
    assert r.sample("mcpfleet_gateway_ratelimit_decisions_total", limited_locally) == 2

    redis_server.start()  # same port, empty: the server keeps nothing on disk
    await asyncio.sleep(0.35)  # past retry_redis_after_seconds
    after = [await r.limiter.check("alice", GET, Risk.SAFE) for _ in range(11)]
    assert [d.allowed for d in after] == [True] * 10 + [False]  # Redis's full limit, the local window dropped
    assert {d.backend for d in after} == {"redis"}
    assert (await r.limiter.check("carol", DELETE, Risk.HIGH)).allowed
    assert r.sample("mcpfleet_gateway_ratelimit_backend_up") == 1
    assert r.fallbacks() == 9

    # The next outage starts from empty local windows: the first outage's calls are not held against alice.
    redis_server.kill()
    again = [await r.limiter.check("alice", GET, Risk.SAFE) for _ in range(6)]
    assert [(d.allowed, d.backend) for d in again] == [(True, "local")] * 5 + [(False, "local")]


async def test_a_small_connection_pool_is_load_not_an_outage(redis_server: RedisServer) -> None:
    """Checks beyond max_concurrent_checks wait their turn; checks of one loop turn share one pipeline, so a
    crowd of them needs one connection, not one each."""
    registry = CollectorRegistry()
    client = Redis.from_url(redis_server.url, max_connections=2)
    queued = RateLimiter(RateLimitSettings(user_limit="40/minute", max_concurrent_checks=2), client)
    crowded = RateLimiter(
        RateLimitSettings(user_limit="1000/minute", max_concurrent_checks=50), client, RateLimitMetrics(registry)
    )
    try:
        decisions = await asyncio.gather(*(queued.check("alice", GET, Risk.SAFE) for _ in range(100)))
        assert sum(d.allowed for d in decisions) == 40
        assert {d.backend for d in decisions} == {"redis"}

        decisions = await asyncio.gather(*(crowded.check("bob", GET, Risk.SAFE) for _ in range(200)))
        assert {d.backend for d in decisions} == {"redis"}
        assert all(d.allowed for d in decisions)
        assert registry.get_sample_value("mcpfleet_gateway_ratelimit_fallback_total", {"reason": "busy"}) is None
        assert registry.get_sample_value("mcpfleet_gateway_ratelimit_backend_up") == 1
        assert int(await client.zcard("mcpfleet:rl:{rl}:user:bob")) == 200
    finally:
        await client.aclose()


async def test_a_foreign_value_under_a_key_is_an_error_not_a_crash(
    replica: ReplicaFactory, redis_client: Redis
) -> None:
    r = replica(RateLimitSettings(global_limit="10/minute", retry_redis_after_seconds=0))
    await redis_client.set("mcpfleet:rl:{rl}:global", "not a sorted set")
    decision = await r.limiter.check("alice", GET, Risk.SAFE)
    assert (decision.allowed, decision.backend) == (True, "local")
    assert (await r.limiter.check("alice", DELETE, Risk.HIGH)).scope == "unavailable"
    assert r.sample("mcpfleet_gateway_ratelimit_fallback_total", {"reason": "error"}) == 2
    assert r.sample("mcpfleet_gateway_ratelimit_backend_up") == 0
    await redis_client.delete("mcpfleet:rl:{rl}:global")
    assert (await r.limiter.check("alice", DELETE, Risk.HIGH)).backend == "redis"
