"""k8s-ops server benchmark: list_pods over thousands of Pods, and read calls per second, on a real control plane.

The Kubernetes API is a real one: etcd + kube-apiserver + kube-controller-manager started by the
devcluster code (``mcpfleet_cli.devcluster.cluster.ControlPlane``) from the binaries of ``make tools``.
The benchmark creates N Pods in one namespace through the API (no kubelet: they stay Pending). The
k8s-ops server is the real thing: ``.venv/bin/mcpfleet server k8s-ops --transport streamable-http`` in
its own process, reached with the mcp SDK's ``mcp.Client`` over HTTP.

Measured, in one run:

* ``list_pods`` of the namespace: the first page with the default budget (latency p50/p95 over
  ``--repeat`` calls, response size), and a walk of every page with continue tokens (time, calls,
  bytes); side by side the same lists made directly with kubernetes_asyncio (raw JSON and typed
  models; one full list, the first page and a paged walk with the same ``limit``), so the report gives
  the MCP overhead as a ratio;
* the CPU seconds of the server, kube-apiserver, etcd and this process during the list phase: which
  part dominates;
* calls per second of a cheap read (``get_pod`` by default) at each ``--concurrency`` level, each
  client its own ``mcp.Client`` session, for ``--duration`` seconds: calls/s, p50/p95 latency, errors;
* the server process's peak RSS (psutil every 100 ms, and VmHWM).

Run from the repository root: ``.venv/bin/python benchmarks/k8s_ops.py --help``.
See docs/benchmarks.md for the figures and how to read them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mcp
import psutil  # type: ignore[import-untyped]
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.rest import ApiException

from mcpfleet_cli.devcluster.cluster import ClusterState, ControlPlane, find_binaries, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
# `python benchmarks/k8s_ops.py` puts benchmarks/ on sys.path, not the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import (  # noqa: E402
    CpuMeter,
    cpu_snapshot,
    default_bin_dir,
    interrupt,
    machine_info,
    pct,
    source_info,
    vm_hwm_bytes,
)

NAMESPACE = "bench"
MB = 1024 * 1024
SAMPLE_INTERVAL = 0.1
SERVER_READY_TIMEOUT = 60.0

# Every server process this script started: the last resort of main() kills what is still running.
SPAWNED: list[subprocess.Popen[bytes]] = []


# ------------------------------------------------------------------ statistics


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(seconds),
        "p50_ms": round(1000 * statistics.median(seconds), 2) if seconds else 0.0,
        "p95_ms": round(1000 * pct(seconds, 0.95), 2),
        "min_ms": round(1000 * min(seconds), 2) if seconds else 0.0,
        "max_ms": round(1000 * max(seconds), 2) if seconds else 0.0,
    }


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


# ------------------------------------------------------------------ the pods


def pod_manifest(index: int) -> dict[str, Any]:
    """A Deployment-made Pod of ordinary size: labels, owner-like annotations, one container with env and limits."""
    app = f"svc-{index % 50:02d}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-{index:05d}",
            "labels": {"app": app, "tier": ("web", "api", "worker")[index % 3], "bench": "k8s-ops"},
            "annotations": {"example.com/build": f"build-{index % 97}"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": f"registry.example.com/team/{app}:1.{index % 7}.0",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [
                        {"name": "LOG_LEVEL", "value": "info"},
                        {"name": "UPSTREAM_URL", "value": f"http://upstream-{index % 5}.svc:8080"},
                    ],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                }
            ],
        },
    }


async def api_client(kubeconfig: Path, pool: int) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return k8s.ApiClient(configuration)


async def create_pods(kubeconfig: Path, count: int, concurrency: int) -> dict[str, Any]:
    async with await api_client(kubeconfig, concurrency) as api:
        core = k8s.CoreV1Api(api)
        with contextlib.suppress(ApiException):  # 409: left over from an earlier attempt
            await core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NAMESPACE)))
        # The ServiceAccount admission plugin refuses Pods until the controller manager made `default`.
        deadline = time.monotonic() + 60
        while True:
            try:
                await core.read_namespaced_service_account("default", NAMESPACE)
                break
            except ApiException:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        semaphore = asyncio.Semaphore(concurrency)
        retries = 0
        done = 0

        async def create(index: int) -> None:
            nonlocal retries, done
            async with semaphore:
                for attempt in range(8):
                    try:
                        await core.create_namespaced_pod(
                            NAMESPACE, cast(Any, pod_manifest(index))
                        )  # the client sends dicts as they are
                        break
                    except ApiException as exc:
                        if exc.status == 409:
                            break
                        if attempt == 7:
                            raise
                        retries += 1
                        await asyncio.sleep(0.2 * (attempt + 1))
                done += 1
                if done % 1000 == 0:
                    print(f"  created {done}/{count}", flush=True)

        started = time.monotonic()
        await asyncio.gather(*(create(i) for i in range(count)))
        seconds = time.monotonic() - started
    return {"seconds": round(seconds, 1), "per_second": round(count / seconds, 1), "retries": retries}


# ------------------------------------------------------------ direct lists


async def direct_list(core: k8s.CoreV1Api, *, limit: int | None, cont: str | None = None) -> tuple[bytes, Any]:
    """One raw LIST of the namespace's pods: (response body, parsed JSON)."""
    kwargs: dict[str, Any] = {"_preload_content": False}
    if limit is not None:
        kwargs["limit"] = limit
    if cont:
        kwargs["_continue"] = cont
    response: Any = await core.list_namespaced_pod(NAMESPACE, **kwargs)  # the raw aiohttp response
    body: bytes = await response.read()
    return body, json.loads(body)


