"""How often tools may be called: sliding windows in Redis, shared by every gateway replica.

Rules apply globally (every call), per user (``user_limit``), per tool (``tool_limits``: every user's calls
of that tool together) and per user per tool (``user_tool_limits``). Tool keys are qualified tool names or
globs (``k8s:scale*``); an exact name wins over globs, otherwise the first glob that matches in the order
written. A glob gives each tool it matches its own window. Limits read ``N/second`` (``minute``, ``hour``,
``day``; also ``s``/``m``/``h``/``d`` and multiples such as ``N/30s``).

Every rule that applies to a call is checked and recorded by one Lua script, atomically, on Redis's clock
(replicas with skewed clocks agree): a call is admitted only when every window has room, and then counted
in all of them; a refused call consumes nothing. ``retry_after`` is when the window that refused frees a
slot (of several refusing windows, the one that frees last). Keys are ``<key_prefix>{rl}:global``,
``…:user:<subject>``, ``…:tool:<tool>`` and ``…:user-tool:<subject>:<tool>``, the parts percent-escaped;
the ``{rl}`` hash tag keeps one call's keys in one Redis Cluster slot.

Declared behaviour while Redis is unreachable (refused connection, no answer within
``redis_timeout_seconds``, an error reply): calls of the risks in ``fail_closed_risks`` (HIGH by default)
are refused with scope ``unavailable``; every other call is checked against windows kept in this replica's
memory with each limit divided by ``fallback_divisor`` (at least 1), so with the divisor set to the number
of replicas the fleet as a whole stays near the configured limits. For ``retry_redis_after_seconds`` after
a failure calls go straight to the fallback instead of waiting on Redis again; the next call after that
tries Redis, and once Redis answers the local windows are dropped. A call whose script ran but whose answer
was lost to the timeout is counted in Redis although the fallback decided it. ``check`` never raises (the
task being cancelled aside); the gauge ``mcpfleet_gateway_ratelimit_backend_up`` and the counter
``mcpfleet_gateway_ratelimit_fallback_total`` show the outage.

Checks that arrive in the same event-loop turn go to Redis as one pipeline (one write, one read): on a busy
gateway the system calls per check, not Redis, are the cost, and batching divides them.

Load is not an outage: at most ``max_concurrent_checks`` Redis checks are in flight per replica, the others
wait their turn within the deadline; a call that finds no free connection (``fallback_total{reason="busy"}``)
is decided as during an outage, but Redis is not marked down.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcpfleet_contracts.mcpserver import Risk

logger = logging.getLogger(__name__)

Scope = Literal["global", "user", "tool", "user-tool", "unavailable", "none"]
Backend = Literal["redis", "local", "off"]
FallbackReason = Literal["no_redis", "connection", "timeout", "error", "busy"]
_CAUSES = {"no_redis": "no Redis is configured", "busy": "no Redis connection came free in time"}

ACCEPTED_FORMS = "N/second, N/minute, N/hour, N/day (or N/s, N/m, N/h, N/d, and multiples such as N/30s or N/5m)"
_UNITS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
_LIMIT = re.compile(rf"^\s*(\d+)\s*/\s*(\d*)\s*({'|'.join(sorted(_UNITS, key=len, reverse=True))})\s*$", re.IGNORECASE)
# Bounds keep one window's sorted set (and its local copy) a sane size.
MAX_COUNT = 1_000_000
MAX_WINDOW_SECONDS = 7 * 86400
# Local fallback windows kept at most; the least recently used go first.
MAX_LOCAL_WINDOWS = 10_000
# Longer user-provided key parts are replaced by their hash, keeping keys short.
MAX_KEY_PART = 200


@dataclass(frozen=True)
class Limit:
    """``count`` calls per ``window`` seconds, as written in ``text``."""

    count: int
    window: float
    text: str

    @property
    def window_ms(self) -> int:
        return round(self.window * 1000)


def parse_limit(text: str, key: str = "limit") -> Limit:
    """Parse ``N/unit``; the error names ``key`` and the accepted forms."""
    match = _LIMIT.match(text)
    if match is None:
        raise ValueError(f"{key}: {text!r} is not a rate limit; use {ACCEPTED_FORMS}")
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3].lower()
    window = multiple * _UNITS[unit]
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"{key}: {text!r} allows {count} calls; use 1 to {MAX_COUNT} (to forbid a tool, use RBAC)")
    if not 1 <= window <= MAX_WINDOW_SECONDS:
        raise ValueError(f"{key}: {text!r} has a window of {window} s; use 1 s to {MAX_WINDOW_SECONDS // 86400} days")
    return Limit(count, float(window), text.strip())


class RateLimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    global_limit: str | None = Field(default=None, description="All calls through this gateway fleet, e.g. 1000/hour.")
    user_limit: str | None = Field(default=None, description="Calls of one user (subject), e.g. 100/hour.")
    tool_limits: dict[str, str] = Field(
        default_factory=dict,
        description="Tool (qualified name or glob, e.g. k8s:scale*) → limit on all users' calls of that tool.",
    )
    user_tool_limits: dict[str, str] = Field(
        default_factory=dict, description="Tool (qualified name or glob) → limit on one user's calls of that tool."
    )
    key_prefix: str = Field(default="mcpfleet:rl:", min_length=1, description="Prefix of every Redis key.")
    fallback_divisor: int = Field(
        default=1,
        ge=1,
        description="While Redis is unreachable each replica allows limit // divisor; set it to the replica count.",
    )
    fail_closed_risks: tuple[Risk, ...] = Field(
        default=(Risk.HIGH,), description="Risks refused outright while Redis is unreachable."
    )
    redis_timeout_seconds: float = Field(
        default=0.25, gt=0, le=10, description="Deadline of one Redis check, waiting for a connection included."
    )
    max_concurrent_checks: int = Field(
        default=32,
        ge=1,
        description="Redis checks in flight per replica; more wait their turn. Keep it below the client's pool size.",
    )
    retry_redis_after_seconds: float = Field(
        default=2.0, ge=0, description="After a Redis failure, use the fallback this long before trying Redis again."
    )

    @field_validator("global_limit", "user_limit")
    @classmethod
    def _a_limit(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            parse_limit(value, str(info.field_name))
        return value

    @field_validator("tool_limits", "user_tool_limits")
    @classmethod
    def _limits_by_tool(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for pattern, limit in value.items():
            if not pattern:
                raise ValueError(f"{info.field_name}: a tool name or glob is empty")
            parse_limit(limit, f"{info.field_name}[{pattern!r}]")
        return value


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    scope: Scope
    limit: str | None = None
    retry_after: float = 0.0
    backend: Backend = "off"
    reason: str = ""


@dataclass(frozen=True)
class Rule:
    """One window a call counts against: its scope, Redis key and limit."""

    scope: Scope
    key: str
    limit: Limit
    what: str


class RateLimitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "mcpfleet_gateway_ratelimit_decisions",
            "Rate-limit decisions by the scope that refused (none when allowed), result and backend.",
            ["scope", "result", "backend"],
            registry=registry,
        )
        self.backend_up = Gauge(
            "mcpfleet_gateway_ratelimit_backend_up",
            "1 unless the last attempt to reach Redis failed (0 also when no Redis is configured).",
            registry=registry,
        )
        self.fallback = Counter(
            "mcpfleet_gateway_ratelimit_fallback",
            "Checks decided without Redis, by why (no_redis, connection, timeout, error, busy).",
            ["reason"],
            registry=registry,
        )


# KEYS: one sorted set per rule (score = admission time in ms on the Redis clock, member = call id).
# ARGV[1]: the call id; ARGV[2i], ARGV[2i+1]: limit and window (ms) of KEYS[i].
# Returns {0, 0} when admitted (counted in every key), else {i, ms until KEYS[i] frees a slot} for the
# refusing rule that frees last; a refused call writes nothing.
SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local refused, wait = 0, 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local freeing = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local retry = tonumber(freeing[2]) + window - now
    if refused == 0 or retry > wait then
      refused, wait = i, retry
    end
  end
end
if refused > 0 then
  return {refused, wait}
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('PEXPIRE', key, ARGV[2 * i + 1])
end
return {0, 0}
"""


