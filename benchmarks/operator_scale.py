"""Operator scale benchmark: a cold start against a backlog of MCPServer objects.

The Kubernetes API is kmock's emulator (``tests.emulator.ApiServerEmulator``),
served over HTTP from this process's event loop. The operator is the real
thing: ``.venv/bin/mcpfleet operator`` in its own process, pointed at the
emulator through a kubeconfig, exactly as it runs outside a cluster.

Scenario (the harder case, on purpose): all N objects exist *before* the
operator starts, as after an operator upgrade or an outage. The benchmark then
measures

* the time until every object is reconciled (status.observedGeneration equals
  metadata.generation and status.phase is set), read from the emulator's memory;
* the operator process's peak RSS (psutil every 100 ms, and VmHWM at the end);
* the API requests the operator made during that first pass, per object, by
  verb and resource (writes and reads), and what each MCPServer patch changed;
* the writes during an idle period afterwards (nothing changes: there should be none);
* the CPU of both processes, including the emulator's (it shares this process).

Run from the repository root: ``.venv/bin/python benchmarks/operator_scale.py --help``.
See docs/benchmarks.md for the figures and how to read them.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/operator_scale.py` puts benchmarks/ on sys.path, not the repository root;
# the emulator lives in the `tests` package at the root, so the root goes first.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterable, Mapping, Sequence  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from importlib.metadata import version  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp.web  # noqa: E402
import attrs  # noqa: E402
import kmock  # noqa: E402
import psutil  # type: ignore[import-untyped]  # noqa: E402
from benchmarks.common import source_info, vm_hwm_bytes  # noqa: E402
from kmock import Request  # noqa: E402
from kmock._internal.rendering import ReactionMismatchError  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tests.emulator import ApiServerEmulator, declare_resources  # noqa: E402

from mcpfleet_cli.devcluster.cluster import free_port  # noqa: E402
from mcpfleet_contracts.mcpserver import parse_spec  # noqa: E402
from mcpfleet_operator.builders.children import build_children  # noqa: E402
from mcpfleet_operator.builders.model import MCPSERVER, BuildDefaults, Owner  # noqa: E402
from mcpfleet_operator.kube import KubeClient, KubeError, load_api_client  # noqa: E402
from mcpfleet_operator.settings import OperatorSettings  # noqa: E402

TARGET_SECONDS = 60.0
TARGET_RSS_MB = 200.0
TARGET_IDLE_WRITES = 0
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
MB = 1024 * 1024
SAMPLE_INTERVAL = 0.1
SETTLE_QUIET = 3.0  # seconds without a write after which the first pass counts as over
SETTLE_MAX = 60.0
MCPSERVER_PLURAL = MCPSERVER.plural
MCPSERVER_RESOURCE = kmock.resource(MCPSERVER.group, MCPSERVER.version, MCPSERVER.plural)

# Every operator process this script started: the last resort of main() kills what is still running.
SPAWNED: list[subprocess.Popen[bytes]] = []


# ------------------------------------------------------------------ the fleet


def build_spec(index: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One MCPServer spec of a realistic fleet: (kind label, spec on the wire)."""
    roll = rng.random()
    if roll < 0.05:
        return "external", {
            "type": "custom",
            "endpoint": f"https://mcp-{index}.tools.example.com/mcp",
            "toolPrefix": f"ext{index}",
        }
    if roll < 0.37:
        spec: dict[str, Any] = {"type": "k8s-ops", "config": {"k8sOps": {"readOnly": rng.random() < 0.6}}}
        if rng.random() < 0.25:
            spec["rbac"] = {"preset": "operator"}
        elif rng.random() < 0.25:
            spec["rbac"] = {"scope": "Namespace"}
        kind = "k8s-ops"
    elif roll < 0.59:
        monitoring: dict[str, Any] = {"prometheusUrl": "http://prometheus.monitoring:9090"}
        if rng.random() < 0.5:
            monitoring["alertmanagerUrl"] = "http://alertmanager.monitoring:9093"
        if rng.random() < 0.3:
            monitoring["grafanaUrl"] = "http://grafana.monitoring:3000"
            monitoring["grafanaTokenSecret"] = {"name": "grafana-token", "key": "token"}
        spec = {"type": "monitoring", "config": {"monitoring": monitoring}}
        kind = "monitoring"
    elif roll < 0.80:
        cmdb: dict[str, Any] = {"backend": "kubernetes"}
        if rng.random() < 0.4:
            cmdb = {
                "backend": "rest",
                "url": "https://cmdb.example.com/api",
                "tokenSecret": {"name": "cmdb-token", "key": "token"},
            }
        spec = {"type": "cmdb", "config": {"cmdb": cmdb}}
        kind = "cmdb"
    else:
        spec = {"type": "custom", "image": f"registry.example.com/team/mcp-tool-{index % 7}:1.{index % 5}.0"}
        if rng.random() < 0.5:
            spec["config"] = {"custom": {"LOG_LEVEL": "info", "UPSTREAM_URL": f"https://api-{index % 3}.example.com"}}
        if rng.random() < 0.15:
            spec["transport"] = "stdio"
        elif rng.random() < 0.3:
            spec["healthPath"] = "/healthz"
        kind = "custom"
    if rng.random() < 0.2:
        spec["networkPolicy"] = {"enabled": True}
    if rng.random() < 0.2:
        spec["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    return kind, spec


@dataclass
class Fleet:
    manifests: list[dict[str, Any]]
    kinds: Counter[str]
    expected_children: int  # child objects the builders want for the whole fleet (creates on a cold start)


def build_fleet(count: int, namespaces: int, seed: int) -> Fleet:
    rng = random.Random(seed)
    manifests: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    expected = 0
    for index in range(count):
        kind, spec = build_spec(index, rng)
        name = f"{kind}-{index:05d}"
        namespace = f"team-{index % namespaces:02d}"
        parsed = parse_spec(spec)  # every spec is one the operator accepts
        owner = Owner(name=name, namespace=namespace, uid="bench")
        expected += sum(1 for child in build_children(owner, parsed, BuildDefaults()).values() if child is not None)
        kinds[kind] += 1
        manifests.append(
            {
                "apiVersion": MCPSERVER.api_version,
                "kind": MCPSERVER.kind,
                "metadata": {"name": name, "namespace": namespace, "labels": {"fleet": "bench"}},
                "spec": spec,
            }
        )
    return Fleet(manifests, kinds, expected)


# ------------------------------------------------------------ the emulator


def reaches(view: kmock.View, request: Request) -> bool:
    """``request in view`` without replaying the request history (kmock's own check is O(requests)).

    Exact for the chains the emulator registers (Priority and plain Filter links down to the root);
    anything else falls back to kmock's own check.
    """
    while True:
        if isinstance(view, kmock.Root):
            return True  # the root sees every request: RawHandler.__call__ appended it before handling
        if type(view) is kmock.Priority:
            view = view._source
        elif type(view) is kmock.Filter:
            if not view.criteria(request):
                return False
            view = view._source
        else:
            return request in view


@attrs.define(kw_only=True)
class _DirectDispatch(kmock.RawHandler):
    """kmock's RawHandler._handle with :func:`reaches` in place of ``request in payload._source``.

    kmock decides which reaction serves a request with ``request in view``, which replays every
    request served so far through the view's filters: each request costs O(requests so far), the
    whole run O(requests**2). At 50 MCPServers (~1,000 requests) the stock emulator already burns a
    full core and needs about a minute; 1,000 objects (~20,000 requests) would take hours. Same reactions,
    same order, same responses: only the membership test changes.
    """

    async def _handle(self, request: Request) -> aiohttp.web.StreamResponse:
        priorities = [payload.priorities for payload in self._payloads]
        width = max((len(priority) for priority in priorities), default=0)
        keys = [tuple(-p for p in priority) + (0,) * (width - len(priority)) for priority in priorities]
        for index in sorted(range(len(keys)), key=keys.__getitem__):
            payload = self._payloads[index]
            if reaches(payload._source, request) and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        raise NotImplementedError("no reaction matches the request")


@attrs.define(kw_only=True)
class IndexedEmulator(ApiServerEmulator, _DirectDispatch):
    """The project's emulator, unchanged, routing requests through :class:`_DirectDispatch`."""


# ----------------------------------------------------------- the API traffic


def request_key(request: Request) -> str:
    plural = request.resource.plural if request.resource is not None else request.url.path
    sub = f"/{request.subresource}" if request.subresource else ""
    return f"{request.method.value} {plural}{sub}"


def client_of(request: Request) -> str:
    agent = str(request.headers.get("User-Agent", ""))
    return "kopf" if agent.startswith("kopf/") else "mcpfleet"


def patch_shape(request: Request) -> str:
    """What a write to an MCPServer changed, e.g. ``metadata.finalizers`` or ``status``."""
    if isinstance(request.data, list):  # a JSON patch: kopf's finalizer patches are these
        ops = [op for op in request.data if isinstance(op, Mapping)]
        return "json-patch " + ", ".join(f"{op.get('op')} {op.get('path')}" for op in ops)
    data = request.data if isinstance(request.data, Mapping) else {}
    parts: list[str] = []
    for key, value in data.items():
        if key == "metadata" and isinstance(value, Mapping):
            for meta_key, meta_value in value.items():
                if meta_key == "annotations" and isinstance(meta_value, Mapping):
                    names = ",".join(
                        ("-" if v is None else "") + k.rsplit("/", 1)[-1] for k, v in sorted(meta_value.items())
                    )
                    parts.append(f"metadata.annotations[{names}]")
                elif meta_key not in ("resourceVersion", "generation"):  # stamped in by the emulator
                    parts.append(f"metadata.{meta_key}")
        else:
            parts.append(key)
    return " + ".join(parts) or "(empty)"


@dataclass
class Traffic:
    requests: int
    writes: int
    reads: int
    watches: int
    watches_by_kind: dict[str, int]
    writes_by_kind: dict[str, int]
    reads_by_kind: dict[str, int]
    writes_by_client: dict[str, int]
    mcpserver_patches: dict[str, int]


def summarize(requests: Sequence[Request]) -> Traffic:
    writes: Counter[str] = Counter()
    reads: Counter[str] = Counter()
    by_client: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    watches: Counter[str] = Counter()
    for request in requests:
        method = request.method.value
        if method in WRITE_METHODS:
            key = request_key(request)
            writes[key] += 1
            by_client[client_of(request)] += 1
            if request.resource is not None and request.resource.plural == MCPSERVER_PLURAL:
                shapes[f"{key} ({client_of(request)}): {patch_shape(request)}"] += 1
        elif request.action == kmock.action.WATCH:
            watches[request_key(request)] += 1
        elif method == "GET":
            action = request.action.value if request.action is not None else "GET"
            plural = request.resource.plural if request.resource is not None else request.url.path
            reads[f"{action} {plural}"] += 1
    return Traffic(
        requests=len(requests),
        writes=sum(writes.values()),
        reads=sum(reads.values()),
        watches=sum(watches.values()),
        watches_by_kind=dict(watches.most_common()),
        writes_by_kind=dict(writes.most_common()),
        reads_by_kind=dict(reads.most_common()),
        writes_by_client=dict(by_client.most_common()),
        mcpserver_patches=dict(shapes.most_common()),
    )


def count_writes(requests: Iterable[Request]) -> int:
    return sum(1 for request in requests if request.method.value in WRITE_METHODS)


# ------------------------------------------------------------ the processes


@dataclass
class Mark:
    """A moment of the run: wall time since the operator started, requests seen, CPU seconds."""

    name: str
    at: float
    requests: int
    operator_cpu: float
    bench_cpu: float


@dataclass
class Sampler:
    process: psutil.Process
    started: float
    peak_rss: int = 0
    last_rss: int = 0
    rss_samples: int = 0
    loop_lag: list[float] = field(default_factory=list)
    rss_timeline: list[tuple[float, int]] = field(default_factory=list)

    def cpu(self) -> float:
        try:
            times = self.process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                rss = int(self.process.memory_info().rss)
            except psutil.Error:
                return
            self.last_rss = rss
            self.peak_rss = max(self.peak_rss, rss)
            self.rss_samples += 1
            if self.rss_samples % 10 == 0:
                self.rss_timeline.append((round(time.monotonic() - self.started, 1), rss))
            next_tick = loop.time() + SAMPLE_INTERVAL
            await asyncio.sleep(SAMPLE_INTERVAL)
            # How late the loop woke us up: a busy emulator delays every coroutine of this process.
            self.loop_lag.append(max(0.0, loop.time() - next_tick))


def write_kubeconfig(directory: Path, server: str) -> Path:
    path = directory / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "bench", "user": {"token": "emulator-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "bench"}}],
        "current-context": "emulator",
    }
    path.write_text(json.dumps(config))
    return path


def operator_command(verbose: bool, profile: Path | None) -> list[str]:
    script = Path(sys.executable).parent / "mcpfleet"
    if not script.exists():
        script = REPO_ROOT / ".venv" / "bin" / "mcpfleet"
    command = [str(script), "operator", *(["--verbose"] if verbose else [])]
    if profile is not None:  # the same process, under cProfile (written when it exits on SIGTERM)
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command]
    return command


