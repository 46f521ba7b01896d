"""Fixtures for the k8s-ops server against kmock's Kubernetes emulator.

The emulator here adds, on top of tests.emulator.ApiServerEmulator, the API-server behaviour these tools
rely on and kmock does not have: ``limit``/``continue`` chunked lists (switchable, to test both the
server-side paging and the in-memory fallback), label selectors on chunked lists, ``dryRun=All``
(computes the answer, stores nothing), and the ``pods/log`` subresource (from ``logs``; a pod without
a node gets the API server's 400 "does not have a host assigned").
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import pytest
from kmock._internal import dicts, enums, rendering

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_servers.base.app import FleetServer
from mcpfleet_servers.base.paging import Budget
from mcpfleet_servers.base.run import configure_logging
from mcpfleet_servers.base.settings import ServerSettings
from mcpfleet_servers.k8s_ops.client import labels_match
from mcpfleet_servers.k8s_ops.server import K8sOpsServer
from mcpfleet_servers.k8s_ops.settings import K8sOpsSettings
from tests.emulator import APPLY_PATCH, ApiServerEmulator, declare_resources, serve_namespace_objects, store_object
from tests.integration.fleets import started_fleets

pytestmark = pytest.mark.integration


def _status(code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None) -> aiohttp.web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
        "details": {"causes": causes or []},
    }
    return aiohttp.web.json_response(body, status=code)


@attrs.define(kw_only=True)
class K8sOpsEmulator(ApiServerEmulator):
    chunked_lists: bool = True
    logs: dict[tuple[str, str], bytes] = attrs.field(factory=dict)

    def stored(self, plural: str, namespace: str | None, name: str, group: str = "", version: str = "v1") -> Any:
        import kmock  # noqa: PLC0415 - local: only the tests' helper needs the public name

        key = (kmock.resource(group=group, version=version, plural=plural), namespace, name)
        obj = self.objects[key] if key in self.objects else None  # noqa: SIM401
        return None if obj is None or obj.deleted else obj.raw

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.subresource == "log" and request.method == enums.method.GET:
            return self._serve_log(request)
        if request.resource is not None and request.params.get("dryRun") == "All":
            return self._dry_run(request)
        if request.action == enums.action.LIST and self.chunked_lists and "limit" in request.params:
            return await self._chunked_list(request)
        return await super()._handle(request)

    def _serve_log(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        pod = self.stored("pods", request.namespace, str(request.name))
        if pod is None:
            return _status(404, "NotFound", f'pods "{request.name}" not found')
        if not (pod.get("spec") or {}).get("nodeName"):
            return _status(400, "BadRequest", f"pod {request.name} does not have a host assigned")
        text = self.logs.get((str(request.namespace), str(request.name)), b"")
        if "limitBytes" in request.params:
            text = text[: int(request.params["limitBytes"])]
        return aiohttp.web.Response(body=text, content_type="text/plain")

    def _dry_run(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        data = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
        meta = data.get("metadata") or {}
        namespace = request.namespace or meta.get("namespace")
        name = request.name or meta.get("name")
        assert request.resource is not None
        key: Any = (request.resource, namespace, name)
        existing = self.objects[key] if key in self.objects else None  # noqa: SIM401
        alive = existing is not None and not existing.deleted
        if request.method == enums.method.POST:
            if alive:
                return _status(409, "AlreadyExists", f'{request.resource.plural} "{name}" already exists')
            return aiohttp.web.json_response(data, status=201)
        if request.method == enums.method.PATCH:
            if alive:
                assert existing is not None
                return aiohttp.web.json_response(dicts.patch_dict(copy.deepcopy(existing.raw), data))
            if request.headers.get("Content-Type", "").startswith(APPLY_PATCH):
                meta.setdefault("namespace", namespace)
                return aiohttp.web.json_response(data, status=201)
            return _status(404, "NotFound", f'{request.resource.plural} "{name}" not found')
        return _status(405, "MethodNotAllowed", "dry run of this method is not emulated")

    async def _chunked_list(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        answer: Any = await self._serve_list(request)
        items = [
            i
            for i in answer["items"]
            if labels_match((i.get("metadata") or {}).get("labels") or {}, request.params.get("labelSelector"))
        ]
        items.sort(key=lambda i: ((i.get("metadata") or {}).get("namespace") or "", i["metadata"]["name"]))
        start = int(request.params.get("continue") or 0)
        limit = int(request.params["limit"])
        chunk = items[start : start + limit]
        end = start + len(chunk)
        meta: dict[str, Any] = {"resourceVersion": "1"}
        if end < len(items):
            meta["continue"] = str(end)
            meta["remainingItemCount"] = len(items) - end
        return aiohttp.web.json_response({"kind": "List", "apiVersion": "v1", "metadata": meta, "items": chunk})


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    return {"cls": K8sOpsEmulator}


@pytest.fixture
def emulator(kmock: K8sOpsEmulator, monkeypatch: pytest.MonkeyPatch) -> K8sOpsEmulator:
    serve_namespace_objects(monkeypatch)
    declare_resources(kmock)
    return kmock


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
        "contexts": [
            {"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}},
            {"name": "second", "context": {"cluster": "emulator", "user": "tester"}},
        ],
        "current-context": "emulator",
    }
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def kubeconfig(emulator: K8sOpsEmulator, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", str(emulator.url).rstrip("/"))


@pytest.fixture
def settings(kubeconfig: Path) -> K8sOpsSettings:
    return K8sOpsSettings(kubeconfig_path=str(kubeconfig), namespace="team-a", exec_enabled=True)


@pytest.fixture
def budget() -> Budget:
    return Budget(max_items=200, max_bytes=64 * 1024)


@pytest.fixture
async def server(settings: K8sOpsSettings, budget: Budget) -> AsyncIterator[K8sOpsServer]:
    module = K8sOpsServer(settings, budget)
    await module.start()
    yield module
    await module.close()


@pytest.fixture
async def closed_port_server(tmp_path: Path, budget: Budget) -> AsyncIterator[K8sOpsServer]:
    port = free_port()  # closed again once found: nothing listens there
    kubeconfig = write_kubeconfig(tmp_path / "dead-kubeconfig", f"http://127.0.0.1:{port}")
    module = K8sOpsServer(
        K8sOpsSettings(kubeconfig_path=str(kubeconfig), request_timeout_seconds=3, probe_timeout_seconds=1), budget
    )
    await module.start()
    yield module
    await module.close()


async def call(server: K8sOpsServer, tool: str, **kwargs: Any) -> Any:
    """A tool through the Toolset, as the base will call it."""
    return await server.toolset()[tool].fn(**kwargs)


put = store_object


def pod(name: str, namespace: str = "team-a", node: str | None = "node-1", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": spec,
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0}]},
        **extra,
    }


# ------------------------------------------------------------------ the module behind a real MCP server

_SESSION_ENV_PREFIXES = ("MCP_", "K8S_", "POD_", "MCPFLEET_SERVER_NAME")

MakeFleet = Callable[..., Awaitable[FleetServer]]


@pytest.fixture
def session_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MCP_*/K8S_* variable of the developer's shell leaks into the settings; tests set their own."""
    for name in list(os.environ):
        if name.upper().startswith(_SESSION_ENV_PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
async def make_fleet(session_env: pytest.MonkeyPatch, kubeconfig: Path) -> AsyncIterator[MakeFleet]:
    """A started K8sOpsServer inside the real FleetServer, as ``mcpfleet server k8s-ops`` builds it.

    Keywords are ServerSettings overrides (MCP_* environment variables still apply beneath them);
    ``k8s`` holds K8sOpsSettings values on top of the emulator's kubeconfig, namespace team-a and exec.
    """
    async with started_fleets() as fleets:

        async def make(k8s: dict[str, Any] | None = None, **overrides: Any) -> FleetServer:
            values: dict[str, Any] = {"kubeconfig_path": str(kubeconfig), "namespace": "team-a", "exec_enabled": True}
            settings = K8sOpsSettings(**(values | (k8s or {})))
            return await fleets.start(lambda budget: K8sOpsServer(settings, budget), **overrides)

        yield make


@pytest.fixture
def server_log(session_env: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What the server's own log handler writes (the one `mcpfleet server` installs), at DEBUG."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging(ServerSettings.load(log_level="DEBUG"), stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
