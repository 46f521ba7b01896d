"""Following the catalog ConfigMap through the Kubernetes API instead of a mounted file.

A GET reads the ConfigMap, then a watch (fieldSelector on its name) follows it from that resourceVersion,
resumed from the last one seen whenever the API server ends the stream. A 410 Gone (the version was
compacted away) reads the object again. Failures retry with jittered exponential backoff up to 30 s and every
request has a deadline. Each new text goes to the gateway, which validates it exactly as it validates the
file: an invalid one keeps the last good catalog serving. A deleted ConfigMap or an unreachable API server
keeps the last catalog serving too; both are reported as problems until the ConfigMap is back.

The API client is made when the watch starts (in-cluster credentials in a Pod, else a kubeconfig), never at
import time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch
from prometheus_client import CollectorRegistry, Counter, Gauge

from mcpfleet_gateway.config import CatalogSource, ConfigMapRef
from mcpfleet_gateway.upstreams.resilience import backoff_delays

log = logging.getLogger(__name__)

WATCH_SECONDS: Final = 290
"""How long the API server is asked to keep one watch open; it is then resumed from the last resourceVersion."""
WATCH_SLACK_SECONDS: Final = 10.0
"""A watch is abandoned this long after it should have ended, in case the server does not end it."""
REQUEST_SECONDS: Final = 10.0
CONNECT_SECONDS: Final = 5.0
RETRY_BASE_SECONDS: Final = 0.2
RETRY_CAP_SECONDS: Final = 30.0
SHORT_WATCH_SECONDS: Final = 1.0
"""A watch that ends sooner than this without news is resumed after a backoff, not at once."""

TextHandler = Callable[[str], Awaitable[object]]
ProblemHandler = Callable[[str | None], None]
_ERRORS: Final = (ApiException, aiohttp.ClientError, OSError, TimeoutError, ValueError, k8s_config.ConfigException)


class CatalogWatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "mcpfleet_gateway_catalog_source_up",
            "1 while the catalog ConfigMap can be read and watched, 0 while the Kubernetes API is unreachable or the "
            "ConfigMap is missing (the last good catalog keeps serving).",
            registry=registry,
        )
        self.events = Counter(
            "mcpfleet_gateway_catalog_watch_events",
            "Watch events of the catalog ConfigMap by type (ADDED, MODIFIED, DELETED, BOOKMARK).",
            ["type"],
            registry=registry,
        )
        self.restarts = Counter(
            "mcpfleet_gateway_catalog_watch_restarts",
            "Times the catalog watch started over, by reason (expired: 410 Gone, error: the API failed).",
            ["reason"],
            registry=registry,
        )


class _Gone(Exception):
    """The resourceVersion to resume from is too old: read the object again."""


def _retry_delays() -> Iterator[float]:
    return backoff_delays(sys.maxsize, RETRY_BASE_SECONDS, RETRY_CAP_SECONDS)


async def load_api_client(source: CatalogSource) -> k8s.ApiClient:
    """In-cluster credentials unless catalog.kubeconfig is set; else that file, $KUBECONFIG or ~/.kube/config."""
    configuration = k8s.Configuration()
    if source.kubeconfig is None:
        try:
            await asyncio.to_thread(
                k8s_config.load_incluster_config,
                client_configuration=configuration,
            )
        except k8s_config.ConfigException:
            pass
        else:
            return k8s.ApiClient(configuration=configuration)
    config_file = str(source.kubeconfig) if source.kubeconfig else os.environ.get("KUBECONFIG") or "~/.kube/config"
    await k8s_config.load_kube_config(
        config_file=config_file, context=source.context, client_configuration=configuration
    )
    return k8s.ApiClient(configuration=configuration)


def configmap_text(ref: ConfigMapRef, obj: Mapping[str, Any]) -> str | None:
    """The catalog text under the key (``data``, or base64 ``binaryData``); None when the key is absent."""
    data = obj.get("data") or {}
    if ref.key in data:
        return str(data[ref.key])
    binary = obj.get("binaryData") or {}
    if ref.key in binary:
        try:
            return base64.b64decode(binary[ref.key], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"binaryData.{ref.key} is not base64 of UTF-8 text: {exc}") from None
    return None


def _spelled_as_client_go(list_call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The list call with ``watch=true`` as kubectl and client-go write it; the client library would send
    ``watch=True``, which the API server accepts but stricter implementations of the API do not."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("watch") is True:
            kwargs["watch"] = "true"
        return await list_call(*args, **kwargs)

    return call


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"the Kubernetes API answered {exc.status} {exc.reason or ''}".rstrip()
    if isinstance(exc, TimeoutError):
        return "the Kubernetes API did not answer in time"
    if isinstance(exc, k8s_config.ConfigException):
        return f"no Kubernetes credentials ({exc}); set catalog.kubeconfig or run in a cluster"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"the Kubernetes API is unreachable ({text[:300]})"


class ConfigMapWatch:
    """Follows one ConfigMap key and hands every text to ``on_text``; ``on_problem`` says what is wrong (or None)."""

    def __init__(
        self, source: CatalogSource, on_text: TextHandler, on_problem: ProblemHandler, metrics: CatalogWatchMetrics
    ) -> None:
        if source.configmap is None:
            raise ValueError("catalog.configmap is not set")
        self.source = source
        self.ref: ConfigMapRef = source.configmap
        self._on_text = on_text
        self._on_problem = on_problem
        self.metrics = metrics
        self.synced = asyncio.Event()
        """Set after the first read, whether it found the catalog or failed (a start never waits long)."""
        self._delays = _retry_delays()
        self._problem: str | None = None

    @property
    def where(self) -> str:
        return f"configmap {self.ref.namespace}/{self.ref.name}"

    async def run(self) -> None:
        """Follow the ConfigMap until cancelled."""
        api: k8s.ApiClient | None = None
        try:
            while True:
                try:
                    if api is None:
                        api = await load_api_client(self.source)
                    await self._follow(k8s.CoreV1Api(api))
                except Exception as exc:
                    if not isinstance(exc, _ERRORS):
                        # Unexpected, so with its traceback; following the catalog must not end on it.
                        log.exception("catalog %s: following it failed", self.where)
                    self.metrics.restarts.labels(reason="error").inc()
                    self._report(f"catalog {self.where}: {_describe(exc)}; serving the last known catalog")
                    self.metrics.up.set(0)
                    self.synced.set()
                    await asyncio.sleep(next(self._delays))
        finally:
            if api is not None:
                with contextlib.suppress(*_ERRORS):
                    await api.close()

    async def _follow(self, v1: k8s.CoreV1Api) -> None:
        """Read, then watch from what was read; read again when the watch's version expired."""
        while True:
            version = await self._read(v1)
            self._delays = _retry_delays()
            self.synced.set()
            try:
                while True:
                    version = await self._watch(v1, version)
            except _Gone:
                self.metrics.restarts.labels(reason="expired").inc()
                log.info("catalog %s: watch version expired; reading it again", self.where)

    async def _read(self, v1: k8s.CoreV1Api) -> str | None:
        # The raw answer, not the generated model: the catalog is all that is needed from it.
        # With _preload_content=False the client returns aiohttp's response and checks no status.
        response: aiohttp.ClientResponse = await v1.read_namespaced_config_map(  # type: ignore[assignment]
            self.ref.name,
            self.ref.namespace,
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=REQUEST_SECONDS, sock_connect=CONNECT_SECONDS),
        )
        async with response:
            if response.status == 404:
                self._missing("does not exist")
                self.metrics.up.set(0)
                return None
            if not 200 <= response.status < 300:
                raise ApiException(status=response.status, reason=response.reason)
            obj = await response.json(content_type=None)
        if not isinstance(obj, dict):
            raise ValueError("the Kubernetes API answered a ConfigMap read with something else than an object")
        self.metrics.up.set(1)
        await self._content(obj)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        return str(version) if version else None

    async def _watch(self, v1: k8s.CoreV1Api, version: str | None) -> str | None:
        """One watch stream; returns the version to resume from when the server ends it."""
        options: dict[str, Any] = {
            "field_selector": f"metadata.name={self.ref.name}",
            "timeout_seconds": WATCH_SECONDS,
            "allow_watch_bookmarks": True,
            "_request_timeout": aiohttp.ClientTimeout(
                total=WATCH_SECONDS + WATCH_SLACK_SECONDS, sock_connect=CONNECT_SECONDS
            ),
        }
        if version:
            options["resource_version"] = version
        began = asyncio.get_running_loop().time()
        news = False
        watch = Watch(return_type="object")
        try:
            async for event in watch.stream(
                _spelled_as_client_go(v1.list_namespaced_config_map), self.ref.namespace, **options
            ):
                kind, obj = str(event.get("type")), event.get("raw_object") or {}
                self.metrics.events.labels(type=kind).inc()
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version or "") or None
                # The field selector is the server's filter; an emulator may ignore it, so check the name too.
                if kind == "BOOKMARK" or meta.get("name") != self.ref.name:
                    continue
                news = True
                if kind in ("ADDED", "MODIFIED"):
                    self.metrics.up.set(1)
                    await self._content(obj)
                elif kind == "DELETED":
                    self.metrics.up.set(0)
                    self._missing("was deleted")
        except TimeoutError:
            pass  # the client-side bound of one stream: resume
        except ApiException as exc:
            if exc.status == 410:
                raise _Gone from None
            raise
        finally:
            await watch.close()
        if not news and asyncio.get_running_loop().time() - began < SHORT_WATCH_SECONDS:
            await asyncio.sleep(next(self._delays))
        return version

    async def _content(self, obj: Mapping[str, Any]) -> None:
        try:
            text = configmap_text(self.ref, obj)
        except ValueError as exc:
            self._report(f"catalog {self.where}: {exc}; serving the last good catalog")
            return
        if text is None:
            self._report(
                f"catalog {self.where} has no key {self.ref.key!r}; serving the last good catalog "
                "(set catalog.configmap.key to the key the operator writes)"
            )
            return
        self._report(None)
        await self._on_text(text)

    def _missing(self, what: str) -> None:
        self._report(f"catalog {self.where} {what}; serving the last good catalog")

    def _report(self, problem: str | None) -> None:
        if problem != self._problem:
            if problem is None:
                log.info("catalog %s: readable again", self.where)
            else:
                log.warning("%s", problem)
        self._problem = problem
        self._on_problem(problem)
