"""Keeps each MCPServer's Consul registration as the handlers want it, through Consul outages and restarts.

The handlers say what they want (``ensure``: registered like this; ``remove``: gone) and get the outcome
back at once; whatever failed is retried in the background with capped, jittered backoff. Every
``consul_retry_seconds`` one listing of the services tagged ``mcpfleet`` checks that Consul still has what
was registered: a Consul agent that restarted empty gets its registrations back within one interval.

Only registrations that are ours are ever removed: ids this operator wrote, or services tagged
``mcpfleet`` whose meta names an MCPServer this operator manages. Anything else in Consul is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import consul.aio
from consul import ACLDisabled, ACLPermissionDenied, ConsulException
from consul import Timeout as ConsulTimeout
from prometheus_client import CollectorRegistry, Counter, Gauge

from mcpfleet_operator.builders.consul import FLEET_TAG, META_NAME, META_NAMESPACE, Registration
from mcpfleet_operator.settings import OperatorSettings

log = logging.getLogger("mcpfleet.operator.consul")

Key = tuple[str, str]
T = TypeVar("T")

# Each HTTP call to Consul; a blackholed address costs this much, a refused connection nothing.
REQUEST_TIMEOUT_SECONDS = 5.0
FIRST_RETRY_SECONDS = 0.25
# Keys whose registration is gone and settled are remembered (to report changes only), up to this many.
SETTLED_KEPT = 4096
MESSAGE_MAX = 400

REGISTERED = "Registered"
DEREGISTERED = "Deregistered"
DISABLED = "Disabled"
PENDING = "Pending"
UNREACHABLE = "ConsulUnreachable"
ACL_DENIED = "ACLDenied"
CONSUL_ERROR = "ConsulError"
TOKEN_UNREADABLE = "ConsulTokenUnreadable"

# The reasons an MCPServer's registration can be counted under (bounded: the state gauge has one series each).
STATE_REASONS = (REGISTERED, PENDING, UNREACHABLE, ACL_DENIED, CONSUL_ERROR, TOKEN_UNREADABLE, DISABLED)

_FLEET_FILTER = f'"{FLEET_TAG}" in Tags'
_DOING = {"register": "registering", "deregister": "deregistering", "verify": "listing the services tagged mcpfleet"}


@dataclass(frozen=True)
class RegistrationState:
    """The outcome for one MCPServer, in the terms of its Registered condition.

    ``registered`` says whether a registration of the server is (as far as the operator knows) in Consul;
    ``reason`` is a CamelCase code and ``message`` says what happened and what to change.
    """

    registered: bool
    reason: str
    message: str
    service_id: str | None = None


OnState = Callable[[Key, RegistrationState], Awaitable[None]]


class ConsulMetrics:
    """The registrar's metrics, on the operator's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "mcpfleet_operator_consul_up",
            "1 when the last call to Consul got an answer, 0 when Consul could not be reached.",
            registry=registry,
        )
        self.registrations = Gauge(
            "mcpfleet_operator_consul_registrations",
            "MCPServer registrations the operator wants (state=desired) and has in Consul (state=registered).",
            ["state"],
            registry=registry,
        )
        self.operations = Counter(
            "mcpfleet_operator_consul_operations",
            "Calls to Consul by operation (register, deregister, verify) and result (ok, error).",
            ["operation", "result"],
            registry=registry,
        )
        self.states = Gauge(
            "mcpfleet_operator_consul_registration_states",
            "MCPServers by the reason of their Registered condition (Registered, Pending, ConsulUnreachable, "
            "ACLDenied, ConsulError, ConsulTokenUnreadable, Disabled); a server being removed counts until its "
            "deregistration is done.",
            ["reason"],
            registry=registry,
        )
        for state in ("desired", "registered"):
            self.registrations.labels(state).set(0)
        for reason in STATE_REASONS:
            self.states.labels(reason).set(0)