async def direct_walk(core: k8s.CoreV1Api, limit: int) -> tuple[int, int, int]:
    """Every page with limit/continue: (pages, items, bytes)."""
    pages = items = size = 0
    cont: str | None = None
    while True:
        body, data = await direct_list(core, limit=limit, cont=cont)
        pages += 1
        items += len(data.get("items") or [])
        size += len(body)
        cont = (data.get("metadata") or {}).get("continue")
        if not cont:
            return pages, items, size


# ------------------------------------------------------------ the server


def server_command(port: int, profile: Path | None) -> list[str]:
    script = Path(sys.executable).parent / "mcpfleet"
    if not script.exists():
        script = REPO_ROOT / ".venv" / "bin" / "mcpfleet"
    command = [str(script), "server", "k8s-ops", "--transport", "streamable-http", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    if profile is not None:  # the same process, under cProfile (written when it exits on SIGTERM)
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command]
    return command


def server_env(kubeconfig: Path, max_items: int | None, max_bytes: int | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MCP_", "K8S_", "KUBERNETES_SERVICE_")) and key != "KUBECONFIG"
    }
    env["K8S_KUBECONFIG_PATH"] = str(kubeconfig)
    env["K8S_NAMESPACE"] = NAMESPACE
    if max_items is not None:
        env["MCP_MAX_ITEMS"] = str(max_items)
    if max_bytes is not None:
        env["MCP_MAX_OUTPUT_BYTES"] = str(max_bytes)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def http_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


