"""What putting a gateway in front of an MCP server costs: the same upstream called directly, through the
mcpfleet gateway (authentication, RBAC, Redis rate limits and audit all on), and through the IBM ContextForge
gateway, at 1, 10 and 50 concurrent clients, side by side in one run.

Every process runs on this machine: the echo upstream (benchmarks/upstream_echo.py), a real redis-server for
the rate limits and the audit stream, `mcpfleet gateway` as its own process, ContextForge (one worker, see
benchmarks/contextforge.py) and the load generator (benchmarks/loadgen.py, its own process, every answer
checked). Levels are measured one after another within one run, so the ratios compare like with like on a
noisy machine.

    python benchmarks/gateway_overhead.py --json /tmp/gateway.json [--seconds 10] [--no-contextforge]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jwt

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import source_info  # noqa: E402
from benchmarks.contextforge import (  # noqa: E402
    ContextForge,
    http_ok,
    measure,
    start_contextforge,
    start_upstream,
)
from benchmarks.loadgen import LoadConfig, Protocol  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

from mcpfleet_cli.devcluster.cluster import free_port  # noqa: E402

SECRET = "benchmark-hs256-secret-0123456789abcdef"
AUDIENCE = "https://gateway.bench/mcp"
ISSUER = "https://idp.bench"


def gateway_config(directory: Path, port: int, upstream_url: str, redis_url: str) -> dict[str, Any]:
    """Every governance feature on, with limits high enough that the benchmark measures their cost, not them."""
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {"issuer": ISSUER, "audience": AUDIENCE, "hs256_secret": SECRET, "algorithms": ["HS256"]},
        "rbac": {"namespace_roles": {"production": ["admin"]}},
        "redis": {"url": redis_url},
        "rate_limits": {
            "global_limit": "1000000/minute",
            "user_limit": "1000000/minute",
            "tool_limits": {"echo:*": "1000000/minute"},
        },
        "audit": {
            "log_path": str(directory / "audit-{replica}.jsonl"),
            "spool_dir": str(directory / "spool"),
            "redis_stream": "mcpfleet:audit:{replica}",
        },
        "upstreams": {"echo": {"transport": "streamable-http", "url": upstream_url}},
        # echo is a read: SAFE, readable by viewers; not cached, so every call reaches the upstream.
        "tools": {"echo:echo": {"risk": "SAFE", "permissions": ["echo:get"]}},
    }


def viewer_token() -> str:
    now = int(time.time())
    claims = {"sub": "bench", "roles": ["viewer"], "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 86400}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@contextlib.contextmanager
def mcpfleet_gateway(
    directory: Path, upstream_url: str, redis_url: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    config = directory / "gateway.json"
    config.write_text(json.dumps(gateway_config(directory, port, upstream_url, redis_url), indent=2))
    log = (directory / "gateway.log").open("ab")
    env = {**os.environ, "MCPFLEET_GATEWAY_REPLICA": "bench", "MCPFLEET_GATEWAY_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mcpfleet_cli.main", "gateway", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{port}/ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start; see {directory / 'gateway.log'}")
            time.sleep(0.2)
        yield process, f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **source_info("servers", "contracts", "benchmarks"),
    }


def summary(report: dict[str, Any]) -> dict[str, Any]:
    latency = report["latency_ms"]
    return {
        "calls_per_second": report["calls_per_second"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "errors": report["errors"],
        "cpu_percent_of_one_core": report.get("cpu_percent_of_one_core", {}),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--concurrency", default="1,10,50", help="comma-separated client counts (default 1,10,50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run (default 2)")
    parser.add_argument(
        "--contextforge-seconds",
        type=float,
        default=20.0,
        help="measured seconds per ContextForge run (it settles slowly; default 20)",
    )
    parser.add_argument("--no-contextforge", action="store_true", help="skip ContextForge")
    parser.add_argument("--json", type=Path, default=None, help="write every figure as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(level) for level in args.concurrency.split(",") if level.strip()]
    results: dict[str, Any] = {"machine": machine(), "levels": []}
    with tempfile.TemporaryDirectory(prefix="mcpfleet-gateway-bench-") as temp, contextlib.ExitStack() as stack:
        directory = Path(temp)
        redis = RedisServer(directory / "redis")
        redis.start()
        stack.callback(redis.kill)
        upstream_port = free_port()
        upstream = start_upstream(upstream_port)
        stack.callback(upstream.kill)
        upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
        gateway, gateway_url = stack.enter_context(mcpfleet_gateway(directory, upstream_url, redis.url))
        contextforge: ContextForge | None = None
        if not args.no_contextforge:
            contextforge = stack.enter_context(start_contextforge(upstream_url))
        auth = {"Authorization": f"Bearer {viewer_token()}"}
        pids = {"upstream": upstream.pid, "gateway": gateway.pid}
        if contextforge is not None:
            workers = contextforge.worker_pids()  # gunicorn's worker does the work, not its master
            pids["contextforge"] = workers[0] if workers else contextforge.process.pid
        targets: list[tuple[str, str, str, Protocol, dict[str, str], float]] = [
            ("direct (2026-07-28)", upstream_url, "echo", "modern", {}, args.seconds),
            ("mcpfleet (2026-07-28)", gateway_url, "echo:echo", "modern", auth, args.seconds),
            ("direct (handshake)", upstream_url, "echo", "handshake", {}, args.seconds),
            ("mcpfleet (handshake)", gateway_url, "echo:echo", "handshake", auth, args.seconds),
        ]
        if contextforge is not None:
            _, url, headers, tool = contextforge
            targets.append(
                ("contextforge (handshake)", url, tool, "handshake", dict(headers), args.contextforge_seconds)
            )
        for level in levels:
            runs: dict[str, Any] = {}
            for name, url, tool, protocol, headers, seconds in targets:
                config = LoadConfig(
                    url=url,
                    concurrency=level,
                    seconds=seconds,
                    warmup_seconds=args.warmup,
                    tool=tool,
                    headers=headers,
                    protocol=protocol,
                )
                runs[name] = row = summary(measure(config, pids))
                print(
                    f"c={level:<3} {name:<28} {row['calls_per_second']:>8.1f} calls/s  p50 {row['p50_ms']:>7.2f} ms"
                    f"  p99 {row['p99_ms']:>7.2f} ms  errors {row['errors']}",
                    flush=True,
                )
            ratios = {
                "mcpfleet_vs_direct_calls": runs["mcpfleet (2026-07-28)"]["calls_per_second"]
                / runs["direct (2026-07-28)"]["calls_per_second"],
                "mcpfleet_added_p50_ms": runs["mcpfleet (2026-07-28)"]["p50_ms"]
                - runs["direct (2026-07-28)"]["p50_ms"],
                "mcpfleet_added_p99_ms": runs["mcpfleet (2026-07-28)"]["p99_ms"]
                - runs["direct (2026-07-28)"]["p99_ms"],
                "mcpfleet_handshake_vs_direct_calls": runs["mcpfleet (handshake)"]["calls_per_second"]
                / runs["direct (handshake)"]["calls_per_second"],
            }
            if contextforge is not None:
                ratios["mcpfleet_vs_contextforge_calls"] = (
                    runs["mcpfleet (handshake)"]["calls_per_second"]
                    / runs["contextforge (handshake)"]["calls_per_second"]
                )
            print(f"c={level:<3} ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()), flush=True)
            results["levels"].append({"concurrency": level, "runs": runs, "ratios": ratios})
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
