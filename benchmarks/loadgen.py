"""Load generator for MCP servers and gateways: concurrent ``tools/call`` over raw JSON-RPC POSTs.

The SDK's client objects spend far more CPU per call than a lean server does, so they cannot saturate
one; this sends the JSON-RPC requests itself, over pooled aiohttp keep-alive connections, and checks
every answer:

* HTTP 200, ``application/json`` or ``text/event-stream`` (the SSE ``data:`` line that carries the
  JSON-RPC response to this request's id);
* a JSON-RPC ``result`` (not an ``error``) for the request's id, with ``isError`` not true;
* a text content item equal to the text sent (each call sends a different one).

Any other outcome is an error, counted by kind in ``error_kinds`` with a few ``error_samples``: a run
that measured failures says so (and the script exits 1).

Two protocol eras (``--protocol``):

* ``modern``: the stateless 2026-07-28 revision. No ``initialize``; every request carries
  ``params._meta`` with the protocol version and the (empty) client capabilities, and the
  ``mcp-protocol-version``, ``mcp-method`` and ``mcp-name`` headers.
* ``handshake``: each client sends ``initialize`` (``--handshake-version``, 2025-11-25 by default; the
  version the server answers is the one used) and ``notifications/initialized`` once, keeps the
  ``mcp-session-id`` the server returns, if any (a 404 on a call starts a new session), sends the
  ``mcp-protocol-version`` header on every call and DELETEs its session at the end.

Each of ``--concurrency`` clients sends one call, waits for the answer and sends the next. The clients run
``--warmup`` seconds unmeasured (longer if needed: until every client has had the answer to its first call, so
that a slow server's cold start stays out), then ``--seconds`` measured: a call counts, and is timed, if it
ended inside the measured window (the calls in flight when it opens count too: a slow server's throughput is
not underestimated). Reported: calls/s (successful calls in the window / window), latency p50, p90, p99 and
max in ms, the successful calls of each second of the window, errors, and this process's CPU seconds (on a
small machine the load generator competes for cores with what it measures).

Run it as its own process so it does not share an event loop with what it measures:
``.venv/bin/python benchmarks/loadgen.py --url http://127.0.0.1:9100/mcp --concurrency 50 --seconds 10``;
from Python, :func:`run_loadgen` (or :func:`run_loadgen_async`) spawns that process and returns its JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson

MODERN_VERSION = "2026-07-28"
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
ACCEPT = "application/json, text/event-stream"
ERROR_SAMPLES = 5
EXIT_ERRORS = 1

Protocol = Literal["modern", "handshake"]


class LoadgenError(RuntimeError):
    """The load generator failed, or measured errors where none were allowed."""


@dataclass(frozen=True)
class LoadConfig:
    """One load run: who to call, how hard and for how long."""

    url: str
    concurrency: int = 1
    seconds: float = 10.0
    warmup_seconds: float = 2.0
    tool: str = "echo"
    headers: Mapping[str, str] = field(default_factory=dict)
    protocol: Protocol = "modern"
    handshake_version: str = HANDSHAKE_VERSIONS[0]
    timeout: float = 30.0
    payload_bytes: int = 0

    def argv(self) -> list[str]:
        """The command-line arguments of the script form that reproduce this configuration."""
        args = [
            "--url",
            self.url,
            "--concurrency",
            str(self.concurrency),
            "--seconds",
            str(self.seconds),
            "--warmup",
            str(self.warmup_seconds),
            "--tool",
            self.tool,
            "--protocol",
            self.protocol,
            "--handshake-version",
            self.handshake_version,
            "--timeout",
            str(self.timeout),
            "--payload-bytes",
            str(self.payload_bytes),
        ]
        for key, value in self.headers.items():
            args += ["--header", f"{key}:{value}"]
        return args


# ------------------------------------------------------------------ statistics


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50": round(1000 * pct(ordered, 0.50), 3),
        "p90": round(1000 * pct(ordered, 0.90), 3),
        "p99": round(1000 * pct(ordered, 0.99), 3),
        "max": round(1000 * ordered[-1], 3) if ordered else 0.0,
        "min": round(1000 * ordered[0], 3) if ordered else 0.0,
        "mean": round(1000 * sum(ordered) / len(ordered), 3) if ordered else 0.0,
    }


# ------------------------------------------------------------------ one call


class CallFailed(Exception):
    """A call whose answer was not the expected one; ``kind`` is its error_kinds key."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _short(body: bytes | str, limit: int = 300) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    return text if len(text) <= limit else text[:limit] + "..."