def operator_env(kubeconfig: Path, metrics_port: int, liveness_port: int, worker_limit: int | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MCPFLEET_OPERATOR_") and not key.startswith("KUBERNETES_SERVICE_")
    }
    env["KUBECONFIG"] = str(kubeconfig)
    env["MCPFLEET_OPERATOR_KUBECONFIG"] = str(kubeconfig)
    env["MCPFLEET_OPERATOR_METRICS_PORT"] = str(metrics_port)
    env["MCPFLEET_OPERATOR_METRICS_HOST"] = "127.0.0.1"
    env["MCPFLEET_OPERATOR_LIVENESS_PORT"] = str(liveness_port)
    if worker_limit is not None:
        env["MCPFLEET_OPERATOR_WORKER_LIMIT"] = str(worker_limit)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def stop_operator(proc: subprocess.Popen[bytes], grace: float = 30.0) -> tuple[float, int | None]:
    """SIGTERM, then wait while this loop keeps serving the emulator; SIGKILL after ``grace``."""
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    code = await asyncio.to_thread(proc.wait)
    return time.monotonic() - started, code


def scrape_metrics(port: int) -> dict[str, float]:
    """The operator's own Prometheus counters, summed by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    result: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("mcpfleet_operator"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created") or sample.name.endswith("_bucket"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            result[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return result


# -------------------------------------------------------------- the run


@dataclass
class Progress:
    reconciled: int
    with_status: int
    phases: dict[str, int]


def reconciliation_progress(emulator: ApiServerEmulator, keys: Sequence[tuple[str, str]]) -> Progress:
    """Read straight from the emulator's memory: no requests, no effect on what is measured."""
    reconciled = with_status = 0
    phases: Counter[str] = Counter()
    for namespace, name in keys:
        key = (MCPSERVER_RESOURCE, namespace, name)
        if key not in emulator.objects:
            continue
        obj = emulator.objects[key]
        if obj.deleted:
            continue
        raw = obj.raw
        status = raw.get("status") or {}
        meta = raw.get("metadata") or {}
        if status:
            with_status += 1
        phase = status.get("phase")
        if phase:
            phases[str(phase)] += 1
        if phase and status.get("observedGeneration") == meta.get("generation"):
            reconciled += 1
    return Progress(reconciled, with_status, dict(phases.most_common()))


