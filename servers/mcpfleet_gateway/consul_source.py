"""Consul as a source of upstreams: every service carrying a tag, at its first instance whose checks pass.

The operator registers each MCPServer's Service in Consul with the tags ``mcp``, ``mcpfleet``, ``type:<t>``,
``prefix:<p>``, ``transport:<t>`` and the meta ``mcp_prefix``, ``mcp_transport``, ``mcp_path``, ``mcp_scheme``
(and more).
A service registered by hand without that meta is served as streamable HTTP at ``/mcp`` under its own name.

Changes arrive through Consul's blocking queries: one on the service catalog (which services carry the tag)
and one per service on its passing instances, each answering as soon as its index moves. What the gateway
serves is the last answer it got: while Consul cannot be reached the last known services keep serving and
the outage is reported; a service none of whose instances pass leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import aiohttp
import consul
import consul.aio
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from mcpfleet_contracts.mcpserver import TOOL_PREFIX
from mcpfleet_gateway.upstreams.resilience import backoff_delays
from mcpfleet_gateway.upstreams.spec import UpstreamSpec

log = logging.getLogger(__name__)

UPSTREAM_PREFIX: Final = "consul/"
"""Upstreams found in Consul are named ``consul/<service>``."""
MAX_SERVICES: Final = 512
"""Tagged services followed at most; more are left out (and logged), not silently dropped."""
RETRY_BASE_SECONDS: Final = 0.2
RETRY_CAP_SECONDS: Final = 30.0
MIN_QUERY_GAP_SECONDS: Final = 0.05
"""Least time between two queries of one loop: a Consul whose index moves constantly is not hammered."""
REQUEST_SLACK_SECONDS: Final = 5.0
"""Time a request may take beyond its blocking wait (Consul adds up to wait/16 of jitter) before it is abandoned."""

ConsulTransport = Literal["streamable-http", "sse"]
_DEFAULT_PATHS: Final[dict[str, str]] = {"streamable-http": "/mcp", "sse": "/sse"}
_ERRORS: Final = (aiohttp.ClientError, OSError, TimeoutError, ValueError, consul.ConsulException)
_TOOL_PREFIX = re.compile(TOOL_PREFIX)


class ConsulSettings(BaseModel):
    """Where Consul is and which services to serve (the gateway config's ``consul:``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(
        default="http://127.0.0.1:8500",
        description="HTTP API of a Consul agent: http(s)://host:port (a bare host:port means http).",
    )
    token: SecretStr | None = Field(default=None, description="ACL token (write it as ${ENV_VAR}).")
    token_file: Path | None = Field(default=None, description="A file holding the ACL token; read again on errors.")
    datacenter: str | None = Field(default=None, min_length=1, description="Datacenter to read (default: the agent's).")
    tag: str = Field(default="mcp", min_length=1, max_length=255, description="Services carrying this tag are served.")
    poll_seconds: float = Field(
        default=10.0,
        ge=0.5,
        le=600,
        description="Longest a blocking query waits for a change; a change is seen as soon as Consul has it.",
    )
    verify_tls: bool = Field(default=True, description="Verify Consul's certificate (https addresses).")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        parts = urlsplit(value if "://" in value else f"http://{value}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ValueError(
                f"{value!r} is not a Consul HTTP address; write http(s)://host:port, e.g. http://consul:8500"
            )
        return value

    @model_validator(mode="after")
    def _one_token(self) -> ConsulSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("consul.token and consul.token_file are exclusive; keep one")
        return self

    @property
    def endpoint(self) -> tuple[str, str, int]:
        """(scheme, host, port) of the address."""
        parts = urlsplit(self.address if "://" in self.address else f"http://{self.address}")
        host, port = parts.hostname, parts.port
        if host is None or port is None:  # the validator refused such an address already
            raise ValueError(f"{self.address!r} is not a Consul HTTP address")
        return parts.scheme, host, port


@dataclass(frozen=True)
class DiscoveredService:
    """One Consul service as the gateway reaches it: the first passing instance."""

    service: str
    prefix: str
    transport: ConsulTransport
    url: str

    @property
    def upstream_name(self) -> str:
        return f"{UPSTREAM_PREFIX}{self.service}"

    def spec(self) -> UpstreamSpec:
        return UpstreamSpec.model_validate({"transport": self.transport, "url": self.url, "prefix": self.prefix})