async def stop_process(proc: subprocess.Popen[bytes], grace: float = 15.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return await asyncio.to_thread(proc.wait)


@dataclass
class RssSampler:
    """The server's RSS, and its open connections to the API server, every 100 ms."""

    process: psutil.Process
    apiserver_port: int
    peak: int = 0
    last: int = 0
    phase_peak: int = 0
    phase_connections_peak: int = 0

    async def run(self) -> None:
        while True:
            try:
                rss = int(self.process.memory_info().rss)
                connections = sum(
                    1
                    for conn in self.process.net_connections(kind="tcp")
                    if conn.raddr and conn.raddr.port == self.apiserver_port and conn.status == "ESTABLISHED"
                )
            except psutil.Error:
                return
            self.last = rss
            self.peak = max(self.peak, rss)
            self.phase_peak = max(self.phase_peak, rss)
            self.phase_connections_peak = max(self.phase_connections_peak, connections)
            await asyncio.sleep(SAMPLE_INTERVAL)

    def start_phase(self) -> None:
        self.phase_peak = self.last
        self.phase_connections_peak = 0


# ------------------------------------------------------------ MCP calls


def result_sizes(result: Any) -> tuple[int, int]:
    """(bytes of the CallToolResult as JSON on the wire, bytes of its structured content as compact JSON)."""
    wire = len(result.model_dump_json(by_alias=True, exclude_none=True).encode())
    structured = len(json.dumps(result.structured_content, separators=(",", ":")).encode())
    return wire, structured


async def client_side_costs(client: mcp.Client, result: Any, rounds: int = 10) -> dict[str, float]:
    """What the SDK client does with one list_pods answer, in this process, without the network:
    parse the CallToolResult from its JSON, and check the structured content against the tool's
    output schema (the client validates every result with jsonschema; the validator is compiled once).
    """
    from jsonschema.validators import validator_for  # noqa: PLC0415

    tools = await client.list_tools()
    schema = next(tool.output_schema for tool in tools.tools if tool.name == "list_pods")
    assert schema is not None, "list_pods declares an output schema"
    wire = result.model_dump_json(by_alias=True, exclude_none=True)
    validator = validator_for(schema)(schema)
    parse: list[float] = []
    validate: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        type(result).model_validate_json(wire)
        parse.append(time.perf_counter() - started)
        started = time.perf_counter()
        errors = list(validator.iter_errors(result.structured_content))
        validate.append(time.perf_counter() - started)
        if errors:
            raise RuntimeError(f"list_pods answered outside its output schema: {errors[0]}")
    return {
        "parse_result_json_p50": round(1000 * statistics.median(parse), 1),
        "validate_output_schema_p50": round(1000 * statistics.median(validate), 1),
    }


async def call_ok(client: mcp.Client, name: str, arguments: dict[str, Any]) -> Any:
    result = await client.call_tool(name, arguments)
    if result.is_error:
        raise RuntimeError(f"{name} failed: {result.content}")
    return result


async def timed(operation: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = await operation()
    return time.perf_counter() - started, value


async def measure_lists(  # noqa: PLR0915 - one linear sequence of measurements
    url: str, kubeconfig: Path, args: argparse.Namespace, page_items: int, processes: dict[str, psutil.Process]
) -> dict[str, Any]:
    """list_pods through MCP and the same lists straight from the API, interleaved, in one session each.

    Each timed first-page call also records the CPU time every process in ``processes`` spent during it,
    which splits the call's latency between the server, the API server (+ etcd) and the client.
    """
    mcp_first: list[float] = []
    mcp_walk: list[float] = []
    direct_first: list[float] = []
    direct_full: list[float] = []
    direct_full_typed: list[float] = []
    direct_walk_times: list[float] = []
    facts: dict[str, Any] = {}
    cpu_per_call: dict[str, list[float]] = {}
    client_cpu: list[float] = []  # this process, at ns resolution: the MCP client's share of a call
    async with mcp.Client(url) as client, await api_client(kubeconfig, 4) as api:
        core = k8s.CoreV1Api(api)
        # Warm-up: connections, the server's first request, imports on first use.
        await call_ok(client, "list_pods", {"namespace": NAMESPACE})
        await direct_list(core, limit=page_items)
        for _ in range(args.repeat):
            before, client_before = cpu_snapshot(processes), time.process_time()
            seconds, result = await timed(lambda: call_ok(client, "list_pods", {"namespace": NAMESPACE}))
            after, client_after = cpu_snapshot(processes), time.process_time()
            client_cpu.append(client_after - client_before)
            mcp_first.append(seconds)
            for name in processes:
                cpu_per_call.setdefault(name, []).append(after[name] - before[name])
            seconds, (body, data) = await timed(lambda: direct_list(core, limit=page_items))
            direct_first.append(seconds)
        wire, structured = result_sizes(result)
        facts["client_side_ms"] = await client_side_costs(client, result)
        content = result.structured_content or {}
        facts["mcp_first_page"] = {
            "items": len(content.get("items") or []),
            "total": content.get("total"),
            "truncated": content.get("truncated"),
            "note": content.get("note"),
            "result_bytes": wire,
            "structured_bytes": structured,
            "bytes_per_item": round(structured / max(1, len(content.get("items") or [])), 1),
            "text_content_bytes": sum(len(getattr(block, "text", "").encode()) for block in result.content),
        }
        facts["direct_first_page"] = {
            "items": len(data.get("items") or []),
            "bytes": len(body),
            "bytes_per_item": round(len(body) / max(1, len(data.get("items") or [])), 1),
        }
        for _ in range(args.walk_repeat):
            calls = items = wire_total = structured_total = 0
            token: str | None = None
            started = time.perf_counter()
            while True:
                arguments: dict[str, Any] = {"namespace": NAMESPACE}
                if token:
                    arguments["continue_token"] = token
                page = await call_ok(client, "list_pods", arguments)
                calls += 1
                page_content = page.structured_content or {}
                items += len(page_content.get("items") or [])
                w, s = result_sizes(page)
                wire_total, structured_total = wire_total + w, structured_total + s
                token = page_content.get("continue_token")
                if not token:
                    break
            mcp_walk.append(time.perf_counter() - started)
            facts["mcp_walk"] = {
                "calls": calls,
                "items": items,
                "result_bytes": wire_total,
                "structured_bytes": structured_total,
            }
            seconds, (pages, direct_items, size) = await timed(lambda: direct_walk(core, page_items))
            direct_walk_times.append(seconds)
            facts["direct_walk"] = {"limit": page_items, "pages": pages, "items": direct_items, "bytes": size}
            seconds, (body, data) = await timed(lambda: direct_list(core, limit=None))
            direct_full.append(seconds)
            facts["direct_full_list"] = {"items": len(data.get("items") or []), "bytes": len(body)}
            seconds, typed = await timed(lambda: core.list_namespaced_pod(NAMESPACE))
            direct_full_typed.append(seconds)
            facts["direct_full_list_typed"] = {"items": len(typed.items)}
    facts["latency"] = {
        "mcp_first_page": latency_summary(mcp_first),
        "direct_first_page_raw": latency_summary(direct_first),
        "mcp_walk_all_pages": latency_summary(mcp_walk),
        "direct_walk_all_pages_raw": latency_summary(direct_walk_times),
        "direct_full_list_raw": latency_summary(direct_full),
        "direct_full_list_typed": latency_summary(direct_full_typed),
    }
    # /proc counts CPU in 10 ms ticks: the mean over all calls (sum / n) resolves what one call cannot.
    facts["first_page_cpu_ms_per_call_mean"] = {
        name: round(1000 * sum(values) / len(values), 1) for name, values in cpu_per_call.items()
    }
    facts["first_page_client_cpu_ms_per_call_mean"] = round(1000 * sum(client_cpu) / len(client_cpu), 1)
    lat = facts["latency"]
    facts["ratios"] = {
        "first_page_mcp_over_direct_p50": ratio(
            lat["mcp_first_page"]["p50_ms"], lat["direct_first_page_raw"]["p50_ms"]
        ),
        "walk_mcp_over_direct_paged_p50": ratio(
            lat["mcp_walk_all_pages"]["p50_ms"], lat["direct_walk_all_pages_raw"]["p50_ms"]
        ),
        "walk_mcp_over_direct_full_raw_p50": ratio(
            lat["mcp_walk_all_pages"]["p50_ms"], lat["direct_full_list_raw"]["p50_ms"]
        ),
        "walk_mcp_over_direct_full_typed_p50": ratio(
            lat["mcp_walk_all_pages"]["p50_ms"], lat["direct_full_list_typed"]["p50_ms"]
        ),
        "walk_bytes_mcp_structured_over_api_full_list": ratio(
            facts["mcp_walk"]["structured_bytes"], facts["direct_full_list"]["bytes"]
        ),
    }
    return facts


async def measure_throughput(url: str, tool: str, concurrency: int, duration: float, count: int) -> dict[str, Any]:
    """`concurrency` clients, each its own session, calling `tool` back to back for `duration` seconds."""
    rng = random.Random(concurrency)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(mcp.Client(url)) for _ in range(concurrency)]
        for client in clients:  # each session warmed once, outside the measured window
            await client.call_tool("list_namespaces", {})
        start = asyncio.Event()
        stop_at = 0.0

        async def worker(client: mcp.Client) -> None:
            await start.wait()
            while time.perf_counter() < stop_at:
                if tool == "get_pod":
                    index = rng.randrange(count)
                    arguments: dict[str, Any] = {
                        "name": pod_manifest(index)["metadata"]["name"],
                        "namespace": NAMESPACE,
                    }
                else:
                    arguments = {}
                began = time.perf_counter()
                try:
                    result = await client.call_tool(tool, arguments)
                except Exception as exc:  # counted, not fatal: the rate under errors is part of the result
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - began)
                if result.is_error:
                    errors["tool error"] += 1

        tasks = [asyncio.create_task(worker(client)) for client in clients]
        started = time.perf_counter()
        stop_at = started + duration
        start.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    calls = len(latencies) + sum(v for k, v in errors.items() if k != "tool error")
    return {
        "concurrency": concurrency,
        "tool": tool,
        "seconds": round(elapsed, 2),
        "calls": calls,
        "calls_per_second": round(len(latencies) / elapsed, 1),
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        **{k: v for k, v in latency_summary(latencies).items() if k != "n"},
    }


