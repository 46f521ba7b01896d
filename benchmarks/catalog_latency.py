"""Catalog latency benchmark: from a server's tool change to the gateway serving it, on a real control plane.

Every part of the path is the real thing. The Kubernetes API is etcd + kube-apiserver + kube-controller-manager
started by the devcluster code (``mcpfleet_cli.devcluster.cluster.ControlPlane``) from the binaries of
``make tools``; the operator is ``.venv/bin/mcpfleet operator`` and the gateway ``.venv/bin/mcpfleet gateway``,
each in its own process. The MCP server runs in this process: the server base (``FleetServer``) with a small
module whose tool list grows by one tool per change, serving streamable HTTP on loopback and writing its tool
report on its Pod through the API server. The Pod is the one the controller manager made for the MCPServer's
Deployment; there is no kubelet, so the benchmark marks it Running and Ready with the pod IP 127.0.0.1, which is
where the operator lists the tools. The gateway follows the catalog ConfigMap with its watch and reaches the
server through ``catalog.endpoint_overrides`` (the cataloged Service URL does not resolve here).

The path measured::

    add a tool, FleetServer.refresh_tools()  ->  Pod annotation mcpfleet.io/tools-digest (the report)
      -> operator: Pod watch, tools/list against the Pod, catalog entry, debounce, ConfigMap revision
      -> gateway: ConfigMap watch, new routing table, notifications/tools/list_changed
      -> the client's tools/list through the gateway lists the new tool

Two phases in one run:

* **paced**: ``--changes`` (50) changes, one at a time. t0 is just before the change; t1 is when a tools/list
  through the gateway first contains the new prefixed tool. The client (a handshake-era session, told on its GET
  stream) lists after each notifications/tools/list_changed, and every 50 ms anyway, so that a lost notification
  shows as a slow sample instead of a hang; each sample says which path saw the tool. The breakdown comes from
  watches this process keeps on the Pod and on the catalog ConfigMap (when the report, then the revision holding
  the tool, became visible), and from the notification's arrival.
* **burst**: ``--burst`` (50) changes back to back, without waiting for anything between them; then the time
  until the gateway serves the final tool list, and the catalog revisions written for the burst (the catalog's
  revision before and after, and the operator's ``mcpfleet_operator_catalog_writes_total``).

Also recorded: the API server's own request counters for ConfigMaps, Pods and MCPServers (``kubectl get --raw
/metrics``), the operator's catalog metrics, and the CPU seconds of each process per phase.

Run from the repository root: ``.venv/bin/python benchmarks/catalog_latency.py --help``.
See docs/benchmarks.md for the figures and how to read them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import psutil  # type: ignore[import-untyped]
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.watch import Watch
from mcp import Client
from mcp.types import ToolListChangedNotification
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field, ValidationError

from mcpfleet_cli.devcluster.cluster import ClusterState, ControlPlane, find_binaries, free_port
from mcpfleet_contracts.catalog import Catalog
from mcpfleet_contracts.mcpserver import GROUP, PLURAL, VERSION, Risk
from mcpfleet_contracts.report import TOOLS_DIGEST_ANNOTATION
from mcpfleet_servers.base.app import FleetServer, build_server
from mcpfleet_servers.base.module import BackendStatus
from mcpfleet_servers.base.run import running
from mcpfleet_servers.base.settings import ServerSettings
from mcpfleet_servers.base.toolkit import Toolset

REPO_ROOT = Path(__file__).resolve().parent.parent
# `python benchmarks/catalog_latency.py` puts benchmarks/ on sys.path, not the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import (  # noqa: E402
    CpuMeter,
    default_bin_dir,
    interrupt,
    machine_info,
    pct,
    source_info,
)

NAMESPACE = "bench"
SERVER = "probe"
PREFIX = "bench"
CATALOG_NAMESPACE = "mcpfleet-system"
CATALOG_NAME = "mcpfleet-catalog"
CATALOG_KEY = "catalog.json"
CRD_FILE = REPO_ROOT / "crds" / "mcpfleet.io_mcpservers.yaml"

POLL_SECONDS = 0.05  # the client's fallback tools/list while no notification comes
CHANGE_TIMEOUT = 30.0  # one change not served within this is a failure, not a sample
START_TIMEOUT = 90.0  # processes, the CRD, the Pod, the first catalog revision
QUIET_SECONDS = 3.0  # after a burst: no new catalog revision for this long means the operator is done
WATCH_SECONDS = 240
TARGET_P50 = 1.0
TARGET_P99 = 3.0

# Every process this script started: the last resort of main() kills what is still running.
SPAWNED: list[subprocess.Popen[bytes]] = []


# ------------------------------------------------------------------ statistics


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(seconds),
        "p50_ms": round(1000 * statistics.median(seconds), 1) if seconds else 0.0,
        "p90_ms": round(1000 * pct(seconds, 0.90), 1),
        "p99_ms": round(1000 * pct(seconds, 0.99), 1),
        "max_ms": round(1000 * max(seconds), 1) if seconds else 0.0,
        "min_ms": round(1000 * min(seconds), 1) if seconds else 0.0,
        "mean_ms": round(1000 * statistics.fmean(seconds), 1) if seconds else 0.0,
    }


# ------------------------------------------------------------------ the server whose tools change


class Probe(BaseModel):
    tool: str = Field(description="The tool that answered.")


class ProbeModule:
    """A server module whose tool list grows while it serves: ``add`` one tool, then ``refresh_tools()``.

    Each tool's function is made once and kept, so a refresh re-registers only what is new.
    """

    type_name = "catalog-probe"
    instructions = "Read-only probe tools that the catalog benchmark adds one by one."

    def __init__(self, names: Sequence[str]) -> None:
        self._functions: dict[str, Callable[[], Awaitable[Probe]]] = {}
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        async def probe() -> Probe:
            return Probe(tool=name)

        probe.__doc__ = f"Answer with this tool's name ({name}); a tool the catalog benchmark added."
        self._functions[name] = probe

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def backend_status(self) -> BackendStatus:
        return BackendStatus(name="none (the tools answer from memory)", reachable=True)

    def toolset(self) -> Toolset:
        tools = Toolset()
        for name, function in self._functions.items():
            tools.tool(risk=Risk.SAFE, read_only=True, idempotent=True, open_world=False, name=name)(function)
        return tools

    def register_extras(self, server: Any) -> None:
        return None


# ------------------------------------------------------------------ what the client and the watches saw


class Inbox:
    """The tools/list_changed notifications of the measuring client's session."""

    def __init__(self) -> None:
        self.count = 0
        self.arrivals: list[float] = []
        self.event = asyncio.Event()  # cleared by the client before each list
        self._news = asyncio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            self.count += 1
            self.arrivals.append(time.perf_counter())
            self.event.set()
            self._news.set()

    async def wait_count(self, count: int, within: float) -> bool:
        """True once at least ``count`` notifications arrived; False after ``within`` seconds without."""
        deadline = time.monotonic() + within
        while self.count < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), timeout=left)
        return True

    def first_after(self, moment: float) -> float | None:
        return next((at for at in self.arrivals if at >= moment), None)