def discovered_service(service: str, entries: list[dict[str, Any]]) -> DiscoveredService | None:
    """The service at its first passing instance (by node, then service id), or None when none can be served.

    ``entries`` are the rows of ``/v1/health/service/<service>?passing``; the chosen instance's meta says the
    prefix, transport and path, with the defaults for services registered without it.
    """
    instances = [entry for entry in entries if isinstance(entry.get("Service"), dict) and entry["Service"].get("Port")]
    if not instances:
        return None
    first = min(instances, key=lambda entry: (str((entry.get("Node") or {}).get("Node", "")), entry["Service"]["ID"]))
    instance = first["Service"]
    meta: dict[str, str] = instance.get("Meta") or {}
    transport = meta.get("mcp_transport") or "streamable-http"
    if transport not in _DEFAULT_PATHS:
        log.warning("consul service %s: transport %r cannot be served (streamable-http or sse)", service, transport)
        return None
    prefix = meta.get("mcp_prefix") or service
    if not _TOOL_PREFIX.match(prefix):
        log.warning("consul service %s: %r is not a tool prefix; set meta mcp_prefix (e.g. k8s)", service, prefix)
        return None
    path = meta.get("mcp_path") or _DEFAULT_PATHS[transport]
    host = instance.get("Address") or (first.get("Node") or {}).get("Address") or ""
    if not host:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    scheme = meta.get("mcp_scheme") if meta.get("mcp_scheme") in ("http", "https") else "http"
    url = f"{scheme}://{host}:{int(instance['Port'])}{path if path.startswith('/') else '/' + path}"
    return DiscoveredService(service=service, prefix=prefix, transport=transport, url=url)  # type: ignore[arg-type]


class ConsulMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "mcpfleet_gateway_consul_up",
            "1 while the gateway's Consul queries succeed, 0 while Consul is unreachable or refusing them.",
            registry=registry,
        )
        self.services = Gauge(
            "mcpfleet_gateway_consul_services",
            "Consul services served as upstreams (those with a passing instance).",
            registry=registry,
        )
        self.errors = Counter(
            "mcpfleet_gateway_consul_errors",
            "Consul queries that failed (the last known services keep serving).",
            registry=registry,
        )


ChangeHandler = Callable[[Mapping[str, DiscoveredService]], Awaitable[None]]


def _retry_delays() -> Iterator[float]:
    return backoff_delays(sys.maxsize, RETRY_BASE_SECONDS, RETRY_CAP_SECONDS)


def next_index(previous: str | None, answered: str | None) -> str | None:
    """The index for the next blocking query; reset when Consul's index went backwards (a restarted agent)."""
    try:
        new = int(answered or 0)
    except ValueError:
        return None
    if new <= 0 or (previous is not None and new < int(previous)):
        return None
    return str(new)