async def create_fleet(kubeconfig: Path, fleet: Fleet, concurrency: int) -> float:
    client = KubeClient(await load_api_client(str(kubeconfig)), "bench")
    semaphore = asyncio.Semaphore(concurrency)
    done = 0

    async def create(manifest: dict[str, Any]) -> None:
        nonlocal done
        async with semaphore:
            for attempt in range(5):
                try:
                    await client.create(MCPSERVER, manifest)
                    break
                except KubeError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
            done += 1
            if done % 250 == 0:
                print(f"  created {done}/{len(fleet.manifests)}", flush=True)

    started = time.monotonic()
    try:
        await asyncio.gather(*(create(manifest) for manifest in fleet.manifests))
    finally:
        await client.close()
    return time.monotonic() - started


def per_object(value: float, count: int) -> float:
    return round(value / count, 3) if count else 0.0


def cpu_share(start: Mark, end: Mark) -> dict[str, float]:
    wall = max(end.at - start.at, 1e-9)
    return {
        "wall_seconds": round(wall, 2),
        "operator_cpu_seconds": round(end.operator_cpu - start.operator_cpu, 2),
        "operator_cpu_percent_of_one_core": round(100 * (end.operator_cpu - start.operator_cpu) / wall, 1),
        "emulator_process_cpu_seconds": round(end.bench_cpu - start.bench_cpu, 2),
        "emulator_process_cpu_percent_of_one_core": round(100 * (end.bench_cpu - start.bench_cpu) / wall, 1),
    }


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_total_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kopf": version("kopf"),
        "kmock": version("kmock"),
        "aiohttp": version("aiohttp"),
        "kubernetes_asyncio": version("kubernetes_asyncio"),
    }