async def measure_direct_throughput(kubeconfig: Path, concurrency: int, duration: float, count: int) -> dict[str, Any]:
    """The baseline of get_pod: the same GET straight from the API (raw JSON), with as many workers."""
    rng = random.Random(concurrency)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    async with await api_client(kubeconfig, concurrency) as api:
        core = k8s.CoreV1Api(api)
        stop_at = time.perf_counter() + duration

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                name = pod_manifest(rng.randrange(count))["metadata"]["name"]
                began = time.perf_counter()
                try:
                    response: Any = await core.read_namespaced_pod(name, NAMESPACE, _preload_content=False)
                    json.loads(await response.read())
                except Exception as exc:  # counted, as for the MCP calls
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - began)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "calls_per_second": round(len(latencies) / elapsed, 1),
        "errors": sum(errors.values()),
        **{k: v for k, v in latency_summary(latencies).items() if k != "n"},
    }


# ------------------------------------------------------------------ the run


async def run_benchmark(  # noqa: PLR0915 - one linear scenario
    args: argparse.Namespace, state: ClusterState, workdir: Path
) -> dict[str, Any]:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM to the benchmark: unwind like Ctrl-C, so every process is stopped
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    kubeconfig = Path(state.kubeconfig)
    result: dict[str, Any] = {"pods": args.pods, "namespace": NAMESPACE}

    print(f"creating {args.pods} pods in namespace {NAMESPACE} ({args.create_concurrency} at a time) ...", flush=True)
    result["create"] = await create_pods(kubeconfig, args.pods, args.create_concurrency)
    print(f"created in {result['create']['seconds']} s ({result['create']['per_second']}/s)")

    port = free_port()
    log_path = workdir / "k8s-ops.log"
    result["server_log"] = str(log_path)
    proc: subprocess.Popen[bytes] | None = None
    sampler_task: asyncio.Task[None] | None = None
    with log_path.open("wb") as log_file:
        try:
            proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; waiting is async below
                server_command(port, args.server_profile),
                env=server_env(kubeconfig, args.max_items, args.max_output_bytes),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            SPAWNED.append(proc)
            spawned = time.monotonic()
            while not await asyncio.to_thread(http_ready, port):
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited with code {proc.returncode}; see {log_path}")
                if time.monotonic() - spawned > SERVER_READY_TIMEOUT:
                    raise RuntimeError(f"the server was not ready in {SERVER_READY_TIMEOUT:.0f} s; see {log_path}")
                await asyncio.sleep(0.1)
            result["server_ready_seconds"] = round(time.monotonic() - spawned, 2)
            server = psutil.Process(proc.pid)
            sampler = RssSampler(server, state.ports["kube-apiserver"])
            sampler_task = asyncio.create_task(sampler.run())
            await asyncio.sleep(0.3)
            result["server_rss_ready_mb"] = round(sampler.last / MB, 1)
            url = f"http://127.0.0.1:{port}/mcp"
            print(f"server: pid {proc.pid}, {url}, ready after {result['server_ready_seconds']} s, log {log_path}")

            processes = {
                "k8s_ops_server": server,
                "kube_apiserver": psutil.Process(state.pids["kube-apiserver"]),
                "etcd": psutil.Process(state.pids["etcd"]),
                "benchmark": psutil.Process(),
            }
            meter = CpuMeter(processes)
            page_items = args.max_items or 200
            print(f"list_pods: first page x{args.repeat}, all pages x{args.walk_repeat}, and the direct lists ...")
            sampler.start_phase()
            meter.start()
            lists = await measure_lists(url, kubeconfig, args, page_items, processes)
            lists["cpu"] = meter.stop()
            lists["server_rss_peak_mb"] = round(sampler.phase_peak / MB, 1)
            result["list_pods"] = lists

            result["throughput"] = []
            for concurrency in args.concurrency:
                print(f"{args.tool}: {concurrency} client(s) for {args.duration:.0f} s ...", flush=True)
                sampler.start_phase()
                meter.start()
                row = await measure_throughput(url, args.tool, concurrency, args.duration, args.pods)
                cpu = meter.stop()
                row["server_cpu_percent_of_one_core"] = round(
                    100 * cpu["k8s_ops_server_cpu_seconds"] / cpu["wall_seconds"], 1
                )
                row["apiserver_cpu_percent_of_one_core"] = round(
                    100 * cpu["kube_apiserver_cpu_seconds"] / cpu["wall_seconds"], 1
                )
                row["benchmark_cpu_percent_of_one_core"] = round(
                    100 * cpu["benchmark_cpu_seconds"] / cpu["wall_seconds"], 1
                )
                row["server_rss_peak_mb"] = round(sampler.phase_peak / MB, 1)
                row["server_connections_to_apiserver_peak"] = sampler.phase_connections_peak
                row["machine_cpu_percent_of_all_cores"] = cpu["machine_cpu_percent_of_all_cores"]
                row["server_cpu_ms_per_call"] = round(
                    1000 * cpu["k8s_ops_server_cpu_seconds"] / max(1, row["calls"]), 2
                )
                if args.tool == "get_pod":
                    print(f"  the same GET straight from the API, {concurrency} worker(s) ...", flush=True)
                    direct = await measure_direct_throughput(kubeconfig, concurrency, args.duration, args.pods)
                    row["direct_api"] = direct
                    row["calls_per_second_mcp_over_direct"] = ratio(row["calls_per_second"], direct["calls_per_second"])
                    row["p50_mcp_over_direct"] = ratio(row["p50_ms"], direct["p50_ms"])
                result["throughput"].append(row)

            hwm = vm_hwm_bytes(proc.pid)
            result["server_rss_peak_mb"] = round(sampler.peak / MB, 1)
            result["server_vmhwm_mb"] = round(hwm / MB, 1) if hwm else None
        finally:
            if sampler_task is not None:
                sampler_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler_task
            if proc is not None:
                result["server_exit_code"] = await stop_process(proc)
    log_text = log_path.read_text(errors="replace")
    result["server_log_errors"] = sum(1 for line in log_text.splitlines() if "ERROR" in line or "Traceback" in line)
    result["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


def print_summary(result: dict[str, Any]) -> None:
    machine = result["machine"]
    lists = result["list_pods"]
    lat = lists["latency"]
    print()
    print("=" * 86)
    print(f"mcpfleet k8s-ops server benchmark: {result['pods']} Pending pods in one namespace, real control plane")
    print(
        f"machine: {machine['cpus']} CPUs, {machine['memory_total_gb']} GB, Python {machine['python']}, "
        f"{machine['kube_apiserver']}, mcp {machine['mcp']}; load {machine['loadavg_at_start']} -> "
        f"{result.get('loadavg_at_end')}"
    )
    print(f"pods created in {result['create']['seconds']} s ({result['create']['per_second']}/s)")
    source = result["source"]
    print(f"server source: commit {source['commit']}, uncommitted under servers/: {source['uncommitted'] or 'none'}")
    print("-" * 86)
    first, direct_first = lists["mcp_first_page"], lists["direct_first_page"]
    print(
        f"list_pods first page: {first['items']} items of {first['total']}, result {first['result_bytes']:,} B "
        f"(structured {first['structured_bytes']:,} B, {first['bytes_per_item']} B/pod)"
    )
    print(
        f"API first page (limit {lists['direct_walk']['limit']}): {direct_first['items']} items, "
        f"{direct_first['bytes']:,} B ({direct_first['bytes_per_item']} B/pod)"
    )
    print(f"{'':36s} {'n':>4s} {'p50 ms':>10s} {'p95 ms':>10s}")
    for name, row in lat.items():
        print(f"  {name:34s} {row['n']:4d} {row['p50_ms']:10.1f} {row['p95_ms']:10.1f}")
    walk, dwalk, full = lists["mcp_walk"], lists["direct_walk"], lists["direct_full_list"]
    print(
        f"all pages via MCP: {walk['calls']} calls, {walk['items']} items, {walk['result_bytes']:,} B "
        f"(structured {walk['structured_bytes']:,} B)"
    )
    print(f"all pages via API: {dwalk['pages']} pages, {dwalk['bytes']:,} B; one full list {full['bytes']:,} B")
    print("ratios (p50):")
    for name, value in lists["ratios"].items():
        print(f"  {name:48s} {value}")
    print(f"CPU during the list phase: {lists['cpu']}")
    print(
        f"CPU ms per first-page list_pods call (mean): {lists['first_page_cpu_ms_per_call_mean']}, "
        f"the client (process_time) {lists['first_page_client_cpu_ms_per_call_mean']}"
    )
    print(f"client side of one first page, in process (ms, p50): {lists['client_side_ms']}")
    print("-" * 86)
    print(
        f"{'tool':10s} {'clients':>7s} {'calls/s':>9s} {'p50 ms':>8s} {'p95 ms':>8s} {'errors':>7s} "
        f"{'server CPU':>10s} {'apisrv CPU':>10s} {'bench CPU':>9s} {'RSS MB':>7s} {'conns':>5s} {'machine':>7s}"
    )
    for row in result["throughput"]:
        print(
            f"{row['tool']:10s} {row['concurrency']:7d} {row['calls_per_second']:9.1f} {row['p50_ms']:8.1f} "
            f"{row['p95_ms']:8.1f} {row['errors']:7d} {row['server_cpu_percent_of_one_core']:9.0f}% "
            f"{row['apiserver_cpu_percent_of_one_core']:9.0f}% {row['benchmark_cpu_percent_of_one_core']:8.0f}% "
            f"{row['server_rss_peak_mb']:7.1f} {row['server_connections_to_apiserver_peak']:5d} "
            f"{row['machine_cpu_percent_of_all_cores']:6.0f}%"
        )
    for row in result["throughput"]:
        direct = row.get("direct_api")
        if direct:
            print(
                f"{'direct GET':10s} {row['concurrency']:7d} {direct['calls_per_second']:9.1f} {direct['p50_ms']:8.1f} "
                f"{direct['p95_ms']:8.1f} {direct['errors']:7d}   MCP/direct: calls/s "
                f"x{row['calls_per_second_mcp_over_direct']}, p50 x{row['p50_mcp_over_direct']}; "
                f"server CPU {row['server_cpu_ms_per_call']} ms/call"
            )
    print("-" * 86)
    print(
        f"server RSS: {result['server_rss_ready_mb']} MB when ready, peak {result['server_rss_peak_mb']} MB "
        f"(VmHWM {result['server_vmhwm_mb']} MB); exit code {result.get('server_exit_code')}, "
        f"{result['server_log_errors']} error lines in {result['server_log']}"
    )
    print("=" * 86)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=5000, help="Pods to create in the namespace (default 5000)")
    parser.add_argument("--repeat", type=int, default=20, help="first-page list calls to time (default 20)")
    parser.add_argument("--walk-repeat", type=int, default=3, help="walks over all pages to time (default 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per concurrency level (default 10)")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(v) for v in text.split(",") if v.strip()],
        default=[1, 20],
        help="comma-separated numbers of concurrent clients (default 1,20)",
    )
    parser.add_argument(
        "--tool", choices=("get_pod", "list_namespaces"), default="get_pod", help="the cheap read (default get_pod)"
    )
    parser.add_argument("--max-items", type=int, default=None, help="MCP_MAX_ITEMS for the server (default: its own)")
    parser.add_argument(
        "--max-output-bytes", type=int, default=None, help="MCP_MAX_OUTPUT_BYTES for the server (default: its own)"
    )
    parser.add_argument("--create-concurrency", type=int, default=32, help="concurrent Pod creates (default 32)")
    parser.add_argument("--json", type=Path, default=None, help="write the full result as JSON to this file")
    parser.add_argument(
        "--server-profile", type=Path, default=None, help="run the server under cProfile, stats to this file"
    )
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=None,
        help="etcd/kube-apiserver/kube-controller-manager directory (default: $MCPFLEET_TOOLS_BIN, else "
        "`python3 hack/tools/tools.py bindir`)",
    )
    args = parser.parse_args(argv)
    if args.pods < 1 or args.repeat < 1 or args.walk_repeat < 1 or not args.concurrency:
        parser.error("--pods, --repeat, --walk-repeat and --concurrency must be at least 1")
    if min(args.concurrency) < 1:
        parser.error("--concurrency values must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    binaries = find_binaries(args.bin_dir or default_bin_dir())
    wall = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="mcpfleet-bench-k8s-ops-"))
    # SIGTERM before the event loop runs (while the control plane starts) unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, interrupt)
    machine = machine_info(binaries)
    source = source_info("servers")
    # Attached: the components die with this thread, so up() runs here, in the main thread, not in a worker.
    plane = ControlPlane(workdir / "cluster", binaries)
    try:
        print(f"control plane: starting in {plane.root} ...", flush=True)
        started = time.monotonic()
        state = plane.up(attached=True)
        print(f"control plane: {state.server} ready after {time.monotonic() - started:.1f} s")
        result = asyncio.run(run_benchmark(args, state, workdir))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: stopping the server and the control plane", file=sys.stderr)
        return 130
    finally:
        for proc in SPAWNED:  # normally stopped already; not if the loop itself was torn down
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        plane.down()
    result["machine"] = machine
    result["source"] = source
    result["benchmark_wall_seconds"] = round(time.monotonic() - wall, 1)
    python = Path(sys.executable)
    shown = python.relative_to(REPO_ROOT) if python.is_relative_to(REPO_ROOT) else python
    result["command"] = " ".join([str(shown), *sys.argv])
    print_summary(result)
    print(f"benchmark wall time: {result['benchmark_wall_seconds']} s")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"result: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