@dataclass
class Tracker:
    """First sightings by this process's own watches: Pod reports by digest, catalog tools and revisions."""

    digests: dict[str, float] = field(default_factory=dict)
    tools: dict[str, tuple[float, int]] = field(default_factory=dict)  # name -> (first seen, revision)
    revisions: dict[int, float] = field(default_factory=dict)
    latest_revision: int = 0
    updated: asyncio.Event = field(default_factory=asyncio.Event)

    def pod(self, obj: Mapping[str, Any]) -> None:
        digest = ((obj.get("metadata") or {}).get("annotations") or {}).get(TOOLS_DIGEST_ANNOTATION)
        if digest and digest not in self.digests:
            self.digests[digest] = time.perf_counter()
            self.updated.set()

    def configmap(self, obj: Mapping[str, Any]) -> None:
        now = time.perf_counter()
        text = (obj.get("data") or {}).get(CATALOG_KEY)
        if text is None:
            return
        try:
            catalog = Catalog.model_validate_json(text)
        except ValidationError as exc:
            print(f"  warning: catalog ConfigMap does not parse: {exc.errors()[0]['msg']}", file=sys.stderr)
            return
        self.revisions.setdefault(catalog.revision, now)
        self.latest_revision = max(self.latest_revision, catalog.revision)
        for server in catalog.servers:
            for tool in server.tools:
                self.tools.setdefault(tool.name, (now, catalog.revision))
        self.updated.set()

    async def wait_for(self, ready: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"timed out after {within:.0f} s waiting for {what}")
            self.updated.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.updated.wait(), timeout=min(left, 1.0))


async def follow_object(
    list_call: Callable[..., Awaitable[Any]], namespace: str, name: str, on_object: Callable[[Mapping[str, Any]], None]
) -> None:
    """List one object, then watch it from that resourceVersion, resuming forever (cancel to stop)."""
    selector = f"metadata.name={name}"
    version: str | None = None
    while True:
        try:
            if version is None:
                response: Any = await list_call(namespace, field_selector=selector, _preload_content=False)
                listing = json.loads(await response.read())
                for item in listing.get("items") or ():
                    on_object(item)
                version = str((listing.get("metadata") or {}).get("resourceVersion") or "") or None
            watch = Watch(return_type="object")
            options = {"field_selector": selector, "resource_version": version, "timeout_seconds": WATCH_SECONDS}
            try:
                async for event in watch.stream(list_call, namespace, allow_watch_bookmarks=True, **options):
                    obj = event.get("raw_object") or {}
                    if event.get("type") == "ERROR":
                        version = None  # 410 Gone: list again
                        break
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        on_object(obj)
            finally:
                await watch.close()
        except ApiException as exc:
            version = None if exc.status == 410 else version
            await asyncio.sleep(0.2)
        except (OSError, TimeoutError, ValueError) as exc:
            print(f"  warning: watch of {namespace}/{name} failed ({exc!r}); resuming", file=sys.stderr)
            await asyncio.sleep(0.5)