async def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915 - one linear scenario
    task = asyncio.current_task()
    if task is not None:  # SIGTERM to the benchmark: unwind like Ctrl-C, so the operator is stopped too
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    fleet = build_fleet(args.count, args.namespaces, args.seed)
    keys = [(m["metadata"]["namespace"], m["metadata"]["name"]) for m in fleet.manifests]
    workdir = Path(tempfile.mkdtemp(prefix="mcpfleet-bench-"))
    log_path = workdir / "operator.log"
    result: dict[str, Any] = {
        "scenario": "cold start with a backlog: all objects exist before the operator starts",
        "count": args.count,
        "namespaces": args.namespaces,
        "emulator": args.emulator,
        "seed": args.seed,
        "idle_seconds": args.idle,
        "worker_limit": args.worker_limit or OperatorSettings.model_fields["worker_limit"].default,
        "fleet": dict(fleet.kinds.most_common()),
        "expected_child_objects": fleet.expected_children,
        "machine": machine_info(),
        "operator_log": str(log_path),
    }
    print(f"fleet: {args.count} MCPServers in {args.namespaces} namespaces: {dict(fleet.kinds.most_common())}")
    print(f"       the builders want {fleet.expected_children} child objects in all")

    emulator = IndexedEmulator() if args.emulator == "indexed" else ApiServerEmulator()
    declare_resources(emulator)
    async with emulator, kmock.Server(emulator) as server:
        kubeconfig = write_kubeconfig(workdir, str(server.url).rstrip("/"))
        print(f"emulator: {server.url}  (in this process; kubeconfig {kubeconfig})")

        create_seconds = await create_fleet(kubeconfig, fleet, args.create_concurrency)
        requests: list[Request] = emulator._requests
        before = len(requests)
        result["create_seconds"] = round(create_seconds, 2)
        result["benchmark_create_requests"] = before
        print(f"created {args.count} objects in {create_seconds:.1f} s ({args.count / create_seconds:.0f}/s)")

        metrics_port, liveness_port = free_port(), free_port()
        env = operator_env(kubeconfig, metrics_port, liveness_port, args.worker_limit)
        log_file = log_path.open("wb")
        bench_process = psutil.Process()
        proc: subprocess.Popen[bytes] | None = None
        sampler_task: asyncio.Task[None] | None = None
        try:
            started = time.monotonic()
            proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; waiting is async below
                operator_command(args.verbose, args.operator_profile),
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, not the operator: we stop it ourselves
            )
            SPAWNED.append(proc)
            sampler = Sampler(psutil.Process(proc.pid), started)
            sampler_task = asyncio.create_task(sampler.run())

            def mark(name: str) -> Mark:
                cpu = bench_process.cpu_times()
                return Mark(name, time.monotonic() - started, len(requests), sampler.cpu(), cpu.user + cpu.system)

            marks = [mark("spawned")]
            print(f"operator: pid {proc.pid}, log {log_path}, metrics :{metrics_port}, liveness :{liveness_port}")

            # -- first pass: until every object is reconciled
            first_request_at: float | None = None
            first_write_at: float | None = None
            last_print = 0.0
            progress = Progress(0, 0, {})
            deadline = started + args.timeout
            seen, last_activity, stalled = len(requests), started, False
            while True:
                await asyncio.sleep(0.2)
                now = time.monotonic()
                if proc.poll() is not None:
                    raise RuntimeError(f"the operator exited with code {proc.returncode}; see {log_path}")
                if first_request_at is None and len(requests) > before:
                    first_request_at = now - started
                if first_write_at is None and count_writes(requests[before:]):
                    first_write_at = now - started
                if len(requests) != seen:
                    seen, last_activity = len(requests), now
                progress = reconciliation_progress(emulator, keys)
                if now - last_print >= 2.0 or progress.reconciled == args.count:
                    last_print = now
                    traffic_writes = count_writes(requests[before:])
                    print(
                        f"  t={now - started:6.1f}s reconciled {progress.reconciled:5d}/{args.count}"
                        f"  writes {traffic_writes:6d}  requests {len(requests) - before:6d}"
                        f"  operator RSS {sampler.last_rss / MB:5.1f} MB (peak {sampler.peak_rss / MB:5.1f})"
                        f"  CPU op {sampler.process.cpu_percent() if sampler.process.is_running() else 0:5.1f}%"
                        f" bench {bench_process.cpu_percent():5.1f}%",
                        flush=True,
                    )
                if now - last_activity > args.stall and progress.reconciled < args.count:
                    stalled = True
                    print(f"  STALLED: no API request at all for {args.stall:.0f} s; giving up on the first pass")
                if progress.reconciled == args.count or now > deadline or stalled:
                    break
            marks.append(mark("reconciled"))
            timed_out = progress.reconciled < args.count
            result["stalled"] = stalled
            result["startup_seconds_to_first_request"] = round(first_request_at, 2) if first_request_at else None
            result["seconds_to_first_write"] = round(first_write_at, 2) if first_write_at else None
            result["reconciled"] = progress.reconciled
            result["reconciled_seconds"] = round(marks[-1].at, 2)
            result["timed_out"] = timed_out
            result["phases"] = progress.phases

            # -- settle: the first pass is over when no write came for SETTLE_QUIET seconds
            settle_started = time.monotonic()
            last_writes = count_writes(requests[before:])
            last_change = settle_started
            while not timed_out:
                await asyncio.sleep(0.25)
                writes_now = count_writes(requests[before:])
                if writes_now != last_writes:
                    last_writes, last_change = writes_now, time.monotonic()
                if time.monotonic() - last_change >= SETTLE_QUIET or time.monotonic() - settle_started > SETTLE_MAX:
                    break
            marks.append(mark("settled"))
            first_pass = requests[before : marks[-1].requests]
            first_traffic = summarize(first_pass)
            result["settled_seconds"] = round(marks[-1].at, 2)
            result["writes_after_reconciled"] = count_writes(requests[marks[1].requests : marks[2].requests])
            result["first_pass"] = asdict(first_traffic)
            result["first_pass_per_object"] = {
                "writes": per_object(first_traffic.writes, args.count),
                "reads": per_object(first_traffic.reads, args.count),
                "requests": per_object(first_traffic.requests, args.count),
                "writes_by_kind": {k: per_object(v, args.count) for k, v in first_traffic.writes_by_kind.items()},
                "reads_by_kind": {k: per_object(v, args.count) for k, v in first_traffic.reads_by_kind.items()},
            }
            result["cpu_first_pass"] = cpu_share(marks[0], marks[1])
            print(
                f"first pass: {first_traffic.writes} writes ({first_traffic.writes / args.count:.2f}/object), "
                f"{first_traffic.reads} reads ({first_traffic.reads / args.count:.2f}/object)"
            )

            # -- idle: nothing changes, so nothing should be written
            if not timed_out and args.idle > 0:
                print(f"idle: watching for {args.idle:.0f} s ...", flush=True)
                idle_end = time.monotonic() + args.idle
                while time.monotonic() < idle_end:
                    await asyncio.sleep(min(5.0, max(0.0, idle_end - time.monotonic())))
                    if proc.poll() is not None:
                        raise RuntimeError(f"the operator exited with code {proc.returncode}; see {log_path}")
                    print(
                        f"  t={time.monotonic() - started:6.1f}s idle writes "
                        f"{count_writes(requests[marks[-1].requests :])}"
                        f"  operator RSS {sampler.last_rss / MB:5.1f} MB",
                        flush=True,
                    )
                marks.append(mark("idle-end"))
                idle = summarize(requests[marks[2].requests : marks[3].requests])
                result["idle"] = asdict(idle)
                result["cpu_idle"] = cpu_share(marks[2], marks[3])
                result["reconciled_after_idle"] = reconciliation_progress(emulator, keys).reconciled

            # -- memory and the operator's own counters, before stopping it
            hwm = vm_hwm_bytes(proc.pid)
            result["operator_rss_peak_mb"] = round(sampler.peak_rss / MB, 1)
            result["operator_rss_end_mb"] = round(sampler.last_rss / MB, 1)
            result["operator_vmhwm_mb"] = round(hwm / MB, 1) if hwm else None
            result["rss_samples"] = sampler.rss_samples
            result["rss_timeline_mb"] = [(t, round(rss / MB, 1)) for t, rss in sampler.rss_timeline]
            lags = sorted(sampler.loop_lag) or [0.0]
            result["emulator_loop_lag_ms"] = {
                "p50": round(1000 * statistics.median(lags), 1),
                "p95": round(1000 * lags[int(0.95 * (len(lags) - 1))], 1),
                "max": round(1000 * lags[-1], 1),
            }
            try:
                result["operator_metrics"] = await asyncio.to_thread(scrape_metrics, metrics_port)
            except OSError as exc:
                result["operator_metrics"] = {"error": str(exc)}
            emulator_errors = Counter(type(error).__name__ for error in emulator.errors)
            result["emulator_error_responses"] = dict(emulator_errors.most_common())
        finally:
            if sampler_task is not None:
                sampler_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler_task
            if proc is not None:
                stop_seconds, code = await stop_operator(proc)
                result["stop_seconds"] = round(stop_seconds, 2)
                result["exit_code"] = code
            log_file.close()
    log_text = log_path.read_text(errors="replace")
    result["operator_log_lines"] = log_text.count("\n")
    result["operator_log_errors"] = sum(1 for line in log_text.splitlines() if "[ERROR" in line or "Traceback" in line)
    result["operator_log_warnings"] = sum(1 for line in log_text.splitlines() if "[WARNING" in line)
    result["targets"] = targets(result)
    return result


