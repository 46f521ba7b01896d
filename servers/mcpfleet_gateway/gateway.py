"""The gateway's core: one governed path for every call, whichever transport brought it.

A call goes: look the tool up → validate the arguments against its input schema → authorize (roles,
permissions, risk ceiling, namespace scoping) → rate-limit → answer from the cache (SAFE tools with a
TTL) or forward to the upstream (retries for SAFE tools only) → audit → metrics. Every refusal is
audited too. The routing table is replaced whole on reload; a running call keeps the route it began with,
and an upstream that left the config is closed only after its calls finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import orjson
import redis.asyncio as redis
from mcp.shared.exceptions import MCPError, NoBackChannelError
from pydantic import ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mcpfleet_contracts.catalog import Catalog, CatalogServer
from mcpfleet_contracts.mcpserver import Risk, Transport
from mcpfleet_gateway import audit
from mcpfleet_gateway.audit_sink import AuditWriter
from mcpfleet_gateway.auth import Authenticator, Principal
from mcpfleet_gateway.catalog_watch import CatalogWatchMetrics, ConfigMapWatch
from mcpfleet_gateway.config import CatalogSource, GatewayConfig, GatewaySettings
from mcpfleet_gateway.consul_source import UPSTREAM_PREFIX as CONSUL_PREFIX
from mcpfleet_gateway.consul_source import ConsulDiscovery, ConsulMetrics, DiscoveredService
from mcpfleet_gateway.errors import (
    Forbidden,
    GatewayError,
    InvalidArguments,
    PassThrough,
    RateLimited,
    UnknownResource,
    UnknownTool,
    UserInputRequired,
)
from mcpfleet_gateway.metrics import GatewayMetrics
from mcpfleet_gateway.ratelimit import RateLimiter
from mcpfleet_gateway.rbac import Authorizer
from mcpfleet_gateway.relay import (
    MAX_ROUNDS,
    NO_DOWNSTREAM,
    Downstream,
    StateSeal,
    unanswerable_message,
    unsupported_request,
)
from mcpfleet_gateway.table import (
    ArgumentError,
    PromptRoute,
    ResourceRoute,
    Route,
    ToolTable,
    entry_for,
    prefixed_prompt,
    prefixed_resource,
    with_overrides,
)
from mcpfleet_gateway.upstreams.base import ClientInput, Upstream, build_upstream
from mcpfleet_gateway.upstreams.errors import (
    UpstreamError,
    UpstreamRPCError,
    UpstreamTimeout,
)
from mcpfleet_gateway.upstreams.spec import UpstreamSpec

log = logging.getLogger(__name__)

SOURCE_SYNC_SECONDS = 10.0
"""Longest a start or reload waits for the ConfigMap and Consul to answer once before serving without them."""
CATALOG_PREFIX = "catalog/"
START_WAIT_SECONDS = 5.0

Listing = tuple[list[types.Tool], list[types.Resource], list[types.Prompt]]
LocalTools = Callable[["Gateway"], Iterable[tuple[Route, ...]]]
Listener = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Caller:
    principal: Principal
    client_address: str | None = None
    transport: str = "mcp"
    request_id: str = ""

    def with_request(self, request_id: str | None = None) -> Caller:
        return Caller(self.principal, self.client_address, self.transport, request_id or uuid.uuid4().hex)


class ResultCache:
    """SAFE answers by (tool, canonical arguments), each until its TTL; LRU-bounded in entries and entry size."""

    def __init__(self, max_entries: int, max_entry_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_entry_bytes = max_entry_bytes
        self._entries: OrderedDict[tuple[str, bytes], tuple[float, types.CallToolResult]] = OrderedDict()

    @staticmethod
    def key(tool: str, arguments: Mapping[str, Any]) -> tuple[str, bytes]:
        return tool, orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)

    def get(self, key: tuple[str, bytes]) -> types.CallToolResult | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, result = found
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return result

    def put(self, key: tuple[str, bytes], ttl: float, result: types.CallToolResult, size: int) -> None:
        if self.max_entries == 0 or size > self.max_entry_bytes or result.is_error:
            return
        self._entries[key] = (time.monotonic() + ttl, result)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def _catalog_spec(server_transport: Transport, endpoint: str, prefix: str) -> UpstreamSpec:
    transport = "sse" if server_transport is Transport.SSE else "streamable-http"
    return UpstreamSpec.model_validate({"transport": transport, "url": endpoint, "prefix": prefix})


def _is_static(name: str) -> bool:
    """Upstreams from the config file have plain names; discovered ones are ``catalog/...`` or ``consul/...``."""
    return "/" not in name


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        return f"{where}: {error['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _watch_key(source: CatalogSource) -> tuple[object, ...] | None:
    """What a ConfigMap watch depends on; a reload that changes it restarts the watch."""
    if source.configmap is None:
        return None
    return (source.configmap, source.kubeconfig, source.context)


def _text_size(result: types.CallToolResult) -> int:
    return sum(len(block.text) for block in result.content if isinstance(block, types.TextContent))


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        settings: GatewaySettings,
        *,
        metrics: GatewayMetrics | None = None,
        local_tools: LocalTools | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()
        self.replica = settings.replica
        self._local_tools = local_tools
        self.table = ToolTable()
        self.upstreams: dict[str, Upstream] = {}
        self.upstream_listings: dict[str, tuple[list[types.Tool], list[types.Resource], list[types.Prompt]]] = {}
        self.catalog: Catalog | None = None
        self.catalog_problem: str | None = None
        """Why the last catalog text was refused (the last good catalog keeps serving)."""
        self.catalog_source_problem: str | None = None
        """Why the catalog ConfigMap cannot be followed (deleted, API unreachable)."""
        self._catalog_endpoint_problems: list[str] = []
        self.catalog_watch: ConfigMapWatch | None = None
        self.consul: ConsulDiscovery | None = None
        self._catalog_watch_task: asyncio.Task[None] | None = None
        self._consul_task: asyncio.Task[None] | None = None
        self._catalog_watch_metrics = CatalogWatchMetrics(self.metrics.registry)
        self._consul_metrics = ConsulMetrics(self.metrics.registry)
        self.redis: redis.Redis | None = None
        self.authenticator = Authenticator(config.auth)
        self.authorizer = Authorizer(config.rbac)
        self.limiter: RateLimiter | None = None
        self.audit: AuditWriter | None = None
        self.cache = ResultCache(config.cache.max_entries, config.cache.max_entry_bytes)
        self.state_seal = StateSeal.for_settings(config.confirmations)
        self._visible: dict[frozenset[str], list[types.Tool]] = {}
        self._listeners: set[Listener] = set()
        self._in_flight: dict[str, int] = {}
        self._idle: dict[str, asyncio.Event] = {}  # retired upstreams waiting for their last call
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rebuild_lock = asyncio.Lock()
        self._reload_lock = asyncio.Lock()
        self._discovery_lock = asyncio.Lock()
        self.started = False

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        if config.redis.url is not None:
            self.redis = redis.Redis.from_url(
                config.redis.url.get_secret_value(),
                socket_timeout=config.redis.timeout_seconds,
                socket_connect_timeout=config.redis.timeout_seconds,
                health_check_interval=30,
                # One quick retry: the limiter and the audit writer have their own outage handling, and redis-py's
                # default of 10 retries would make every call wait out a dead Redis.
                retry=Retry(NoBackoff(), 1),
            )
        self.limiter = RateLimiter(config.rate_limits, self.redis, self.metrics.ratelimit)
        if config.audit.enabled:
            self.audit = AuditWriter(
                config.audit,
                replica=self.replica,
                redis=self.redis,
                metrics=self.metrics.audit,
            )
            await self.audit.start()
        await self._connect_upstreams(config.upstreams)
        await self._load_catalog_file()
        await self._follow_sources(None)
        await self.rebuild("start")
        self.started = True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(upstream.close() for upstream in self.upstreams.values()), return_exceptions=True)
        self.upstreams.clear()
        if self.audit is not None:
            await self.audit.close()
        if self.redis is not None:
            await self.redis.aclose()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- upstreams and the table ----------------------------------------------------------------------

    def _catalog_upstream_name(self, server_name: str) -> str:
        return f"{CATALOG_PREFIX}{server_name}"

    async def _connect_upstreams(self, specs: Mapping[str, UpstreamSpec]) -> None:
        """Start the static upstreams that are new or changed; close the ones that left (after their calls)."""
        wanted = dict(specs)
        for name in [n for n in self.upstreams if _is_static(n)]:
            if name not in wanted or self.upstreams[name].spec != wanted[name]:
                self._retire(name)
        started = [name for name in wanted if name not in self.upstreams]
        for name in started:
            upstream = build_upstream(name, wanted[name], self.metrics.upstreams)
            upstream.on_list_changed = self._list_changed_callback(name)
            self.upstreams[name] = upstream
        await asyncio.gather(*(self._start_and_list(name) for name in started))

    def _list_changed_callback(self, name: str) -> Listener:
        async def changed() -> None:
            await self._list_upstream(name)
            await self.rebuild(f"upstream {name}")

        return changed

    async def _start_and_list(self, name: str) -> None:
        upstream = self.upstreams[name]
        try:
            await upstream.start()
        except (UpstreamError, OSError) as exc:
            log.warning("upstream %s did not start: %s (retrying in the background)", name, exc)
        await self._list_upstream(name)

    async def _list_upstream(self, name: str) -> bool:
        upstream = self.upstreams.get(name)
        if upstream is None:
            return False
        listing = await self._fetch_listing(name, upstream)
        if listing is None or self.upstreams.get(name) is not upstream:
            return False
        self.upstream_listings[name] = listing
        return True

    async def _fetch_listing(self, name: str, upstream: Upstream) -> Listing | None:
        try:
            tools = await upstream.list_tools()
            resources = await self._optional(upstream.list_resources())
            prompts = await self._optional(upstream.list_prompts())
        except (UpstreamError, OSError) as exc:
            log.warning("listing upstream %s failed: %s", name, exc)
            return None
        return tools, resources, prompts

    @staticmethod
    async def _optional(listing: Awaitable[list[Any]]) -> list[Any]:
        """Resources and prompts are optional capabilities: an upstream without them has none."""
        try:
            return await listing
        except UpstreamRPCError:
            return []

    def _retire(self, name: str) -> None:
        upstream = self.upstreams.pop(name)
        self.upstream_listings.pop(name, None)
        self.spawn(self._close_when_idle(name, upstream))

    async def apply_discovered(self, services: Mapping[str, DiscoveredService]) -> None:
        """Serve exactly these Consul services as ``consul/<service>`` upstreams, listed by the gateway.

        A new or moved service is started and listed before it replaces anything, so a service whose passing
        instance changed keeps answering from the old one until the new one has listed its tools.
        """
        async with self._discovery_lock:
            wanted = {found.upstream_name: found.spec() for found in services.values()}
            fresh = {
                name: build_upstream(name, spec, self.metrics.upstreams)
                for name, spec in wanted.items()
                if name not in self.upstreams or self.upstreams[name].spec != spec
            }
            installed: set[str] = set()
            try:
                listings = await asyncio.gather(*(self._start_and_fetch(n, u) for n, u in fresh.items()))
                for name in [n for n in self.upstreams if n.startswith(CONSUL_PREFIX) and n not in wanted]:
                    log.info("upstream %s left consul (no passing instance)", name)
                    self._retire(name)
                for (name, upstream), listing in zip(fresh.items(), listings, strict=True):
                    previous = self.upstream_listings.get(name)
                    if name in self.upstreams:
                        self._retire(name)
                    upstream.on_list_changed = self._list_changed_callback(name)
                    self.upstreams[name] = upstream
                    installed.add(name)
                    # A service that moved but does not answer yet keeps its known tools: routes reach the new
                    # instance, and the periodic refresh lists it again.
                    if listing is not None or previous is not None:
                        self.upstream_listings[name] = listing or previous  # type: ignore[assignment]
            finally:
                for name, upstream in fresh.items():
                    if name not in installed:
                        self.spawn(upstream.close())
        await self.rebuild("consul")

    async def _start_and_fetch(self, name: str, upstream: Upstream) -> Listing | None:
        try:
            await upstream.start()
        except (UpstreamError, OSError) as exc:
            log.warning("upstream %s did not start: %s (retrying in the background)", name, exc)
        return await self._fetch_listing(name, upstream)

    async def _close_when_idle(self, name: str, upstream: Upstream) -> None:
        """Close a retired upstream once its running calls have answered (bounded by its call timeout)."""
        if self._in_flight.get(name, 0) > 0:
            idle = self._idle.setdefault(name, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(idle.wait(), timeout=upstream.spec.timeouts.call + 5)
            self._idle.pop(name, None)
        await upstream.close()

    async def _load_catalog_file(self) -> bool:
        """Read catalog.path (in a thread) and apply it; True when the catalog changed.

        Without any catalog source the catalog is dropped. With a ConfigMap source the watch supplies it.
        """
        source = self.config.catalog
        if source.path is None:
            if source.configmap is not None or self.catalog is None:
                return False
            self.catalog = None
            self.catalog_problem = None
            return True
        try:
            text = await asyncio.to_thread(source.path.read_bytes)
        except OSError as exc:
            self._refuse_catalog(f"catalog {source.path}: {exc.strerror or exc}")
            return False
        return self._accept_catalog(text, f"catalog {source.path}")

    def _accept_catalog(self, text: str | bytes, origin: str) -> bool:
        """Validate a catalog text from any source; an invalid one keeps the last good catalog serving.

        Returns True when the served catalog changed.
        """
        try:
            catalog = Catalog.model_validate_json(text)
        except (ValidationError, ValueError) as exc:
            self._refuse_catalog(f"{origin}: {_first_error(exc)}")
            return False
        self.catalog_problem = None
        self._count_problems()
        if self.catalog is not None and catalog == self.catalog:
            return False
        self.catalog = catalog
        self.metrics.catalog_revision.set(catalog.revision)
        return True

    def _refuse_catalog(self, problem: str) -> None:
        self.catalog_problem = problem
        log.error("%s; serving the last good catalog", problem)
        self.metrics.reloads.labels(source="catalog", outcome="invalid").inc()
        self._count_problems()

    def _count_problems(self) -> None:
        self.metrics.problems.set(len(self.problems()))

    async def apply_catalog_text(self, text: str | bytes, origin: str) -> bool:
        """Serve a new catalog text (from the file, the ConfigMap, or anyone else) if it is valid and new.

        The table is rebuilt at once and session clients get list_changed; returns True when it changed.
        """
        if not self._accept_catalog(text, origin):
            return False
        self.metrics.reloads.labels(source="catalog", outcome="ok").inc()
        await self.rebuild("catalog")
        return True

    def set_catalog_source_problem(self, problem: str | None) -> None:
        """Why the catalog source cannot be followed right now (None: it can); the last catalog keeps serving."""
        self.catalog_source_problem = problem
        self._count_problems()

    # -- following the ConfigMap and Consul ----------------------------------------------------------------

    async def _follow_sources(self, previous: GatewayConfig | None) -> None:
        """Start, restart or stop the ConfigMap watch and the Consul discovery as the config asks.

        Waits (bounded) for each new one to answer once, so a start serves what they know from the first request.
        """
        config = self.config
        waiting: list[asyncio.Event] = []
        if previous is None or _watch_key(previous.catalog) != _watch_key(config.catalog):
            await self._stop(self._catalog_watch_task)
            self._catalog_watch_task, self.catalog_watch = None, None
            self.set_catalog_source_problem(None)
            if config.catalog.configmap is not None:
                watch = ConfigMapWatch(
                    config.catalog,
                    self._catalog_text_arrived,
                    self.set_catalog_source_problem,
                    self._catalog_watch_metrics,
                )
                self.catalog_watch = watch
                self._catalog_watch_task = self._spawn_task(watch.run(), "catalog configmap watch")
                waiting.append(watch.synced)
        if previous is None or previous.consul != config.consul:
            await self._stop(self._consul_task)
            self._consul_task, self.consul = None, None
            if config.consul is not None:
                discovery = ConsulDiscovery(
                    config.consul, self.apply_discovered, self._consul_metrics, on_health=self._count_problems
                )
                self.consul = discovery
                self._consul_task = self._spawn_task(discovery.run(), "consul discovery")
                waiting.append(discovery.synced)
            elif any(name.startswith(CONSUL_PREFIX) for name in self.upstreams):
                await self.apply_discovered({})
        if waiting:
            waits = [asyncio.ensure_future(event.wait()) for event in waiting]
            await asyncio.wait(waits, timeout=SOURCE_SYNC_SECONDS)
            for wait in waits:
                wait.cancel()

    async def _catalog_text_arrived(self, text: str) -> None:
        assert self.catalog_watch is not None
        await self.apply_catalog_text(text, f"catalog {self.catalog_watch.where}")

    def _spawn_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._source_ended)
        return task

    @staticmethod
    def _source_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped: %r", task.get_name(), task.exception())

    @staticmethod
    async def _stop(task: asyncio.Task[None] | None) -> None:
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    def _catalog_endpoint(self, server: CatalogServer) -> str:
        """The cataloged endpoint, unless catalog.endpoint_overrides names the server (or its prefix)."""
        overrides = self.config.catalog.endpoint_overrides
        return overrides.get(server.name) or overrides.get(server.prefix) or server.endpoint

    def _sync_catalog_upstreams(self) -> list[asyncio.Task[Any]]:
        """Make the catalog's upstreams match the catalog; returns the starts of the new ones."""
        wanted: dict[str, UpstreamSpec] = {}
        problems: list[str] = []
        if self.catalog is not None:
            for server in self.catalog.servers:
                endpoint = self._catalog_endpoint(server)
                try:
                    spec = _catalog_spec(server.transport, endpoint, server.prefix)
                except ValidationError as exc:
                    problems.append(
                        f"catalog server {server.name}: endpoint {endpoint!r} cannot be used ({_first_error(exc)}); "
                        f"set catalog.endpoint_overrides[{server.name!r}]"
                    )
                    continue
                wanted[self._catalog_upstream_name(server.name)] = spec
        if problems != self._catalog_endpoint_problems:
            for problem in problems:
                log.warning("%s", problem)
        self._catalog_endpoint_problems = problems
        for name in [n for n in self.upstreams if n.startswith(CATALOG_PREFIX)]:
            if name not in wanted or self.upstreams[name].spec != wanted[name]:
                self._retire(name)
        starting = []
        for name, spec in wanted.items():
            if name not in self.upstreams:
                upstream = build_upstream(name, spec, self.metrics.upstreams)
                self.upstreams[name] = upstream
                starting.append(self.spawn(self._start_quietly(upstream)))
        return starting

    @staticmethod
    async def _start_quietly(upstream: Upstream) -> None:
        with contextlib.suppress(UpstreamError, OSError):
            await upstream.start()

    def build_table(self) -> ToolTable:
        config = self.config
        overrides = config.tools
        table = ToolTable()
        if self._local_tools is not None:
            for routes in self._local_tools(self):
                for route in routes:
                    table.add_tool(route)
        for name, (tools, resources, prompts) in sorted(self.upstream_listings.items()):
            upstream = self.upstreams.get(name)
            if upstream is None:
                continue
            prefix = upstream.spec.prefix or name
            for tool in tools:
                entry = entry_for(prefix, tool, separator=config.separator, overrides=overrides)
                table.add_tool(Route(entry, upstream, name))
            for resource in resources:
                table.add_resource(ResourceRoute(prefixed_resource(prefix, resource, config.separator), upstream, name))
            for prompt in prompts:
                table.add_prompt(
                    PromptRoute(prefixed_prompt(prefix, prompt, config.separator), prompt.name, upstream, name)
                )
        if self.catalog is not None:
            for server in self.catalog.servers:
                backend = self.upstreams.get(self._catalog_upstream_name(server.name))
                if backend is None:
                    continue
                for entry in server.tools:
                    table.add_tool(Route(with_overrides(entry, overrides), backend, server.name))
        return table

    async def rebuild(self, why: str) -> None:
        async with self._rebuild_lock:
            starting = self._sync_catalog_upstreams()
            if starting:
                # Starting only acquires a client (no network round trip), but a route must not be served before
                # its upstream can take a call; bounded in case a transport's start does reach out.
                await asyncio.wait(starting, timeout=START_WAIT_SECONDS)
            table = self.build_table()
            changed = set(table.tools) != set(self.table.tools) or any(
                table.tools[name].entry != self.table.tools[name].entry for name in table.tools
            )
            changed = changed or table.resources.keys() != self.table.resources.keys()
            changed = changed or table.prompts.keys() != self.table.prompts.keys()
            self.table = table
            self._visible.clear()
            self.cache.clear()
            self.metrics.tools.set(len(table.tools))
            self.metrics.problems.set(len(self.problems()))
            for problem in table.problems:
                log.warning("%s", problem)
            log.info("routing table rebuilt (%s): %d tools", why, len(table.tools))
        if changed and self.started:
            await self.notify_list_changed()

    async def reload(self, load: Callable[[], GatewayConfig]) -> bool:
        """Read the config (``load`` runs in a thread, under the reload lock) and apply it when it changed.

        Reading under the lock matters when writers race: whichever reload runs last reads the file as the
        last writer left it, so the gateway ends up running what the file says.
        """
        async with self._reload_lock:
            config = await asyncio.to_thread(load)
            if config == self.config:
                return False
            await self._apply_config(config)
            return True

    async def reload_config(self, config: GatewayConfig) -> None:
        async with self._reload_lock:
            await self._apply_config(config)

    async def _apply_config(self, config: GatewayConfig) -> None:
        """Apply a new config without dropping calls: policies swap at once, upstreams by difference."""
        previous, self.config = self.config, config
        self.authenticator = Authenticator(config.auth)
        self.authorizer = Authorizer(config.rbac)
        if self.limiter is not None and config.rate_limits != self.limiter.settings:
            self.limiter = RateLimiter(config.rate_limits, self.redis, self.metrics.ratelimit)
        self.cache = ResultCache(config.cache.max_entries, config.cache.max_entry_bytes)
        if config.confirmations != previous.confirmations:
            self.state_seal = StateSeal.for_settings(config.confirmations)
        await self._connect_upstreams(config.upstreams)
        await self._load_catalog_file()
        await self._follow_sources(previous)
        await self.rebuild("config")
        self.metrics.reloads.labels(source="config", outcome="ok").inc()

    async def reload_catalog(self) -> None:
        """Read catalog.path again (the file changed) and serve it when it is valid and new."""
        if await self._load_catalog_file():
            self.metrics.reloads.labels(source="catalog", outcome="ok").inc()
            await self.rebuild("catalog")

    async def refresh_upstreams(self) -> None:
        """Re-list the upstreams the gateway lists itself (static and Consul) that failed before or changed
        without telling; rebuild when needed."""
        names = [name for name in self.upstreams if not name.startswith(CATALOG_PREFIX)]
        before = {name: self.upstream_listings.get(name) for name in names}
        await asyncio.gather(*(self._list_upstream(name) for name in names))
        if any(self.upstream_listings.get(name) != before[name] for name in names):
            await self.rebuild("upstream refresh")

    # -- list_changed -----------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    async def notify_list_changed(self) -> None:
        for listener in list(self._listeners):
            try:
                await asyncio.wait_for(listener(), timeout=5)
            except Exception as exc:
                log.debug("list_changed to a client failed: %s", exc)
                self._listeners.discard(listener)

    # -- serving ----------------------------------------------------------------------------------------

    def visible_tools(self, principal: Principal) -> list[types.Tool]:
        key = frozenset(principal.roles)
        found = self._visible.get(key)
        if found is None:
            routes = list(self.table.tools.values())
            allowed = {grant.name for grant in self.authorizer.visible(principal.roles, (r.grant for r in routes))}
            found = [route.listed for route in routes if route.name in allowed]
            self._visible[key] = found
        return found

    def _audit(
        self,
        caller: Caller,
        tool: str | None,
        arguments: Mapping[str, Any],
        decision: audit.Decision,
        *,
        reason: str | None = None,
        status: str | None = None,
        started: float | None = None,
    ) -> None:
        if self.audit is None:
            return
        latency = None if started is None else round((time.perf_counter() - started) * 1000, 3)
        self.audit.submit(
            audit.event(
                request_id=caller.request_id,
                subject=caller.principal.subject,
                roles=caller.principal.roles,
                client_address=caller.client_address,
                tool=tool,
                arguments=dict(arguments),
                decision=decision,
                reason=reason,
                status=status,
                latency_ms=latency,
            )
        )

    def refuse(
        self,
        caller: Caller,
        tool: str | None,
        arguments: Mapping[str, Any],
        error: GatewayError,
        outcome: str,
        started: float | None = None,
    ) -> GatewayError:
        decision: audit.Decision = "rate-limited" if isinstance(error, RateLimited) else "denied"
        self._audit(caller, tool, arguments, decision, reason=error.message, status=outcome, started=started)
        self.metrics.denials.labels(reason=outcome).inc()
        if tool is not None and tool in self.table.tools:
            server = tool.partition(self.config.separator)[0]
            self.metrics.calls.labels(server=server, tool=tool, outcome=outcome).inc()
        return error

    def refuse_unauthenticated(self, client_address: str | None, path: str, reason: str) -> None:
        """A request without acceptable credentials is a denial too: audited with who it claimed to be (nobody)."""
        caller = Caller(Principal("unauthenticated", (), "anonymous"), client_address, "http", uuid.uuid4().hex)
        self._audit(caller, None, {"path": path}, "denied", reason=reason, status="unauthenticated")

    async def call_tool(
        self,
        caller: Caller,
        name: str,
        arguments: Mapping[str, Any] | None,
        downstream: Downstream = NO_DOWNSTREAM,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Govern and forward one call. An ``InputRequiredResult`` comes back only to a pass-through client.

        A retry (``downstream`` carries answers and a state) is authorized again like any call; it is not counted
        against the rate limits again when it continues a call this gateway started (see :mod:`relay`).
        """
        started = time.perf_counter()
        args = dict(arguments or {})
        route = self.table.tools.get(name)
        if route is None:
            raise self.refuse(
                caller,
                name,
                args,
                UnknownTool(f"unknown tool {name!r}: tools/list shows the tools you may call"),
                "unknown-tool",
            )
        try:
            route.validate(args)
        except ArgumentError as exc:
            raise self.refuse(
                caller,
                name,
                args,
                InvalidArguments(f"invalid arguments for {name}: {exc}", {"field": exc.field}),
                "invalid",
            ) from None
        decision = self.authorizer.authorize(caller.principal.roles, route.grant, args)
        if not decision.allowed:
            raise self.refuse(caller, name, args, Forbidden(f"forbidden: {decision.reason}"), "denied")
        upstream_state, continues = self._continuation(caller, name, args, downstream)
        if not continues:
            await self._check_limits(caller, name, args, route, started)
        client_input = ClientInput(
            elicitation=downstream.can_answer, input_responses=downstream.input_responses, request_state=upstream_state
        )
        return await self._forward(caller, route, args, started, downstream, client_input)

    def _continuation(
        self, caller: Caller, name: str, args: Mapping[str, Any], downstream: Downstream
    ) -> tuple[str | None, bool]:
        """The upstream's state a retry carries, and whether it continues a call this gateway started."""
        if downstream.request_state is None:
            return None, False
        return self.state_seal.open(caller.principal.subject, name, args, downstream.request_state)

    async def _check_limits(
        self, caller: Caller, name: str, args: dict[str, Any], route: Route, started: float
    ) -> None:
        assert self.limiter is not None
        limit = await self.limiter.check(caller.principal.subject, name, route.risk)
        if not limit.allowed:
            message = limit.reason or f"rate limited: {limit.scope} limit {limit.limit} reached"
            raise self.refuse(
                caller,
                name,
                args,
                RateLimited(message, limit.retry_after, {"scope": limit.scope}),
                "rate-limited",
                started,
            )

    async def _forward(
        self,
        caller: Caller,
        route: Route,
        args: dict[str, Any],
        started: float,
        downstream: Downstream = NO_DOWNSTREAM,
        client_input: ClientInput | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        name, entry = route.name, route.entry
        server = name.partition(self.config.separator)[0]
        # An answer that needed the user is theirs alone: neither served from nor put into the cache.
        cacheable = entry.cache_ttl_seconds > 0 and not downstream.is_retry
        cache_key = ResultCache.key(name, args) if cacheable else None
        if cache_key is not None:
            cached = self.cache.get(cache_key)
            self.metrics.cache.labels(result="hit" if cached else "miss").inc()
            if cached is not None:
                self._finish(caller, route, args, "cached", started, server)
                return cached
        # Counted per upstream, the unit a reload retires (a catalog route's source is its server's name).
        source = route.backend.name if isinstance(route.backend, Upstream) else route.source
        self._in_flight[source] = self._in_flight.get(source, 0) + 1
        self.metrics.in_flight.inc()
        rounds = 0
        try:
            answer, rounds = await self._call_upstream(route, args, downstream, client_input)
        except _NoAnswerInTime:
            self._finish(caller, route, args, "timeout", started, server, reason="no answer from the user in time")
            return _error_result(
                f"{name} timed out after {entry.timeout_seconds:g} s waiting for the user's answer; nothing was done"
            )
        except _Unanswerable as exc:
            self.metrics.input_requests.labels(server=server, outcome=exc.outcome).inc()
            self._finish(caller, route, args, "unconfirmable", started, server, reason=exc.message)
            if downstream.mode == "refuse":
                raise UserInputRequired(exc.message, {"tool": name, "reason": exc.outcome}) from None
            return _error_result(exc.message)
        except UpstreamRPCError as exc:
            self._finish(caller, route, args, "upstream-error", started, server, reason=exc.message)
            raise PassThrough(exc.code, exc.message, exc.data) from None
        except UpstreamTimeout as exc:
            self._finish(caller, route, args, "timeout", started, server, reason=str(exc))
            return _error_result(f"{name} timed out after {entry.timeout_seconds:g} s: {exc}")
        except UpstreamError as exc:
            self._finish(caller, route, args, "upstream-error", started, server, reason=str(exc))
            return _error_result(f"{name} could not be called: {exc}")
        finally:
            self._in_flight[source] -= 1
            self.metrics.in_flight.dec()
            if self._in_flight[source] == 0 and source in self._idle:
                self._idle[source].set()
        if isinstance(answer, types.InputRequiredResult):
            # Handed to the client to ask; the call is audited once, when the client's retry brings its outcome.
            self.metrics.input_requests.labels(server=server, outcome="passed-through").inc()
            state = self.state_seal.seal(caller.principal.subject, name, args, answer.request_state)
            return answer.model_copy(update={"request_state": state})
        result = answer
        outcome = "tool-error" if result.is_error else "ok"
        if cache_key is not None and not result.is_error and rounds == 0:
            self.cache.put(cache_key, entry.cache_ttl_seconds, result, _text_size(result))
        reason = None
        if downstream.is_retry:
            reason = "completed after the user's input (the client asked)"
        elif rounds:
            reason = f"completed after the user's input ({rounds} round(s) asked by the gateway)"
        self._finish(caller, route, args, outcome, started, server, reason=reason)
        return result

    async def _call_upstream(
        self, route: Route, args: dict[str, Any], downstream: Downstream, client_input: ClientInput | None
    ) -> tuple[types.CallToolResult | types.InputRequiredResult, int]:
        """Call the route's backend; for a client the gateway asks itself, repeat with the user's answers.

        Returns the answer and how many rounds of questions the gateway asked. Raises :class:`_Unanswerable` when
        the upstream needs input this client cannot give.
        """
        entry = route.entry
        server = route.name.partition(self.config.separator)[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + entry.timeout_seconds
        rounds = 0
        while True:
            answer = await route.backend.call_tool(
                entry.upstream_name,
                args,
                timeout=max(deadline - loop.time(), 0.001),
                retry=route.risk is Risk.SAFE,
                client_input=client_input,
            )
            if not isinstance(answer, types.InputRequiredResult):
                if rounds:
                    self.metrics.input_requests.labels(server=server, outcome="relayed").inc()
                return answer, rounds
            problem = unsupported_request(answer, downstream)
            if problem is not None:
                raise _Unanswerable(f"{route.name} cannot be completed through the gateway: {problem}", "unsupported")
            if downstream.mode == "pass-through":
                return answer, rounds
            if downstream.mode != "ask" or downstream.ask is None:
                raise _Unanswerable(unanswerable_message(route.name, downstream.mode == "refuse"), "unanswerable")
            if rounds >= MAX_ROUNDS:
                raise _Unanswerable(
                    f"{route.name} asked the user more than {MAX_ROUNDS} rounds of questions; the gateway stopped "
                    "asking and the call was not completed",
                    "too-many-rounds",
                )
            rounds += 1
            responses = await self._ask(route.name, downstream, answer, deadline)
            client_input = ClientInput(elicitation=True, input_responses=responses, request_state=answer.request_state)

    @staticmethod
    async def _ask(
        tool: str, downstream: Downstream, answer: types.InputRequiredResult, deadline: float
    ) -> dict[str, Any]:
        """Each of the upstream's questions to the client, as the upstream worded them; the answers in wire form.

        The user's time counts against the call's timeout (``deadline``, loop time).
        """
        assert downstream.ask is not None
        responses: dict[str, Any] = {}
        for key, request in (answer.input_requests or {}).items():
            assert isinstance(request, types.ElicitRequest)  # unsupported_request() let only elicitation through
            try:
                async with asyncio.timeout_at(deadline):
                    result = await downstream.ask(request)
            except TimeoutError:
                raise _NoAnswerInTime from None
            except NoBackChannelError:
                raise _Unanswerable(unanswerable_message(tool), "unanswerable") from None
            except MCPError as exc:
                raise _Unanswerable(
                    f"{tool} needs the user's answer, and the client failed to give one: {exc.error.message}",
                    "client-error",
                ) from None
            responses[key] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        return responses

    def _finish(
        self,
        caller: Caller,
        route: Route,
        args: Mapping[str, Any],
        outcome: str,
        started: float,
        server: str,
        *,
        reason: str | None = None,
    ) -> None:
        self.metrics.calls.labels(server=server, tool=route.name, outcome=outcome).inc()
        self.metrics.latency.labels(server=server, tool=route.name).observe(time.perf_counter() - started)
        decision: audit.Decision = "allowed" if outcome in ("ok", "tool-error", "cached") else "error"
        self._audit(caller, route.name, args, decision, reason=reason, status=outcome, started=started)

    # -- resources and prompts --------------------------------------------------------------------------

    def visible_resources(self, principal: Principal) -> list[types.Resource]:
        if not self.authorizer.may_list(principal.roles):
            return []
        return [route.resource for route in self.table.resources.values()]

    async def read_resource(self, caller: Caller, uri: str) -> types.ReadResourceResult:
        route = self.table.resources.get(uri)
        if route is None:
            raise UnknownResource(f"unknown resource {uri!r}: resources/list shows what there is")
        if not self.authorizer.may_list(caller.principal.roles):
            raise Forbidden("forbidden: reading resources needs tools:list")
        self._audit(caller, f"resource:{uri}", {}, "allowed", status="ok")
        try:
            return await route.backend.read_resource(uri)
        except UpstreamRPCError as exc:
            raise PassThrough(exc.code, exc.message, exc.data) from None

    def visible_prompts(self, principal: Principal) -> list[types.Prompt]:
        if not self.authorizer.may_list(principal.roles):
            return []
        return [route.prompt for route in self.table.prompts.values()]

    async def get_prompt(self, caller: Caller, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        route = self.table.prompts.get(name)
        if route is None:
            raise UnknownResource(f"unknown prompt {name!r}: prompts/list shows what there is")
        if not self.authorizer.may_list(caller.principal.roles):
            raise Forbidden("forbidden: prompts need tools:list")
        try:
            return await route.backend.get_prompt(route.upstream_name, arguments)
        except UpstreamRPCError as exc:
            raise PassThrough(exc.code, exc.message, exc.data) from None

    # -- health -------------------------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """What /ready reports: the table's collisions, a catalog that could not be read or followed since, catalog
        servers that cannot be reached as cataloged, and a Consul that does not answer."""
        found = list(self.table.problems)
        extra = [self.catalog_problem, self.catalog_source_problem, *self._catalog_endpoint_problems]
        if self.consul is not None:
            extra.append(self.consul.problem)
        for problem in extra:
            if problem and problem not in found:
                found.append(problem)
        return found

    def readiness(self) -> dict[str, Any]:
        upstreams = {}
        for name, upstream in self.upstreams.items():
            health = upstream.health()
            upstreams[name] = {"up": health.up, "breaker": health.breaker, "lastError": health.last_error}
        return {
            "ready": self.started,
            "tools": len(self.table.tools),
            "catalogRevision": self.catalog.revision if self.catalog else None,
            "upstreams": upstreams,
            "problems": self.problems(),
        }


class _NoAnswerInTime(Exception):
    """The user did not answer the gateway's question within the call's timeout."""


class _Unanswerable(Exception):
    """The upstream needs input the calling client cannot give; ``outcome`` labels the input-request metric."""

    def __init__(self, message: str, outcome: str) -> None:
        super().__init__(message)
        self.message = message
        self.outcome = outcome


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)