def _reraise_cancel(exc: Exception) -> None:
    """A cancel that met aiohttp's own timeout can come out as a TimeoutError; it must still end the task."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError from exc


class ConsulDiscovery:
    """Follows Consul and hands every changed set of services to ``on_change`` (one call at a time)."""

    def __init__(
        self,
        settings: ConsulSettings,
        on_change: ChangeHandler,
        metrics: ConsulMetrics,
        *,
        on_health: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_change = on_change
        self._on_health = on_health
        self.metrics = metrics
        self.synced = asyncio.Event()
        """Set once the first full answer was applied, or the first attempt failed (so a start never waits long)."""
        self._client: Any = None
        self._instances: dict[str, DiscoveredService | None] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._answered: set[str] = set()
        self._listed = False
        self._applied: dict[str, DiscoveredService] | None = None
        self._failures: dict[str, str] = {}
        self._dirty = asyncio.Event()

    @property
    def services(self) -> Mapping[str, DiscoveredService]:
        """What is being served: the last passing set the gateway applied."""
        return self._applied or {}

    @property
    def problem(self) -> str | None:
        if not self._failures:
            return None
        what = next(iter(self._failures.values()))
        return f"consul {self.settings.address}: {what}; serving the {len(self.services)} last known services"

    async def run(self) -> None:
        """Follow Consul until cancelled."""
        self._client = await self._connect()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._follow_catalog())
                group.create_task(self._reconcile())
        finally:
            for task in self._followers.values():
                task.cancel()
            for task in list(self._followers.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._followers.clear()
            with contextlib.suppress(*_ERRORS):
                await self._client.close()

    async def _connect(self) -> Any:
        scheme, host, port = self.settings.endpoint
        with warnings.catch_warnings():
            # py-consul builds its connector with aiohttp arguments aiohttp deprecates; not ours to change.
            warnings.simplefilter("ignore", DeprecationWarning)
            client = consul.aio.Consul(
                host=host, port=port, scheme=scheme, dc=self.settings.datacenter, verify=self.settings.verify_tls
            )
        # py-consul lets $CONSUL_HTTP_TOKEN win over its argument; the config file is the authority here.
        client.token = await self._token()
        return client

    async def _token(self) -> str | None:
        if self.settings.token is not None:
            return self.settings.token.get_secret_value()
        if self.settings.token_file is not None:
            try:
                text = await asyncio.to_thread(self.settings.token_file.read_text)
            except OSError as exc:
                log.error("consul.token_file %s cannot be read: %s", self.settings.token_file, exc.strerror)
                return None
            return text.strip() or None
        return None

    @property
    def _deadline(self) -> float:
        return self.settings.poll_seconds * 17 / 16 + REQUEST_SLACK_SECONDS

    @property
    def _wait(self) -> str:
        return f"{max(1, round(self.settings.poll_seconds))}s"

    async def _follow_catalog(self) -> None:
        """The tagged services: start following new ones, stop following those that left."""
        index: str | None = None
        delays = _retry_delays()
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                async with asyncio.timeout(self._deadline):
                    answered, services = await self._client.catalog.services(index=index, wait=self._wait)
            except Exception as exc:
                _reraise_cancel(exc)
                self._failed("catalog", exc)
                index = None  # continuity is lost; a restarted agent's index starts low again
                if self.settings.token_file is not None:
                    self._client.token = await self._token()
                self.synced.set()
                await asyncio.sleep(next(delays))
                continue
            self._succeeded("catalog")
            delays = _retry_delays()
            index = next_index(index, answered)
            tagged = sorted(name for name, tags in (services or {}).items() if self.settings.tag in (tags or ()))
            if len(tagged) > MAX_SERVICES:
                log.warning(
                    "consul: %d services carry tag %r; following the first %d",
                    len(tagged),
                    self.settings.tag,
                    MAX_SERVICES,
                )
                tagged = tagged[:MAX_SERVICES]
            self._follow(tagged)
            self._listed = True
            self._dirty.set()
            await asyncio.sleep(max(0.0, MIN_QUERY_GAP_SECONDS - (loop.time() - began)))

    def _follow(self, names: list[str]) -> None:
        wanted = set(names)
        for name in [n for n in self._followers if n not in wanted]:
            self._followers.pop(name).cancel()
            self._instances.pop(name, None)
            self._answered.discard(name)
            self._failures.pop(f"service {name}", None)
        for name in names:
            if name not in self._followers:
                self._followers[name] = asyncio.create_task(self._follow_service(name), name=f"consul {name}")

    async def _follow_service(self, name: str) -> None:
        """One service's passing instances."""
        index: str | None = None
        delays = _retry_delays()
        loop = asyncio.get_running_loop()
        key = f"service {name}"
        while True:
            began = loop.time()
            try:
                async with asyncio.timeout(self._deadline):
                    answered, entries = await self._client.health.service(
                        name, index=index, wait=self._wait, passing=True, tag=self.settings.tag
                    )
            except Exception as exc:
                _reraise_cancel(exc)
                self._failed(key, exc)
                index = None
                await asyncio.sleep(next(delays))
                continue
            self._succeeded(key)
            delays = _retry_delays()
            index = next_index(index, answered)
            found = discovered_service(name, list(entries or ()))
            if found != self._instances.get(name) or name not in self._answered:
                self._instances[name] = found
                self._answered.add(name)
                self._dirty.set()
            await asyncio.sleep(max(0.0, MIN_QUERY_GAP_SECONDS - (loop.time() - began)))

    async def _reconcile(self) -> None:
        """Hand each new passing set to the gateway; bursts of answers coalesce into one change.

        Nothing is handed over before the first complete answer (the catalog and every tagged service's
        instances): a half-read Consul must not withdraw services that are about to be confirmed.
        """
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._applied is None and not (self._listed and self._answered >= set(self._followers)):
                continue
            current = {name: found for name, found in self._instances.items() if found is not None}
            self.metrics.services.set(len(current))
            if current != self._applied:
                self._applied = current
                try:
                    await self._on_change(dict(current))
                except Exception:
                    log.exception("applying the services found in consul failed")
            self.synced.set()

    def _failed(self, key: str, exc: Exception) -> None:
        if not isinstance(exc, _ERRORS):
            # Unexpected, so with its traceback; following Consul must not end on it.
            log.exception("consul %s (%s): the query failed", self.settings.address, key)
        reason = _describe(exc)
        first = not self._failures
        if self._failures.get(key) != reason:
            log.warning("consul %s (%s): %s; serving the last known services", self.settings.address, key, reason)
        self._failures[key] = reason
        self.metrics.errors.inc()
        self.metrics.up.set(0)
        if first and self._on_health is not None:
            self._on_health()

    def _succeeded(self, key: str) -> None:
        if self._failures.pop(key, None) is not None:
            log.info("consul %s (%s) answers again", self.settings.address, key)
            if not self._failures and self._on_health is not None:
                self._on_health()
        if not self._failures:
            self.metrics.up.set(1)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, consul.ACLPermissionDenied | consul.ACLDisabled):
        return "the ACL token was refused (check consul.token / consul.token_file)"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"unreachable ({text})" if isinstance(exc, aiohttp.ClientError | OSError) else text[:300]