class ConsulFailure(Exception):
    """A call to Consul that failed, classified: ``reason`` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class _Slot:
    """What the operator wants for one MCPServer and what is left to do."""

    desired: Registration | None = None
    # Ids of this MCPServer to deregister: an old id after a type change, or everything after remove().
    stale: set[str] = field(default_factory=set)
    # Ids not known yet (no listing has succeeded since start): list them before deregistering.
    sweep: bool = False
    failure: ConsulFailure | None = None
    state: RegistrationState | None = None
    reported: RegistrationState | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 3] + "..."


def _client_target(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of settings.consul_address; a URL without a port means the scheme's port."""
    parts = urlsplit(address)
    scheme = parts.scheme or "http"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, f"[{host}]" if ":" in host else host, port


def _key_filter(key: Key) -> str:
    namespace, name = key
    return (
        f"{_FLEET_FILTER} and Meta.{META_NAMESPACE} == {json.dumps(namespace)} "
        f"and Meta.{META_NAME} == {json.dumps(name)}"
    )


def _key_of(entry: Mapping[str, Any]) -> Key | None:
    meta = entry.get("Meta") or {}
    namespace, name = meta.get(META_NAMESPACE), meta.get(META_NAME)
    if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
        return namespace, name
    return None


def _as_listed(registration: Registration) -> dict[str, Any]:
    """The entry /v1/agent/services shows for a registration just written."""
    return {
        "ID": registration.service_id,
        "Service": registration.name,
        "Address": registration.address,
        "Port": registration.port,
        "Tags": list(registration.tags),
        "Meta": dict(registration.meta),
    }