def _key_part(text: str) -> str:
    """Escape a user-provided key part: the result has no ':', '{', '}' and cannot equal another's."""
    escaped = quote(text, safe="")
    if len(escaped) <= MAX_KEY_PART:
        return escaped
    # quote() never yields '!', so a hashed part cannot equal an escaped one.
    return "!" + hashlib.sha256(text.encode()).hexdigest()


def _pick(limits: Mapping[str, Limit], tool: str) -> tuple[str, Limit] | None:
    if tool in limits:
        return tool, limits[tool]
    for pattern, limit in limits.items():
        if fnmatch.fnmatchcase(tool, pattern):
            return pattern, limit
    return None


class _Busy(Exception):
    """No connection to Redis came free within the deadline: load on this replica, not a Redis outage."""


class _LocalWindows:
    """Per-replica sliding windows (monotonic timestamps), used while Redis is unreachable."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._windows: OrderedDict[str, deque[float]] = OrderedDict()

    def clear(self) -> None:
        self._windows.clear()

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, rules: list[tuple[Rule, int]]) -> tuple[Rule, int, float] | None:
        """Admit and record the call in every window, or return the (rule, local limit, retry) that refuses."""
        now = self._clock()
        refused: tuple[Rule, int, float] | None = None
        windows = []
        for rule, limit in rules:
            window = self._windows.get(rule.key)
            if window is None or window.maxlen != limit:
                window = deque(window or (), maxlen=limit)
                self._windows[rule.key] = window
            self._windows.move_to_end(rule.key)
            while window and window[0] <= now - rule.limit.window:
                window.popleft()
            if len(window) >= limit:
                retry = window[len(window) - limit] + rule.limit.window - now
                if refused is None or retry > refused[2]:
                    refused = (rule, limit, retry)
            windows.append(window)
        if refused is None:
            for window in windows:
                window.append(now)
        while len(self._windows) > MAX_LOCAL_WINDOWS:
            self._windows.popitem(last=False)
        return refused


class _ScriptBatcher:
    """Runs one Lua script for many callers: one pipeline in flight, the calls made meanwhile go in the next.

    An idle gateway sends each call at once (no added latency); a busy one sends them in batches as large as
    the load makes them. A caller's own deadline (its ``asyncio.timeout``) still applies: cancelling it
    abandons its reply only. A reply of NOSCRIPT (Redis restarted and lost the script) loads the script and
    resends those calls once.
    """

    def __init__(self, redis: Redis, lua: str) -> None:
        self._redis = redis
        self._lua = lua
        self._sha = hashlib.sha1(lua.encode(), usedforsecurity=False).hexdigest()
        self._pending: list[tuple[list[str], list[str | int], asyncio.Future[Any]]] = []
        self._in_flight: asyncio.Task[None] | None = None

    async def call(self, keys: list[str], args: list[str | int]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if self._in_flight is None:
            self._flush()
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._in_flight = asyncio.ensure_future(self._send(batch))
        self._in_flight.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight = None
        if self._pending:
            self._flush()

    async def _send(self, batch: list[tuple[list[str], list[str | int], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._pipeline(batch)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                await self._redis.script_load(self._lua)
                again = await self._pipeline([batch[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except BaseException as error:  # every waiting caller gets the failure, none hangs
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception) else RedisConnectionError(str(error)))
            if not isinstance(error, Exception):
                raise
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, batch: list[tuple[list[str], list[str | int], asyncio.Future[Any]]]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self._sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


class RateLimiter:
    def __init__(
        self,
        settings: RateLimitSettings,
        redis: Redis | None,
        metrics: RateLimitMetrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self._clock = clock
        self._global = parse_limit(settings.global_limit) if settings.global_limit else None
        self._user = parse_limit(settings.user_limit) if settings.user_limit else None
        self._tools = {pattern: parse_limit(text) for pattern, text in settings.tool_limits.items()}
        self._user_tools = {pattern: parse_limit(text) for pattern, text in settings.user_tool_limits.items()}
        self._script = _ScriptBatcher(redis, SLIDING_WINDOW_LUA) if redis is not None else None
        self._slots = asyncio.Semaphore(settings.max_concurrent_checks)
        self._local = _LocalWindows(clock)
        # Redis is not tried while the clock is below this; why it failed last.
        self._redis_down_until: float | None = None
        self._down_reason: FallbackReason = "no_redis" if redis is None else "connection"
        if metrics is not None:
            metrics.backend_up.set(0 if redis is None else 1)

    def rules(self, subject: str, tool: str) -> list[Rule]:
        """The windows a call of ``tool`` by ``subject`` counts against, in scope order."""
        prefix = f"{self.settings.key_prefix}{{rl}}:"
        who, what = _key_part(subject), _key_part(tool)
        found: list[Rule] = []
        if self._global is not None:
            found.append(Rule("global", f"{prefix}global", self._global, "all calls"))
        if self._user is not None:
            found.append(Rule("user", f"{prefix}user:{who}", self._user, f"calls by {subject}"))
        if (picked := _pick(self._tools, tool)) is not None:
            found.append(Rule("tool", f"{prefix}tool:{what}", picked[1], f"calls of {tool} ({picked[0]})"))
        if (picked := _pick(self._user_tools, tool)) is not None:
            rule = Rule("user-tool", f"{prefix}user-tool:{who}:{what}", picked[1], f"{subject}'s calls of {tool}")
            found.append(rule)
        return found

    async def check(self, subject: str, tool: str, risk: Risk) -> RateDecision:
        """Admit and count one call, or say which limit refuses it and when to retry. Never raises."""
        if not self.settings.enabled:
            return self._count(RateDecision(True, "none", backend="off"))
        rules = self.rules(subject, tool)
        if not rules:
            return self._count(RateDecision(True, "none", backend="off"))
        if self._script is None or self._backing_off():
            return self._count(self._fallback(rules, tool, risk, self._down_reason))
        try:
            decision = await self._check_redis(rules)
        except _Busy:
            return self._count(self._fallback(rules, tool, risk, "busy"))
        except (RedisError, OSError, TimeoutError) as error:
            self._redis_failed(error)
        except Exception as error:
            logger.exception("rate-limit check in Redis failed unexpectedly; using the fallback")
            self._redis_failed(error)
        else:
            self._redis_answered()
            return self._count(decision)
        return self._count(self._fallback(rules, tool, risk, self._down_reason))

    def _backing_off(self) -> bool:
        return self._redis_down_until is not None and self._clock() < self._redis_down_until

    async def _check_redis(self, rules: list[Rule]) -> RateDecision:
        assert self._script is not None
        args: list[str | int] = [uuid.uuid4().hex]
        for rule in rules:
            args += [rule.limit.count, rule.limit.window_ms]
        waiting = True
        try:
            async with asyncio.timeout(self.settings.redis_timeout_seconds), self._slots:
                waiting = False
                reply: Any = await self._script.call([rule.key for rule in rules], args)
        except TimeoutError:
            if waiting:
                raise _Busy from None
            raise
        except MaxConnectionsError as error:
            raise _Busy from error
        refused, wait_ms = int(reply[0]), int(reply[1])
        if refused == 0:
            return RateDecision(True, "none", backend="redis")
        rule = rules[refused - 1]
        retry = max(wait_ms, 1) / 1000
        reason = f"rate limit {rule.limit.text} on {rule.what} reached; retry in {retry:.3g} s"
        return RateDecision(False, rule.scope, rule.limit.text, retry, "redis", reason)

    def _redis_failed(self, error: Exception) -> None:
        if isinstance(error, TimeoutError | RedisTimeoutError):
            reason: FallbackReason = "timeout"
        elif isinstance(error, RedisConnectionError | OSError):
            reason = "connection"
        else:
            reason = "error"
            if isinstance(error, ResponseError):
                logger.error("Redis refused the rate-limit script: %s", error)
        if self._redis_down_until is None:
            logger.warning(
                "Redis is unreachable for rate limits (%s: %s); %s calls are refused, others limited per replica",
                reason,
                str(error) or type(error).__name__,
                "/".join(risk.value for risk in self.settings.fail_closed_risks) or "no",
            )
        self._down_reason = reason
        self._redis_down_until = self._clock() + self.settings.retry_redis_after_seconds
        if self._metrics is not None:
            self._metrics.backend_up.set(0)

    def _redis_answered(self) -> None:
        if self._redis_down_until is not None:
            logger.info("Redis answers rate-limit checks again; dropping %d local windows", len(self._local))
            self._local.clear()
            self._redis_down_until = None
        if self._metrics is not None:
            self._metrics.backend_up.set(1)

    def _fallback(self, rules: list[Rule], tool: str, risk: Risk, why: FallbackReason) -> RateDecision:
        if self._metrics is not None:
            self._metrics.fallback.labels(reason=why).inc()
        cause = _CAUSES.get(why, "Redis is unreachable")
        if risk in self.settings.fail_closed_risks:
            retry = max(self._redis_down_until - self._clock(), 0.0) if self._redis_down_until is not None else 0.0
            reason = f"{tool} is {risk.value} risk and its rate limits cannot be checked: {cause}"
            return RateDecision(False, "unavailable", None, retry, "local", reason)
        divisor = self.settings.fallback_divisor
        refused = self._local.check([(rule, max(rule.limit.count // divisor, 1)) for rule in rules])
        if refused is None:
            return RateDecision(True, "none", backend="local")
        rule, limit, retry = refused
        reason = (
            f"rate limit {rule.limit.text} on {rule.what} reached (this replica alone allows {limit}: {cause}); "
            f"retry in {retry:.3g} s"
        )
        return RateDecision(False, rule.scope, rule.limit.text, retry, "local", reason)

    def _count(self, decision: RateDecision) -> RateDecision:
        if self._metrics is not None:
            result = "allowed" if decision.allowed else "limited"
            self._metrics.decisions.labels(scope=decision.scope, result=result, backend=decision.backend).inc()
        return decision