def targets(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    idle = result.get("idle")
    rss = max(result.get("operator_rss_peak_mb") or 0.0, result.get("operator_vmhwm_mb") or 0.0)
    checks: dict[str, dict[str, Any]] = {
        "reconcile_seconds": {
            "value": (
                result.get("reconciled_seconds")
                if not result.get("timed_out")
                else f"{result.get('reconciled')}/{result.get('count')} done"
            ),
            "target": TARGET_SECONDS,
            "ok": not result.get("timed_out") and (result.get("reconciled_seconds") or 1e9) <= TARGET_SECONDS,
        },
        "peak_rss_mb": {"value": rss, "target": TARGET_RSS_MB, "ok": rss <= TARGET_RSS_MB},
    }
    if idle is not None:
        checks["idle_writes"] = {
            "value": idle["writes"],
            "target": TARGET_IDLE_WRITES,
            "ok": idle["writes"] <= TARGET_IDLE_WRITES,
        }
    return checks


def print_summary(result: Mapping[str, Any]) -> None:
    count = result["count"]
    print()
    print("=" * 78)
    print(f"mcpfleet operator scale benchmark: {count} MCPServers, cold start with a backlog")
    print(f"machine: {result['machine']['cpus']} CPUs, {result['machine']['memory_total_gb']} GB, ", end="")
    print(f"Python {result['machine']['python']}, kopf {result['machine']['kopf']}")
    print(f"fleet: {result['fleet']}, worker limit {result['worker_limit']}, emulator {result['emulator']}")
    source = result.get("source") or {}
    print(f"operator source: commit {source.get('commit')}, uncommitted changes: {source.get('uncommitted') or 'none'}")
    print("-" * 78)
    for name, check in result["targets"].items():
        verdict = "ok" if check["ok"] else "MISSED"
        print(f"  {name:20s} {check['value']!s:>10}   target <= {check['target']!s:<8} {verdict}")
    print("-" * 78)
    print(f"  startup (spawn -> first request)  {result.get('startup_seconds_to_first_request')} s")
    print(f"  spawn -> first write              {result.get('seconds_to_first_write')} s")
    print(
        f"  all reconciled after              {result.get('reconciled_seconds')} s ({result.get('reconciled')}/{count})"
    )
    print(f"  quiet (no write for {SETTLE_QUIET:.0f} s) after    {result.get('settled_seconds')} s")
    print(f"  writes after all were reconciled  {result.get('writes_after_reconciled')}")
    print(f"  operator RSS peak / VmHWM / end   {result.get('operator_rss_peak_mb')} / ", end="")
    print(f"{result.get('operator_vmhwm_mb')} / {result.get('operator_rss_end_mb')} MB")
    first = result.get("first_pass")
    if first:
        per = result["first_pass_per_object"]
        print(f"  first pass writes                 {first['writes']} ({per['writes']}/object)")
        for key, value in first["writes_by_kind"].items():
            print(f"      {key:40s} {value:6d}  {value / count:6.3f}/object")
        print("  MCPServer writes by what they change:")
        for key, value in first["mcpserver_patches"].items():
            print(f"      {value:6d}  {key}")
        print(
            f"  first pass reads                  {first['reads']} ({per['reads']}/object), {first['watches']} watches"
        )
        for key, value in first["reads_by_kind"].items():
            print(f"      {key:40s} {value:6d}  {value / count:6.3f}/object")
    cpu = result.get("cpu_first_pass")
    if cpu:
        print(
            f"  CPU during the first pass         operator {cpu['operator_cpu_percent_of_one_core']}% of a core, "
            f"emulator+benchmark {cpu['emulator_process_cpu_percent_of_one_core']}%"
        )
        print(f"  emulator loop lag (p50/p95/max)   {result.get('emulator_loop_lag_ms')} ms")
    idle = result.get("idle")
    if idle is not None:
        print(f"  idle {result['idle_seconds']:.0f} s                         {idle['writes']} writes, ", end="")
        print(f"{idle['reads']} reads, {idle['requests']} requests")
        for name in ("writes_by_kind", "reads_by_kind", "watches_by_kind"):
            if idle[name]:
                print(f"      {name}: {idle[name]}")
    print(f"  operator stopped (SIGTERM) in     {result.get('stop_seconds')} s, exit code {result.get('exit_code')}")
    print(
        f"  operator log: {result.get('operator_log_lines')} lines, {result.get('operator_log_errors')} errors, ",
        end="",
    )
    print(f"{result.get('operator_log_warnings')} warnings ({result.get('operator_log')})")
    print(f"  emulator error responses          {result.get('emulator_error_responses')}")
    print("=" * 78)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000, help="MCPServer objects to create (default 1000)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle after the first pass (default 60)")
    parser.add_argument("--namespaces", type=int, default=10, help="namespaces to spread them over (default 10)")
    parser.add_argument("--json", type=Path, default=None, help="write the full result as JSON to this file")
    parser.add_argument(
        "--worker-limit",
        type=int,
        default=None,
        help="MCPFLEET_OPERATOR_WORKER_LIMIT for the operator (default: the operator's own default)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on the first pass after this (600 s)")
    parser.add_argument(
        "--stall", type=float, default=60.0, help="give up when the operator sends no request for this long (60 s)"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the fleet's random mix (default 42)")
    parser.add_argument(
        "--emulator",
        choices=("indexed", "stock"),
        default="indexed",
        help="indexed (default): the emulator with O(1) request routing; stock: kmock's O(requests) routing",
    )
    parser.add_argument(
        "--operator-profile", type=Path, default=None, help="run the operator under cProfile, stats to this file"
    )
    parser.add_argument("--verbose", action="store_true", help="run the operator with --verbose (kopf debug log)")
    parser.add_argument("--create-concurrency", type=int, default=32, help="concurrent creates (default 32)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.namespaces < 1:
        parser.error("--count and --namespaces must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall = time.monotonic()
    source = source_info("operator", "contracts", "cli", "tests/emulator.py")
    try:
        result = asyncio.run(run_benchmark(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: the operator was stopped", file=sys.stderr)
        return 130
    finally:
        for proc in SPAWNED:  # normally stopped already; not if the loop itself was torn down
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    result["benchmark_wall_seconds"] = round(time.monotonic() - wall, 1)
    result["source"] = source
    print_summary(result)
    print(f"benchmark wall time: {result['benchmark_wall_seconds']} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"result: {args.json}")
    return 0 if all(check["ok"] for check in result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