class ConsulRegistrar:
    """Registers MCPServers in Consul and keeps them registered; every public method answers, none raises."""

    def __init__(self, settings: OperatorSettings, registry: CollectorRegistry, on_state: OnState) -> None:
        self._settings = settings
        self._on_state = on_state
        self._metrics = ConsulMetrics(registry)
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._slots: dict[Key, _Slot] = {}
        self._settled: dict[Key, None] = {}
        # Services tagged mcpfleet as Consul last showed them (a listing, updated by our own writes).
        self._live: dict[str, Mapping[str, Any]] = {}
        self._listed = False
        self._owned: set[str] = set()
        self._failures = 0

    def _closed(self) -> bool:
        return self._closing

    @property
    def enabled(self) -> bool:
        return self._settings.consul_address is not None

    def desired(self) -> Mapping[Key, Registration]:
        return {key: slot.desired for key, slot in self._slots.items() if slot.desired is not None}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the client, look at what Consul has, and start retrying in the background.

        Never raises: with Consul down it returns after at most one request timeout and retries later.
        """
        address = self._settings.consul_address
        if address is None or self._client is not None:
            return
        scheme, host, port = _client_target(address)
        self._client = consul.aio.Consul(
            host=host,
            port=port,
            scheme=scheme,
            dc=self._settings.consul_datacenter,
            verify=self._settings.consul_verify_tls,
            connections_timeout=REQUEST_TIMEOUT_SECONDS,
        )
        # The client would fall back to $CONSUL_HTTP_TOKEN; the operator's settings are the only source.
        self._client.token = None
        await self._verify(await self._token_or_failure())
        self._task = asyncio.create_task(self._run(), name="consul-registrar")

    async def close(self) -> None:
        # A flag as well as the cancel: on Python 3.11 a cancel that lands as asyncio.timeout_at expires can come
        # out as a TimeoutError, which the loop would take for its own deadline and go on.
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    # ---------------------------------------------------------------- public API

    async def ensure(self, key: Key, registration: Registration) -> RegistrationState:
        """Want ``registration`` in Consul; write it unless Consul already has exactly it."""
        slot = self._slot(key)
        async with slot.lock:
            slot.desired = registration
            slot.stale.discard(registration.service_id)
            self._settled.pop(key, None)
            await self._converge(key, slot, await self._token_or_failure())
        return await self._report(key, slot)

    async def remove(self, key: Key) -> RegistrationState:
        """Want no registration of this MCPServer in Consul; deregister now or, if Consul is down, later."""
        slot = self._slot(key)
        async with slot.lock:
            if slot.desired is not None:
                # Even a write that seemed to fail may have landed.
                slot.stale.add(slot.desired.service_id)
                slot.desired = None
            slot.sweep = slot.sweep or (self.enabled and not self._listed)
            await self._converge(key, slot, await self._token_or_failure())
        state = await self._report(key, slot)
        self._settle(key, slot)
        return state

    # ----------------------------------------------------------------- internals

    def _slot(self, key: Key) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        return slot

    def _settle(self, key: Key, slot: _Slot) -> None:
        """Remember a finished removal (so a repeated one reports nothing new), within SETTLED_KEPT."""
        if slot.desired is not None or self._pending(slot):
            return
        self._settled[key] = None
        while len(self._settled) > SETTLED_KEPT:
            oldest = next(iter(self._settled))
            del self._settled[oldest]
            forgotten = self._slots.get(oldest)
            if forgotten is not None and forgotten.desired is None and not self._pending(forgotten):
                del self._slots[oldest]

    def _in_consul(self, registration: Registration) -> bool:
        live = self._live.get(registration.service_id)
        return live is not None and registration.matches(live)

    def _pending(self, slot: _Slot) -> bool:
        wants_write = slot.desired is not None and not self._in_consul(slot.desired)
        return self.enabled and (wants_write or bool(slot.stale) or slot.sweep)

    def _ids_of(self, key: Key) -> set[str]:
        return {service_id for service_id, entry in self._live.items() if _key_of(entry) == key}

    async def _token_or_failure(self) -> str | ConsulFailure | None:
        """The ACL token, read anew each time: a mounted Secret's file changes when the token rotates."""
        if self._settings.consul_token is not None:
            return self._settings.consul_token.get_secret_value().strip() or None
        path = self._settings.consul_token_file
        if path is None:
            return None
        try:
            text = await asyncio.to_thread(path.read_text)
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else "not text"
            return ConsulFailure(
                TOKEN_UNREADABLE,
                f"cannot read the Consul ACL token file {path} (MCPFLEET_OPERATOR_CONSUL_TOKEN_FILE): {detail}",
            )
        return text.strip() or None

    def _classify(self, exc: BaseException, operation: str, service: str | None) -> ConsulFailure:
        if isinstance(exc, ConsulFailure):
            return exc
        what = _DOING[operation] + (f" {service}" if service else "")
        if isinstance(exc, ACLPermissionDenied | ACLDisabled):
            if service:
                needed = f'service "{service}" {{ policy = "write" }} (service:write)'
            else:
                needed = "service:read" if operation == "verify" else "service:write on the service"
            return ConsulFailure(
                ACL_DENIED,
                f"Consul denied {what}: {_shorten(str(exc))}. Give the operator's ACL token "
                f"(MCPFLEET_OPERATOR_CONSUL_TOKEN or MCPFLEET_OPERATOR_CONSUL_TOKEN_FILE) a policy with {needed}",
            )
        if isinstance(exc, aiohttp.ClientConnectionError | TimeoutError | ConsulTimeout | OSError):
            return ConsulFailure(
                UNREACHABLE,
                f"cannot reach Consul at {self._settings.consul_address} for {what}: "
                f"{_shorten(str(exc)) or type(exc).__name__}; retrying every {self._settings.consul_retry_seconds:g}s "
                "at most (check MCPFLEET_OPERATOR_CONSUL_ADDRESS and the network path to Consul)",
            )
        if isinstance(exc, ConsulException | aiohttp.ClientError):
            return ConsulFailure(CONSUL_ERROR, f"Consul failed {what}: {_shorten(str(exc))}")
        log.error("unexpected failure talking to Consul (%s)", what, exc_info=exc)
        return ConsulFailure(CONSUL_ERROR, f"unexpected failure {what}: {type(exc).__name__}: {_shorten(str(exc))}")

    async def _call(self, operation: str, request: Awaitable[T], service: str | None = None) -> T:
        """One HTTP call with a deadline, counted, with its failure classified."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS + 1):
                result = await request
        except Exception as exc:
            if _being_cancelled():
                # A cancel that met aiohttp's own timeout can come out as a TimeoutError: it is still a cancel.
                raise asyncio.CancelledError from exc
            failure = self._classify(exc, operation, service)
            self._metrics.operations.labels(operation, "error").inc()
            self._metrics.up.set(0 if failure.reason == UNREACHABLE else 1)
            raise failure from exc
        self._metrics.operations.labels(operation, "ok").inc()
        self._metrics.up.set(1)
        return result

    async def _register(self, registration: Registration, token: str | None) -> None:
        accepted = await self._call(
            "register",
            self._client.agent.service.register(
                registration.name,
                service_id=registration.service_id,
                address=registration.address,
                port=registration.port,
                tags=list(registration.tags),
                meta=dict(registration.meta),
                check=registration.check,
                token=token,
                # The check is part of the registration: a changed check replaces the old one.
                replace_existing_checks=True,
            ),
            registration.name,
        )
        if not accepted:
            raise ConsulFailure(CONSUL_ERROR, f"Consul did not accept the registration of {registration.service_id}")
        self._live[registration.service_id] = _as_listed(registration)
        self._owned.add(registration.service_id)
        log.info("registered %s in Consul as %s", registration.service_id, registration.name)

    async def _deregister(self, service_id: str, token: str | None) -> None:
        live = self._live.get(service_id) or {}
        # False means Consul did not know the id: already gone, which is what was asked.
        await self._call(
            "deregister", self._client.agent.service.deregister(service_id, token=token), live.get("Service")
        )
        self._live.pop(service_id, None)
        self._owned.discard(service_id)
        log.info("deregistered %s from Consul", service_id)

    async def _list(self, token: str | None, expression: str) -> dict[str, Mapping[str, Any]]:
        listed = await self._call("verify", self._client.agent.services(filter_expr=expression, token=token))
        return dict(listed or {})

    async def _converge(self, key: Key, slot: _Slot, token: str | ConsulFailure | None) -> None:
        """One attempt to make Consul match the slot; the outcome lands in slot.state (caller holds the lock)."""
        slot.failure = None
        if self.enabled and self._client is not None:
            try:
                await self._apply(key, slot, token)
            except ConsulFailure as failure:
                slot.failure = failure
        slot.state = self._state_of(slot)
        self._failures = self._failures + 1 if slot.failure is not None else self._failures
        self._update_gauges()
        if slot.failure is not None or self._pending(slot):
            self._wake.set()

    async def _apply(self, key: Key, slot: _Slot, token: str | ConsulFailure | None) -> None:
        if isinstance(token, ConsulFailure):
            raise token
        desired_id = slot.desired.service_id if slot.desired is not None else None
        if slot.desired is not None and not self._in_consul(slot.desired):
            await self._register(slot.desired, token)
        if slot.sweep:
            listed = await self._list(token, _key_filter(key))
            self._live.update(listed)
            slot.stale |= set(listed)
            slot.sweep = False
        # Other registrations of the same MCPServer (say, under the id of its former type) are duplicates.
        slot.stale |= self._ids_of(key)
        slot.stale.discard(desired_id or "")
        for service_id in sorted(slot.stale):
            await self._deregister(service_id, token)
            slot.stale.discard(service_id)

    def _state_of(self, slot: _Slot) -> RegistrationState:
        failure = slot.failure
        if not self.enabled:
            return RegistrationState(
                False, DISABLED, "Consul registration is off: set MCPFLEET_OPERATOR_CONSUL_ADDRESS to turn it on"
            )
        desired = slot.desired
        if desired is not None:
            if self._in_consul(desired):
                note = f" (removing an older registration waits: {failure.message})" if failure else ""
                return RegistrationState(
                    True, REGISTERED, f"registered in Consul as {desired.name}{note}", desired.service_id
                )
            if failure is not None:
                return RegistrationState(False, failure.reason, failure.message, desired.service_id)
            return RegistrationState(False, PENDING, "waiting for the Consul client to start", desired.service_id)
        if not self._pending(slot):
            return RegistrationState(False, DEREGISTERED, "not registered in Consul")
        ids = ", ".join(sorted(slot.stale)) or "this server's registrations"
        message = failure.message if failure else "waiting for the Consul client to start"
        return RegistrationState(
            bool(slot.stale), failure.reason if failure else PENDING, f"deregistering {ids} waits: {message}"
        )

    async def _report(self, key: Key, slot: _Slot) -> RegistrationState:
        """Tell on_state about the slot's current state when it differs from the last one told."""
        state = slot.state
        assert state is not None
        if state == slot.reported:
            return state
        slot.reported = state
        level = logging.INFO if state.reason in (REGISTERED, DEREGISTERED, DISABLED) else logging.WARNING
        log.log(level, "%s/%s: Consul registration %s: %s", key[0], key[1], state.reason, state.message)
        try:
            await self._on_state(key, state)
        except Exception:
            log.exception("%s/%s: recording the Consul registration state failed", key[0], key[1])
        return state

    def _update_gauges(self) -> None:
        desired = [slot.desired for slot in self._slots.values() if slot.desired is not None]
        self._metrics.registrations.labels("desired").set(len(desired))
        self._metrics.registrations.labels("registered").set(sum(self._in_consul(d) for d in desired))
        by_reason = dict.fromkeys(STATE_REASONS, 0)
        for slot in self._slots.values():
            # A finished removal (Deregistered) is no registration state worth counting; a pending one is.
            counted = slot.desired is not None or self._pending(slot)
            if counted and slot.state is not None and slot.state.reason in by_reason:
                by_reason[slot.state.reason] += 1
        for reason, count in by_reason.items():
            self._metrics.states.labels(reason).set(count)

    # ------------------------------------------------------------ background loop

    def _backoff(self) -> float:
        cap = self._settings.consul_retry_seconds
        delay = min(cap, FIRST_RETRY_SECONDS * 2.0 ** min(self._failures, 32))
        return delay * random.uniform(0.75, 1.0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self._settings.consul_retry_seconds
        next_verify = loop.time() + interval * random.uniform(0.8, 1.0)
        retry_at: float | None = None
        while not self._closed():
            if any(self._pending(slot) for slot in self._slots.values()):
                retry_at = retry_at or loop.time() + self._backoff()
            else:
                retry_at, self._failures = None, 0
            deadline = min(next_verify, retry_at) if retry_at is not None else next_verify
            self._wake.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()
                # A failed ensure/remove woke us: schedule its retry, keeping the deadlines already set.
                continue
            except TimeoutError:
                pass
            if self._closed():
                return
            token = await self._token_or_failure()
            if loop.time() >= next_verify:
                await self._verify(token)
                next_verify = loop.time() + interval * random.uniform(0.8, 1.0)
            await self._retry(token)
            retry_at = None

    async def _verify(self, token: str | ConsulFailure | None) -> None:
        """One listing of the services tagged mcpfleet: what is missing or changed gets written again."""
        if isinstance(token, ConsulFailure):
            return
        try:
            listed = await self._list(token, _FLEET_FILTER)
        except ConsulFailure as failure:
            # What Consul holds is unknown now: every registration is written again (and, while Consul stays
            # away, reported as not registered with the reason) until a listing succeeds.
            log.debug("verifying Consul registrations failed: %s", failure.message)
            self._live = {}
            return
        self._live = listed
        self._listed = True
        for service_id, entry in listed.items():
            key = _key_of(entry)
            if key is None:
                continue
            slot = self._slots.get(key)
            if slot is None and service_id not in self._owned:
                continue
            slot = self._slot(key)
            if slot.desired is None or slot.desired.service_id != service_id:
                slot.stale.add(service_id)
                self._settled.pop(key, None)
        self._update_gauges()

    async def _retry(self, token: str | ConsulFailure | None) -> None:
        attempted = failed = 0
        for key, slot in list(self._slots.items()):
            if not self._pending(slot):
                continue
            async with slot.lock:
                if not self._pending(slot):
                    continue
                attempted += 1
                await self._converge(key, slot, token)
            await self._report(key, slot)
            self._settle(key, slot)
            if slot.failure is not None:
                failed += 1
                if slot.failure.reason == UNREACHABLE:
                    break  # Every other key would wait for the same dead connection.
        if attempted and not failed:
            self._failures = 0