# ------------------------------------------------------------------ processes


def mcpfleet_script() -> str:
    script = Path(sys.executable).parent / "mcpfleet"
    return str(script if script.exists() else REPO_ROOT / ".venv" / "bin" / "mcpfleet")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MCP_", "MCPFLEET_", "K8S_", "KUBERNETES_SERVICE_")) and key != "KUBECONFIG"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    SPAWNED.append(proc)
    return proc


async def stop_process(proc: subprocess.Popen[bytes], grace: float = 20.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return await asyncio.to_thread(proc.wait)


def http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return str(response.read().decode()) if int(response.status) == 200 else None
    except (urllib.error.URLError, OSError):
        return None


async def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> float:
    started = time.monotonic()
    while await asyncio.to_thread(http_get, url) is None:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; see {log}")
        if time.monotonic() - started > START_TIMEOUT:
            raise RuntimeError(f"{what} did not answer {url} within {START_TIMEOUT:.0f} s; see {log}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def log_to_file(path: Path) -> None:
    """This process's logs (the in-process server's, uvicorn's) go to a file, not between the progress lines."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def operator_env(kubeconfig: Path, metrics_port: int, debounce: float | None) -> dict[str, str]:
    env = clean_env(
        MCPFLEET_OPERATOR_KUBECONFIG=str(kubeconfig),
        MCPFLEET_OPERATOR_METRICS_PORT=str(metrics_port),
        MCPFLEET_OPERATOR_METRICS_HOST="127.0.0.1",
        MCPFLEET_OPERATOR_LIVENESS_PORT="0",
        MCPFLEET_OPERATOR_CATALOG_NAMESPACE=CATALOG_NAMESPACE,
        MCPFLEET_OPERATOR_CATALOG_NAME=CATALOG_NAME,
    )
    if debounce is not None:
        env["MCPFLEET_OPERATOR_CATALOG_DEBOUNCE_SECONDS"] = str(debounce)
    return env


def gateway_config(workdir: Path, port: int, kubeconfig: Path, server_url: str) -> dict[str, Any]:
    """Anonymous viewers (the probe tools are SAFE reads), audit to a file, the catalog from its ConfigMap."""
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {"anonymous": True, "anonymous_roles": ["viewer"]},
        "audit": {
            "log_path": str(workdir / "gateway-audit.jsonl"),
            "spool_dir": str(workdir / "gateway-spool"),
            "redis_stream": None,
        },
        "catalog": {
            "configmap": {"namespace": CATALOG_NAMESPACE, "name": CATALOG_NAME, "key": CATALOG_KEY},
            "kubeconfig": str(kubeconfig),
            "endpoint_overrides": {f"{NAMESPACE}/{SERVER}": server_url},
        },
    }


def operator_metrics(port: int) -> dict[str, float]:
    """The operator's catalog and tool-report series, flattened to ``name{label=value}`` -> value."""
    text = http_get(f"http://127.0.0.1:{port}/metrics") or ""
    wanted = ("mcpfleet_operator_catalog", "mcpfleet_operator_tool_reports")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(wanted):
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") or sample.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return values


def sync_mean_ms(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """The mean of the operator's own report-to-revision histogram between two readings: from the start of its
    tools/list confirmation to the end of the write (history and pruning included)."""
    name = "mcpfleet_operator_catalog_sync_seconds"
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    return round(1000 * total / count, 1) if count else None


def metric_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {key: round(after[key] - before.get(key, 0.0), 4) for key in sorted(after) if after[key] != before.get(key)}


def apiserver_requests(kubectl: Path, kubeconfig: Path) -> dict[str, float]:
    """The API server's request counters for ConfigMaps, Pods and MCPServers by verb (all clients), from its
    /metrics."""
    done = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "get", "--raw", "/metrics"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(done.stdout):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            resource, verb = sample.labels.get("resource"), sample.labels.get("verb")
            if sample.name != "apiserver_request_total" or resource not in ("configmaps", "pods", "mcpservers"):
                continue
            subresource = sample.labels.get("subresource") or ""
            key = f"{resource}{'/' + subresource if subresource else ''} {verb}"
            counts[key] = counts.get(key, 0.0) + float(sample.value)
    return counts


# ------------------------------------------------------------------ the cluster side


async def api_client(kubeconfig: Path) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return k8s.ApiClient(configuration)


def kubectl(binary: Path, kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        [str(binary), "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


async def prepare_cluster(binary: Path, kubeconfig: Path, core: k8s.CoreV1Api) -> None:
    """The CRD (established), the server's namespace and the catalog's, each with its default ServiceAccount."""
    await asyncio.to_thread(kubectl, binary, kubeconfig, "apply", "-f", str(CRD_FILE))
    established = ("wait", "--for=condition=established", "--timeout=60s", "crd/mcpservers.mcpfleet.io")
    await asyncio.to_thread(kubectl, binary, kubeconfig, *established)
    for namespace in (NAMESPACE, CATALOG_NAMESPACE):
        with contextlib.suppress(ApiException):  # 409: there already
            await core.create_namespace(cast(Any, {"metadata": {"name": namespace}}))


def mcpserver(port: int) -> dict[str, Any]:
    """A built-in type (built-in servers report their tools; custom ones do not) on the probe's port."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MCPServer",
        "metadata": {"name": SERVER, "namespace": NAMESPACE},
        "spec": {
            "type": "k8s-ops",
            "replicas": 1,
            "port": port,
            "toolPrefix": PREFIX,
            "rbac": {"preset": "read-only"},
        },
    }


async def server_pod(core: k8s.CoreV1Api) -> str:
    """The name of the Pod the controller manager made for the MCPServer's Deployment."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pods = await core.list_namespaced_pod(NAMESPACE, label_selector=f"mcpfleet.io/server={SERVER}")
        live = [pod for pod in pods.items if pod.metadata.deletion_timestamp is None]
        if live:
            return str(live[0].metadata.name)
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no Pod for MCPServer {NAMESPACE}/{SERVER} within {START_TIMEOUT:.0f} s (operator log?)")


async def mark_pod_ready(core: k8s.CoreV1Api, pod: str) -> None:
    """Stand in for the kubelet: Running, Ready, and the pod IP where this process serves (loopback)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": now}
    status = {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "conditions": [ready],
    }
    await core.patch_namespaced_pod_status(pod, NAMESPACE, cast(Any, {"status": status}))


# ------------------------------------------------------------------ measuring


async def server_verdict(api: k8s.ApiClient) -> dict[str, Any]:
    """What the operator tells people about the server: its ToolsSynced condition, and its Events by reason
    (occurrences, aggregated Events counted as often as they occurred)."""
    obj: Any = await k8s.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, SERVER)
    conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or ()}
    synced = conditions.get("ToolsSynced") or {}
    events = await k8s.CoreV1Api(api).list_namespaced_event(
        NAMESPACE, field_selector=f"involvedObject.name={SERVER},involvedObject.kind=MCPServer"
    )
    by_reason: dict[str, int] = {}
    for event in events.items:
        by_reason[str(event.reason)] = by_reason.get(str(event.reason), 0) + int(event.count or 1)
    return {
        "tools_synced": {key: synced.get(key) for key in ("status", "reason", "message")},
        "events": by_reason,
    }


def events_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, int]:
    old, new = before["events"], after["events"]
    return {reason: new[reason] - old.get(reason, 0) for reason in sorted(new) if new[reason] != old.get(reason, 0)}


@dataclass
class Session:
    """The measuring client: one handshake-era session with the gateway, and what it was told."""

    client: Client
    inbox: Inbox
    lists: int = 0

    async def names(self) -> set[str]:
        self.lists += 1
        result = await self.client.list_tools(cache_mode="bypass")
        return {tool.name for tool in result.tools}

    async def until_served(self, wanted: set[str], since: float, within: float = CHANGE_TIMEOUT) -> tuple[float, str]:
        """(the moment a tools/list first held every wanted tool, "notice" or "poll": what prompted that list).

        Lists after each list_changed notification, and every POLL_SECONDS without one."""
        deadline = since + within
        while True:
            prompted = "notice"
            if not self.inbox.event.is_set():
                try:
                    await asyncio.wait_for(self.inbox.event.wait(), timeout=POLL_SECONDS)
                except TimeoutError:
                    prompted = "poll"
            self.inbox.event.clear()
            if wanted <= await self.names():
                return time.perf_counter(), prompted
            if time.perf_counter() > deadline:
                missing = sorted(wanted - await self.names())[:5]
                raise RuntimeError(f"the gateway did not serve {missing} within {within:.0f} s")


def since_ms(moment: float | None, t0: float) -> float | None:
    return round(1000 * (moment - t0), 1) if moment is not None else None


async def one_change(
    server: FleetServer, module: ProbeModule, session: Session, tracker: Tracker, name: str
) -> dict[str, Any]:
    """Add one tool and follow it to the gateway; the times of each stage after t0, in ms."""
    qualified = f"{PREFIX}:{name}"
    session.inbox.event.clear()
    t0 = time.perf_counter()
    module.add(name)
    refresh = await server.refresh_tools()
    refreshed = time.perf_counter()
    t1, prompted = await session.until_served({qualified}, t0)
    # This process's own watches may see the report and the revision a little after the gateway served them.
    await tracker.wait_for(
        lambda: refresh.digest in tracker.digests and qualified in tracker.tools, 10, f"{qualified} in the watches"
    )
    catalog_seen, revision = tracker.tools[qualified]
    return {
        "tool": qualified,
        "served_ms": since_ms(t1, t0),
        "seen_by": prompted,
        "server_refresh_ms": since_ms(refreshed, t0),
        "report_seen_ms": since_ms(tracker.digests[refresh.digest], t0),
        "catalog_seen_ms": since_ms(catalog_seen, t0),
        "notice_ms": since_ms(session.inbox.first_after(t0), t0),
        "revision": revision,
        "report": refresh.report.value if refresh.report is not None else None,
    }


def stage_breakdown(samples: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Each stage's own duration (from the previous visible point), summarised over the samples."""

    def stage(end: str, start: str | None) -> list[float]:
        values = []
        for sample in samples:
            stop, begin = sample.get(end), sample.get(start) if start else 0.0
            if stop is not None and begin is not None:
                values.append((stop - begin) / 1000)
        return values

    return {
        "server: register the tool, notify, write the Pod report": summary_ms(stage("server_refresh_ms", None)),
        "report visible to a Pod watch (from t0)": summary_ms(stage("report_seen_ms", None)),
        "operator: report seen -> catalog revision seen": summary_ms(stage("catalog_seen_ms", "report_seen_ms")),
        "gateway: revision seen -> list_changed at the client": summary_ms(stage("notice_ms", "catalog_seen_ms")),
        "client: list_changed -> tools/list holds the tool": summary_ms(stage("served_ms", "notice_ms")),
        "total: t0 -> served": summary_ms(stage("served_ms", None)),
    }


async def warm_up(server: FleetServer, module: ProbeModule, session: Session, tracker: Tracker) -> int:
    """Changes until one notification reaches the session: its GET stream opens in the background after the
    handshake, and a notice sent before that has nowhere to go. Not measured."""
    for attempt in range(1, 6):
        before = session.inbox.count
        await one_change(server, module, session, tracker, f"get_warmup_{attempt}")
        if await session.inbox.wait_count(before + 1, within=2):
            return attempt
    raise RuntimeError("no notifications/tools/list_changed reached the client in 5 changes")


async def paced_phase(
    server: FleetServer, module: ProbeModule, session: Session, tracker: Tracker, args: argparse.Namespace
) -> list[dict[str, Any]]:
    samples = []
    for index in range(args.changes):
        sample = await one_change(server, module, session, tracker, f"get_paced_{index:03d}")
        samples.append(sample)
        print(
            f"  change {index + 1:3d}/{args.changes}: served {sample['served_ms']:7.1f} ms ({sample['seen_by']}); "
            f"report {sample['report_seen_ms']} ms, revision {sample['revision']} at {sample['catalog_seen_ms']} ms",
            flush=True,
        )
        await asyncio.sleep(args.gap)
    return samples


async def burst_phase(
    server: FleetServer,
    module: ProbeModule,
    session: Session,
    tracker: Tracker,
    args: argparse.Namespace,
    metrics_port: int,
) -> dict[str, Any]:
    """``--burst`` changes back to back, then until the gateway serves them all and the operator has settled."""
    names = [f"get_burst_{index:03d}" for index in range(args.burst)]
    wanted = {f"{PREFIX}:{name}" for name in names}
    revision_before = tracker.latest_revision
    metrics_before = await asyncio.to_thread(operator_metrics, metrics_port)
    notices_before = session.inbox.count
    lists_before = session.lists
    reports: dict[str, int] = {}
    session.inbox.event.clear()
    t0 = time.perf_counter()
    for name in names:
        module.add(name)
        refresh = await server.refresh_tools()
        outcome = refresh.report.value if refresh.report is not None else "none"
        reports[outcome] = reports.get(outcome, 0) + 1
    last_change = time.perf_counter()
    served, prompted = await session.until_served(wanted, t0, within=CHANGE_TIMEOUT + args.burst)
    await tracker.wait_for(lambda: wanted <= tracker.tools.keys(), 10, "the burst's tools in the watched catalog")
    final_catalog = max(tracker.tools[name][0] for name in wanted)
    settled = await settle(tracker)
    metrics_after = await asyncio.to_thread(operator_metrics, metrics_port)
    revisions = {rev: at for rev, at in tracker.revisions.items() if rev > revision_before}
    return {
        "changes": args.burst,
        "changes_seconds": round(last_change - t0, 3),
        "reports": reports,
        "served_after_first_change_ms": since_ms(served, t0),
        "served_after_last_change_ms": since_ms(served, last_change),
        "final_catalog_seen_after_last_change_ms": since_ms(final_catalog, last_change),
        "seen_by": prompted,
        "revision_before": revision_before,
        "revision_after": tracker.latest_revision,
        "revisions_written": tracker.latest_revision - revision_before,
        "revisions_seen_by_watch": {str(rev): since_ms(at, t0) for rev, at in sorted(revisions.items())},
        "operator_catalog_writes": metric_delta(metrics_before, metrics_after),
        "notifications": session.inbox.count - notices_before,
        "client_lists": session.lists - lists_before,
        "settled_seconds": round(settled, 2),
    }


async def settle(tracker: Tracker) -> float:
    """Until no new catalog revision appeared for QUIET_SECONDS (bounded): the operator's writes are done."""
    started = time.monotonic()
    while time.monotonic() - started < CHANGE_TIMEOUT:
        seen = tracker.latest_revision
        await asyncio.sleep(QUIET_SECONDS)
        if tracker.latest_revision == seen:
            break
    return time.monotonic() - started


# ------------------------------------------------------------------ the run


@dataclass
class Plane:
    """What the scenario needs of the control plane and the processes around it."""

    state: ClusterState
    kubectl: Path
    workdir: Path

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state.kubeconfig)


async def run_benchmark(args: argparse.Namespace, plane: Plane) -> dict[str, Any]:  # noqa: PLR0915 - one scenario
    task = asyncio.current_task()
    if task is not None:  # SIGTERM to the benchmark: unwind like Ctrl-C, so every process is stopped
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    result: dict[str, Any] = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    kubeconfig, workdir = plane.kubeconfig, plane.workdir
    # The server's Pod report loads KUBECONFIG each time it writes (servers/mcpfleet_servers/base/kube.py).
    os.environ["KUBECONFIG"] = str(kubeconfig)
    background: list[asyncio.Task[None]] = []
    processes: list[subprocess.Popen[bytes]] = []
    async with await api_client(kubeconfig) as api:
        core = k8s.CoreV1Api(api)
        try:
            await prepare_cluster(plane.kubectl, kubeconfig, core)
            metrics_port = free_port()
            operator_log = workdir / "operator.log"
            operator = spawn(
                [mcpfleet_script(), "operator"], operator_env(kubeconfig, metrics_port, args.debounce), operator_log
            )
            processes.append(operator)
            await wait_http(f"http://127.0.0.1:{metrics_port}/metrics", operator, operator_log, "the operator")
            print(f"operator: pid {operator.pid}, log {operator_log}", flush=True)

            port = free_port()
            await k8s.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, cast(Any, mcpserver(port))
            )
            pod = await server_pod(core)
            await mark_pod_ready(core, pod)
            print(f"MCPServer {NAMESPACE}/{SERVER}: Pod {pod} marked Running/Ready at 127.0.0.1:{port}", flush=True)

            tracker = Tracker()
            background.append(asyncio.create_task(follow_object(core.list_namespaced_pod, NAMESPACE, pod, tracker.pod)))
            background.append(
                asyncio.create_task(
                    follow_object(core.list_namespaced_config_map, CATALOG_NAMESPACE, CATALOG_NAME, tracker.configmap)
                )
            )

            baseline = [f"get_base_{index:02d}" for index in range(args.baseline_tools)]
            module = ProbeModule(baseline)
            settings = ServerSettings.load(
                host="127.0.0.1", port=port, pod_name=pod, pod_namespace=NAMESPACE, log_level="WARNING"
            )
            server = build_server(module, settings)
            log_to_file(workdir / "server.log")
            async with running(server):
                started = time.monotonic()
                first = {f"{PREFIX}:{name}" for name in baseline}
                await tracker.wait_for(lambda: first <= tracker.tools.keys(), START_TIMEOUT, "the first catalog")
                result["first_catalog_seconds"] = round(time.monotonic() - started, 2)
                print(f"first catalog revision {tracker.latest_revision} after {result['first_catalog_seconds']} s")

                gateway_port = free_port()
                config_path = workdir / "gateway.json"
                document = gateway_config(workdir, gateway_port, kubeconfig, f"http://127.0.0.1:{port}/mcp")
                config_path.write_text(json.dumps(document, indent=2))
                gateway_log = workdir / "gateway.log"
                gateway = spawn(
                    [mcpfleet_script(), "gateway", "--config", str(config_path)],
                    clean_env(MCPFLEET_GATEWAY_REPLICA="bench", MCPFLEET_GATEWAY_LOG_LEVEL="INFO"),
                    gateway_log,
                )
                processes.append(gateway)
                await wait_http(f"http://127.0.0.1:{gateway_port}/ready", gateway, gateway_log, "the gateway")
                print(f"gateway: pid {gateway.pid}, log {gateway_log}", flush=True)

                meter = CpuMeter(
                    {
                        "operator": psutil.Process(operator.pid),
                        "gateway": psutil.Process(gateway.pid),
                        "kube_apiserver": psutil.Process(plane.state.pids["kube-apiserver"]),
                        "etcd": psutil.Process(plane.state.pids["etcd"]),
                        "kube_controller_manager": psutil.Process(plane.state.pids["kube-controller-manager"]),
                        "benchmark": psutil.Process(),
                    }
                )
                inbox = Inbox()
                async with Client(
                    f"http://127.0.0.1:{gateway_port}/mcp", mode="legacy", message_handler=inbox, cache=None
                ) as client:
                    session = Session(client, inbox)
                    await session.until_served(first, time.perf_counter(), within=START_TIMEOUT)
                    result["warm_up_changes"] = await warm_up(server, module, session, tracker)

                    print(f"paced: {args.changes} changes, {args.gap} s apart after each is served ...", flush=True)
                    api_before = await asyncio.to_thread(apiserver_requests, plane.kubectl, kubeconfig)
                    metrics_before = await asyncio.to_thread(operator_metrics, metrics_port)
                    revision_before = tracker.latest_revision
                    verdict_before = await server_verdict(api)
                    meter.start()
                    samples = await paced_phase(server, module, session, tracker, args)
                    paced_cpu = meter.stop()
                    await settle(tracker)
                    verdict_paced = await server_verdict(api)
                    api_after = await asyncio.to_thread(apiserver_requests, plane.kubectl, kubeconfig)
                    metrics_after = await asyncio.to_thread(operator_metrics, metrics_port)
                    result["paced"] = {
                        "samples": samples,
                        "served": summary_ms([s["served_ms"] / 1000 for s in samples]),
                        "seen_by": {p: sum(s["seen_by"] == p for s in samples) for p in ("notice", "poll")},
                        "stages": stage_breakdown(samples),
                        "revisions_written": tracker.latest_revision - revision_before,
                        "revisions_per_change": round((tracker.latest_revision - revision_before) / args.changes, 2),
                        "operator_metrics": metric_delta(metrics_before, metrics_after),
                        "operator_sync_mean_ms": sync_mean_ms(metrics_before, metrics_after),
                        "apiserver_requests": metric_delta(api_before, api_after),
                        "cpu": paced_cpu,
                        "tools_synced_after": verdict_paced["tools_synced"],
                        "events": events_delta(verdict_before, verdict_paced),
                    }

                    print(f"burst: {args.burst} changes back to back ...", flush=True)
                    meter.start()
                    result["burst"] = await burst_phase(server, module, session, tracker, args, metrics_port)
                    result["burst"]["cpu"] = meter.stop()
                    verdict_burst = await server_verdict(api)
                    result["burst"]["tools_synced_after"] = verdict_burst["tools_synced"]
                    result["burst"]["events"] = events_delta(verdict_paced, verdict_burst)
                ready = await asyncio.to_thread(http_get, f"http://127.0.0.1:{gateway_port}/ready")
                result["gateway_ready"] = json.loads(ready) if ready else None
        finally:
            for job in background:
                job.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for proc in reversed(processes):
                await stop_process(proc)
    result["logs"] = {name: str(workdir / f"{name}.log") for name in ("operator", "gateway", "server")}
    result["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    served = result["paced"]["served"]
    return {
        "p50 <= 1 s": {"value_ms": served["p50_ms"], "ok": served["p50_ms"] <= 1000 * TARGET_P50},
        "p99 <= 3 s": {"value_ms": served["p99_ms"], "ok": served["p99_ms"] <= 1000 * TARGET_P99},
    }


def print_summary(result: dict[str, Any]) -> None:
    machine, source, paced, burst = result["machine"], result["source"], result["paced"], result["burst"]
    line = "=" * 96
    print(f"\n{line}")
    print("mcpfleet catalog latency: a server's tool change -> the gateway serving it, real control plane")
    print(
        f"machine: {machine['cpus']} CPUs, {machine['memory_total_gb']} GB, Python {machine['python']}, "
        f"{machine['kube_apiserver']}, kopf {machine['kopf']}, mcp {machine['mcp']}; load "
        f"{machine['loadavg_at_start']} -> {result.get('loadavg_at_end')}"
    )
    print(f"source: commit {source['commit']}, uncommitted: {len(source['uncommitted'])} files")
    debounce = result["settings"]["debounce"]
    print(f"operator catalog debounce: {'default (0.2 s)' if debounce is None else f'{debounce} s'}")
    print("-" * 96)
    served = paced["served"]
    print(
        f"paced, {served['n']} changes: served p50 {served['p50_ms']} ms, p90 {served['p90_ms']} ms, "
        f"p99 {served['p99_ms']} ms, max {served['max_ms']} ms (seen by {paced['seen_by']})"
    )
    print(f"{'stage':58s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for name, row in paced["stages"].items():
        print(f"  {name:56s} {row['p50_ms']:8.1f} {row['p90_ms']:8.1f} {row['p99_ms']:8.1f} {row['max_ms']:8.1f}")
    print(
        "  (operator's own histogram, confirmation start -> revision written: "
        f"mean {paced['operator_sync_mean_ms']} ms)"
    )
    print(
        f"catalog revisions: {paced['revisions_written']} for {served['n']} changes "
        f"({paced['revisions_per_change']} per change); operator: {paced['operator_metrics']}"
    )
    print(f"API requests (all clients) during the paced phase: {paced['apiserver_requests']}")
    print(f"CPU during the paced phase: {paced['cpu']}")
    print(
        f"MCPServer Events during the paced phase: {paced['events']}; ToolsSynced after: {paced['tools_synced_after']}"
    )
    print("-" * 96)
    print(
        f"burst, {burst['changes']} changes in {burst['changes_seconds']} s: served "
        f"{burst['served_after_first_change_ms']} ms after the first change, "
        f"{burst['served_after_last_change_ms']} ms after the last ({burst['seen_by']})"
    )
    print(
        f"catalog revisions {burst['revision_before']} -> {burst['revision_after']}: "
        f"{burst['revisions_written']} written for {burst['changes']} changes"
    )
    print(f"operator metrics over the burst: {burst['operator_catalog_writes']}")
    print(f"revisions seen (ms after the first change): {burst['revisions_seen_by_watch']}")
    print(f"reports: {burst['reports']}; notifications to the client: {burst['notifications']}")
    print(f"CPU during the burst: {burst['cpu']}")
    print(f"MCPServer Events during the burst: {burst['events']}; ToolsSynced after: {burst['tools_synced_after']}")
    print("-" * 96)
    for name, check in result["targets"].items():
        print(f"target {name}: {check['value_ms']} ms {'met' if check['ok'] else 'MISSED'}")
    print(f"logs: {result['logs']} (tracebacks: {result['log_tracebacks']})")
    print(line)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--changes", type=int, default=50, help="paced changes, one at a time (default 50)")
    parser.add_argument("--burst", type=int, default=50, help="changes made back to back (default 50)")
    parser.add_argument(
        "--gap", type=float, default=0.5, help="seconds between a change being served and the next (default 0.5)"
    )
    parser.add_argument("--baseline-tools", type=int, default=10, help="tools the server starts with (default 10)")
    parser.add_argument(
        "--debounce",
        type=float,
        default=None,
        help="MCPFLEET_OPERATOR_CATALOG_DEBOUNCE_SECONDS (default: the operator's own, 0.2)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the full result as JSON to this file")
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=None,
        help="etcd/kube-apiserver/kube-controller-manager/kubectl directory (default: $MCPFLEET_TOOLS_BIN, else "
        "`python3 hack/tools/tools.py bindir`)",
    )
    args = parser.parse_args(argv)
    if args.changes < 1 or args.burst < 1 or args.baseline_tools < 1 or args.gap < 0:
        parser.error("--changes, --burst and --baseline-tools must be at least 1, --gap at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    binaries = find_binaries(args.bin_dir or default_bin_dir())
    wall = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="mcpfleet-bench-catalog-"))
    # SIGTERM before the event loop runs (while the control plane starts) unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, interrupt)
    machine = machine_info(binaries, ("kopf", "mcp", "kubernetes_asyncio"))
    source = source_info("operator", "servers", "contracts", "cli", "benchmarks")
    # Attached: the components die with this thread, so up() runs here, in the main thread, not in a worker.
    control_plane = ControlPlane(workdir / "cluster", binaries)
    try:
        print(f"control plane: starting in {control_plane.root} ...", flush=True)
        state = control_plane.up(attached=True)
        print(f"control plane: {state.server} ready", flush=True)
        result = asyncio.run(run_benchmark(args, Plane(state, binaries["kubectl"], workdir)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: stopping the operator, the gateway and the control plane", file=sys.stderr)
        return 130
    finally:
        for proc in SPAWNED:  # normally stopped already; not if the loop itself was torn down
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        control_plane.down()
    result["machine"] = machine
    result["source"] = source
    result["log_tracebacks"] = {
        name: sum(1 for line in Path(path).read_text(errors="replace").splitlines() if "Traceback" in line)
        for name, path in result["logs"].items()
        if Path(path).exists()
    }
    result["targets"] = targets(result)
    result["benchmark_wall_seconds"] = round(time.monotonic() - wall, 1)
    python = Path(sys.executable)
    shown = python.relative_to(REPO_ROOT) if python.is_relative_to(REPO_ROOT) else python
    result["command"] = " ".join([str(shown), *sys.argv])
    print_summary(result)
    print(f"benchmark wall time: {result['benchmark_wall_seconds']} s; work directory {workdir}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"result: {args.json}")
    return 0 if all(check["ok"] for check in result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