async def read_message(response: aiohttp.ClientResponse, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response to ``request_id`` in a JSON or SSE body."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        body = await response.read()
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise CallFailed("bad_json", _short(body)) from exc
        if isinstance(message, list):  # a batch answer: ours is in it
            message = next((m for m in message if isinstance(m, dict) and m.get("id") == request_id), None)
        if not isinstance(message, dict):
            raise CallFailed("bad_json", _short(body))
        return message
    if content_type == "text/event-stream":
        data: list[bytes] = []
        async for raw in response.content:  # one line at a time; stops at the end of the stream
            line = raw.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
                continue
            if line or not data:
                continue
            payload, data = b"\n".join(data), []
            with contextlib.suppress(orjson.JSONDecodeError):
                message = orjson.loads(payload)
                if isinstance(message, dict) and message.get("id") == request_id:
                    return message
        if data:  # a last event without its blank line
            with contextlib.suppress(orjson.JSONDecodeError):
                message = orjson.loads(b"\n".join(data))
                if isinstance(message, dict) and message.get("id") == request_id:
                    return message
        raise CallFailed("sse_no_response", f"no response to id {request_id} in the event stream")
    raise CallFailed("content_type", f"{content_type or 'none'}: {_short(await response.read())}")


def check_result(message: dict[str, Any], expected: str) -> None:
    """Raise CallFailed unless the message is a successful tools/call result echoing ``expected``."""
    if "error" in message:
        error = message["error"] if isinstance(message["error"], dict) else {}
        raise CallFailed(f"jsonrpc_error_{error.get('code')}", _short(orjson.dumps(message["error"])))
    result = message.get("result")
    if not isinstance(result, dict):
        raise CallFailed("no_result", _short(orjson.dumps(message)))
    if result.get("isError"):
        raise CallFailed("is_error", _short(orjson.dumps(result)))
    content = result.get("content")
    texts = [c.get("text") for c in content if isinstance(c, dict)] if isinstance(content, list) else []
    if expected not in texts:
        raise CallFailed("echo_mismatch", f"sent {expected!r}, got {_short(orjson.dumps(result))}")


# ------------------------------------------------------------------ the clients


@dataclass
class Tally:
    """What the clients measured, shared by all of them (one event loop: no locks)."""

    window_start: float = math.inf  # set when the warm-up ends
    window_end: float = math.inf
    clients_started: int = 0  # clients with an answer (or an error) to their first call
    all_started: asyncio.Event = field(default_factory=asyncio.Event)
    concurrency: int = 1
    latencies: list[float] = field(default_factory=list)
    per_second: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    warmup_calls: int = 0
    warmup_errors: Counter[str] = field(default_factory=Counter)
    setup_errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    negotiated: set[str] = field(default_factory=set)
    session_ids: int = 0

    def first_call_done(self) -> None:
        self.clients_started += 1
        if self.clients_started >= self.concurrency:
            self.all_started.set()

    def record(self, started: float, ended: float, kind: str | None, detail: str = "") -> None:
        if ended < self.window_start:  # warm-up
            if kind is None:
                self.warmup_calls += 1
            else:
                self.warmup_errors[kind] += 1
                self.sample(f"warmup {kind}: {detail}")
            return
        if ended > self.window_end:
            return  # finished after the window: not counted
        if kind is None:
            self.latencies.append(ended - started)
            second = int(ended - self.window_start)
            if second < len(self.per_second):
                self.per_second[second] += 1
        else:
            self.errors[kind] += 1
            self.sample(f"{kind}: {detail}")

    def sample(self, text: str) -> None:
        if len(self.samples) < ERROR_SAMPLES:
            self.samples.append(text)


class Client:
    """One simulated MCP client: a call, its answer, the next call."""

    def __init__(self, index: int, config: LoadConfig, session: aiohttp.ClientSession, tally: Tally) -> None:
        self.index = index
        self.config = config
        self.http = session
        self.tally = tally
        self.seq = 0
        self.session_id: str | None = None
        self.version = MODERN_VERSION if config.protocol == "modern" else config.handshake_version
        self.ready = config.protocol == "modern"
        pad = max(0, config.payload_bytes - 16)
        self.padding = "x" * pad
        base = {"Content-Type": "application/json", "Accept": ACCEPT}
        base.update(config.headers)
        self.base_headers = base
        if config.protocol == "modern":
            self.call_headers = {
                **base,
                "mcp-protocol-version": MODERN_VERSION,
                "mcp-method": "tools/call",
                "mcp-name": config.tool,
            }
        else:
            self.call_headers = dict(base)

    def next_id(self) -> int:
        self.seq += 1
        return self.seq

    async def handshake(self) -> None:
        """initialize + notifications/initialized; the negotiated version and session id are kept."""
        request_id = self.next_id()
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {
                "protocolVersion": self.config.handshake_version,
                "capabilities": {},
                "clientInfo": {"name": "mcpfleet-loadgen", "version": "1"},
            },
        }
        async with self.http.post(self.config.url, data=orjson.dumps(body), headers=self.base_headers) as response:
            if response.status != 200:
                raise CallFailed(f"init_http_{response.status}", _short(await response.read()))
            message = await read_message(response, request_id)
            session_id = response.headers.get("mcp-session-id")
        result = message.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("protocolVersion"), str):
            raise CallFailed("init_failed", _short(orjson.dumps(message)))
        self.version = result["protocolVersion"]
        self.tally.negotiated.add(self.version)
        self.session_id = session_id
        headers = {**self.base_headers, "mcp-protocol-version": self.version}
        if session_id:
            headers["mcp-session-id"] = session_id
            self.tally.session_ids += 1
        notification = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        async with self.http.post(self.config.url, data=orjson.dumps(notification), headers=headers) as response:
            await response.read()
            if response.status not in (200, 202, 204):
                raise CallFailed(f"initialized_http_{response.status}", "notifications/initialized refused")
        self.call_headers = headers
        self.ready = True

    async def close(self) -> None:
        if self.session_id is None:
            return
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with self.http.delete(self.config.url, headers=self.call_headers) as response:
                await response.read()

    def request(self) -> tuple[int, str, bytes]:
        request_id = self.next_id()
        text = f"c{self.index}-{request_id}{self.padding}"
        params: dict[str, Any] = {"name": self.config.tool, "arguments": {"text": text}}
        if self.config.protocol == "modern":
            params["_meta"] = {PROTOCOL_VERSION_META: MODERN_VERSION, CLIENT_CAPABILITIES_META: {}}
        body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
        return request_id, text, body

    async def call(self) -> None:
        request_id, text, body = self.request()
        async with self.http.post(self.config.url, data=body, headers=self.call_headers) as response:
            if response.status != 200:
                if response.status == 404 and self.session_id is not None:
                    self.ready = False  # the session is gone: a new handshake before the next call
                raise CallFailed(f"http_{response.status}", _short(await response.read()))
            message = await read_message(response, request_id)
        check_result(message, text)

    async def setup(self) -> None:
        """The handshake, its failure counted (the client tries again before its next call)."""
        try:
            await self.handshake()
        except CallFailed as exc:
            self.tally.setup_errors[exc.kind] += 1
            self.tally.sample(f"setup {exc.kind}: {exc.detail}")
            await asyncio.sleep(0.05)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.tally.setup_errors[f"exception_{type(exc).__name__}"] += 1
            self.tally.sample(f"setup {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        """Calls until the measured window is over (the window's end is set when the warm-up ends)."""
        clock = time.perf_counter
        first = True
        while clock() < self.tally.window_end:
            if not self.ready:
                await self.setup()
                continue
            started = clock()
            try:
                await self.call()
            except CallFailed as exc:
                self.tally.record(started, clock(), exc.kind, exc.detail)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.tally.record(started, clock(), f"exception_{type(exc).__name__}", str(exc))
                await asyncio.sleep(0.01)  # a refused connection must not spin the loop
            else:
                self.tally.record(started, clock(), None)
            if first:
                first = False
                self.tally.first_call_done()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def generate_load(config: LoadConfig) -> dict[str, Any]:
    """Run the load in this event loop and return the report (see the module docstring)."""
    if config.concurrency < 1 or config.seconds <= 0 or config.warmup_seconds < 0:
        raise ValueError("concurrency must be at least 1, seconds positive and warmup not negative")
    connector = aiohttp.TCPConnector(limit=config.concurrency, limit_per_host=config.concurrency, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=config.timeout)
    tally = Tally(concurrency=config.concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False
    ) as http:
        clients = [Client(i, config, http, tally) for i in range(config.concurrency)]
        if config.protocol == "handshake":  # every session exists before the clock starts
            await asyncio.gather(*(c.setup() for c in clients))
        tally.per_second = [0] * max(1, int(config.seconds))
        warmup_started = time.perf_counter()
        cpu_start = 0.0

        async def open_window() -> None:
            """After --warmup seconds, and once every client has had an answer (or the request timeout)."""
            nonlocal cpu_start
            await asyncio.sleep(config.warmup_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.all_started.wait(), config.timeout)
            cpu_start = cpu_seconds()
            tally.window_start = time.perf_counter()
            tally.window_end = tally.window_start + config.seconds

        opener = asyncio.create_task(open_window())
        try:
            await asyncio.gather(*(c.run() for c in clients))
        finally:
            opener.cancel()
        cpu_end = cpu_seconds()
        await asyncio.gather(*(c.close() for c in clients))
    calls = len(tally.latencies)
    errors = sum(tally.errors.values())
    return {
        "url": config.url,
        "tool": config.tool,
        "protocol": config.protocol,
        "protocol_versions": sorted(tally.negotiated) if config.protocol == "handshake" else [MODERN_VERSION],
        "sessions": tally.session_ids,
        "concurrency": config.concurrency,
        "warmup_seconds": config.warmup_seconds,
        "warmup_seconds_actual": round(tally.window_start - warmup_started, 2),
        "seconds": config.seconds,
        "payload_bytes": config.payload_bytes,
        "calls": calls,
        "calls_per_second": round(calls / config.seconds, 1),
        "latency_ms": latency_ms(tally.latencies),
        "per_second": tally.per_second,
        "errors": errors,
        "error_kinds": dict(tally.errors),
        "setup_errors": dict(tally.setup_errors),
        "warmup_calls": tally.warmup_calls,
        "warmup_errors": dict(tally.warmup_errors),
        "error_samples": tally.samples,
        "loadgen_cpu_seconds": round(cpu_end - cpu_start, 2),
        "loadgen": {
            "python": platform.python_version(),
            "aiohttp": version("aiohttp"),
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "pid": os.getpid(),
        },
    }


def run_in_this_process(config: LoadConfig) -> dict[str, Any]:
    """generate_load on a new event loop (uvloop when installed)."""
    try:
        import uvloop  # noqa: PLC0415

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(generate_load(config))
    except ImportError:
        return asyncio.run(generate_load(config))


# ------------------------------------------------------------------ as a subprocess


def loadgen_command(config: LoadConfig, json_path: Path, python: str | None = None) -> list[str]:
    return [python or sys.executable, str(Path(__file__).resolve()), *config.argv(), "--json", str(json_path), "-q"]


def _finish(returncode: int, json_path: Path, stderr: str, allow_errors: bool) -> dict[str, Any]:
    try:
        report: dict[str, Any] = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        raise LoadgenError(f"the load generator exited {returncode} without a report: {stderr[-2000:]}") from exc
    finally:
        with contextlib.suppress(OSError):
            json_path.unlink()
    failed = report["errors"] or sum(report["setup_errors"].values()) or not report["calls"]
    if failed and not allow_errors:
        raise LoadgenError(
            f"{report['url']}: {report['calls']} calls, {report['errors']} errors {report['error_kinds']}, "
            f"setup errors {report['setup_errors']}; samples: {report['error_samples']}"
        )
    return report


def _json_path() -> Path:
    handle, name = tempfile.mkstemp(prefix="mcpfleet-loadgen-", suffix=".json")
    os.close(handle)
    return Path(name)


def run_loadgen(config: LoadConfig, *, python: str | None = None, allow_errors: bool = False) -> dict[str, Any]:
    """Run the load generator as its own process and return its report.

    Raises LoadgenError when it fails, or when it measured any error (or no successful call) unless
    ``allow_errors``: then the report says how many and which.
    """
    json_path = _json_path()
    limit = config.warmup_seconds + config.seconds + 2 * config.timeout + 60
    done = subprocess.run(
        loadgen_command(config, json_path, python), capture_output=True, text=True, timeout=limit, check=False
    )
    return _finish(done.returncode, json_path, done.stderr, allow_errors)


async def run_loadgen_async(
    config: LoadConfig, *, python: str | None = None, allow_errors: bool = False
) -> dict[str, Any]:
    """run_loadgen without blocking the caller's event loop."""
    json_path = _json_path()
    limit = config.warmup_seconds + config.seconds + 2 * config.timeout + 60
    proc = await asyncio.create_subprocess_exec(
        *loadgen_command(config, json_path, python), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), limit)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return _finish(proc.returncode or 0, json_path, stderr.decode(errors="replace"), allow_errors)


# ------------------------------------------------------------------ the script


def _header(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected Name:Value, got {text!r}")
    return key.strip(), value.strip()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:9100/mcp")
    parser.add_argument("--concurrency", type=int, default=1, help="concurrent clients (default 1)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (default 2)")
    parser.add_argument("--tool", default="echo", help="the tool to call with {'text': ...} (default echo)")
    parser.add_argument(
        "--header", type=_header, action="append", default=[], help="extra request header Name:Value (repeatable)"
    )
    parser.add_argument("--protocol", choices=("modern", "handshake"), default="modern", help="default modern")
    parser.add_argument(
        "--handshake-version",
        default=HANDSHAKE_VERSIONS[0],
        help=f"protocolVersion sent in initialize with --protocol handshake (default {HANDSHAKE_VERSIONS[0]})",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--payload-bytes", type=int, default=0, help="pad the echoed text to this size (default 0)")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON to this file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary on stdout")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--concurrency must be at least 1, --seconds positive and --warmup not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = LoadConfig(
        url=args.url,
        concurrency=args.concurrency,
        seconds=args.seconds,
        warmup_seconds=args.warmup,
        tool=args.tool,
        headers=dict(args.header),
        protocol=args.protocol,
        handshake_version=args.handshake_version,
        timeout=args.timeout,
        payload_bytes=args.payload_bytes,
    )
    report = run_in_this_process(config)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if not args.quiet:
        lat = report["latency_ms"]
        print(
            f"{report['url']} c={report['concurrency']} {report['protocol']} {','.join(report['protocol_versions'])}: "
            f"{report['calls_per_second']} calls/s, p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, "
            f"max {lat['max']} ms; {report['calls']} calls, {report['errors']} errors {report['error_kinds'] or ''}"
            f"{'; setup errors ' + str(report['setup_errors']) if report['setup_errors'] else ''}; "
            f"loadgen CPU {report['loadgen_cpu_seconds']} s"
        )
        for sample in report["error_samples"]:
            print(f"  {sample}")
    failed = report["errors"] or report["setup_errors"] or not report["calls"]
    return EXIT_ERRORS if failed else 0


if __name__ == "__main__":
    sys.exit(main())
