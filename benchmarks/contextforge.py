"""IBM ContextForge (PyPI ``mcp-contextforge-gateway``) in front of an MCP upstream, for the gateway benchmarks.

:func:`start_contextforge` starts ContextForge on loopback and registers the upstream through its REST API:
the upstream as a federated gateway (``POST /gateways``, streamable HTTP), which makes ContextForge list its
tools, then a virtual server (``POST /servers``) holding the upstream's tool. It returns a
:class:`ContextForge`: the process, the virtual server's MCP endpoint (``/servers/<id>/mcp``), the headers a
client sends (a bearer JWT minted here with the secret ContextForge was given) and the tool's name as
ContextForge exposes it (``<gateway slug>-<tool>``, e.g. ``bench-upstream-echo``).

Which ContextForge: 1.1.0 and later require Python 3.12; this runs :data:`CONTEXTFORGE_VERSION`, the newest
release that installs on Python 3.11, in a venv of its own under ``$MCPFLEET_CACHE_DIR/bench/contextforge``
(default ``~/.cache/mcpfleet/bench/contextforge``), made with ``python3 -m venv`` and pip when missing.

How it runs (see :func:`contextforge_env` for every setting and why):

* the way its docs give for production on one node (``make serve``, ``run-gunicorn.sh``, the container's
  default ``HTTP_SERVER=gunicorn``): gunicorn with Uvicorn workers (uvloop and httptools), ``--preload``,
  access log off, with the flags of its ``run-gunicorn.sh``; but ONE worker process (its default is
  2 x CPUs + 1), so that it is compared with a single-process gateway on equal terms;
* SQLite in a temporary directory, no Redis (what ``make serve`` uses); admin UI and admin API off;
  ``ENVIRONMENT=production`` (strong secrets enforced), random secrets;
* authentication on: ``AUTH_REQUIRED`` and MCP client authentication (its defaults), a JWT (HS256, with
  the ``exp`` and ``jti`` claims it requires) for a user; by default a non-admin user created through its
  admin REST API and given a global role with ``tools.execute`` (and read/use of servers), because
  ContextForge lets platform admins bypass every RBAC check (``user="admin"`` measures that path);
* its rate limiter stays on, but the limit of the tier its MCP endpoints fall in (MEDIUM: ``/mcp``,
  ``/servers/...``) is raised so that the load never trips it: at its default (100 requests per minute
  per client IP and per user, then a 15-minute lockout after 5 rejections) a benchmark measures
  HTTP 429s after the first seconds. ``rate_limit="default"`` keeps the default, ``"off"`` removes the
  middleware;
* stateful streamable HTTP sessions (``USE_STATEFUL_SESSIONS=true``; its default is false), with JSON
  responses: its faster mode. ContextForge reuses an MCP session to the upstream only within one
  downstream session (``mcp-session-id``); stateless, it opens a new HTTP client (with a new TLS context,
  even for an ``http://`` upstream) and a new MCP session (``initialize``) to the upstream for every tool
  call, which costs it more than half of its throughput. ``stateful=False`` measures its default;
* the rest at its defaults, which this module reports in :attr:`ContextForge.notes`: OpenTelemetry
  and the observability middleware off, Prometheus metrics off, audit trail off; RBAC, structured
  logging, per-tool metrics buffered into the database, token-usage logging, performance tracking,
  correlation IDs, security headers, response compression, header-size checks and CSRF middleware on.

ContextForge speaks the handshake revisions only (up to 2025-11-25; a 2026-07-28 request gets HTTP 400):
load it with ``loadgen --protocol handshake``.

Run ``.venv/bin/python benchmarks/contextforge.py --help``: it starts the echo upstream and ContextForge,
checks both with the load generator and prints the numbers side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jwt

# `python benchmarks/contextforge.py` puts benchmarks/ on sys.path, not the repository root; the load
# generator is imported as benchmarks.loadgen, so the root goes first.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.loadgen import LoadConfig, run_loadgen  # noqa: E402

from mcpfleet_cli.devcluster.cluster import free_port  # noqa: E402

PACKAGE = "mcp-contextforge-gateway"
CONTEXTFORGE_VERSION = "1.0.7.post20260921"
GATEWAY_NAME = "bench-upstream"
SERVER_NAME = "bench"
ADMIN_EMAIL = "bench-admin@example.com"
USER_EMAIL = "bench-user@example.com"
USER_ROLE = "bench-tool-user"  # a global role made here: what calling a tool of a virtual server takes
USER_PERMISSIONS = ["servers.read", "servers.use", "tools.read", "tools.execute"]
JWT_AUDIENCE = "mcpgateway-api"  # its defaults for JWT_AUDIENCE and JWT_ISSUER
JWT_ISSUER = "mcpgateway"
RAISED_RATE_LIMIT_RPM = 100_000_000
READY_TIMEOUT = 240.0
HTTP_TIMEOUT = 60.0

RateLimit = Literal["raised", "default", "off"]
User = Literal["member", "admin"]


class ContextForgeError(RuntimeError):
    """ContextForge could not be installed, started or configured."""


# ------------------------------------------------------------------ the venv


def cache_dir() -> Path:
    return Path(os.environ.get("MCPFLEET_CACHE_DIR") or Path.home() / ".cache" / "mcpfleet")


def default_venv() -> Path:
    return cache_dir() / "bench" / "contextforge"


def installed_version(venv: Path) -> str | None:
    """The mcp-contextforge-gateway version installed in the venv, or None."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", f"from importlib.metadata import version; print(version({PACKAGE!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def ensure_venv(venv: Path | None = None, *, python: str = "python3", version: str = CONTEXTFORGE_VERSION) -> Path:
    """The venv with ContextForge ``version`` (and gunicorn, which it depends on); made or fixed when needed."""
    venv = venv or default_venv()
    if installed_version(venv) == version and (venv / "bin" / "gunicorn").exists():
        return venv
    print(f"contextforge: installing {PACKAGE}=={version} into {venv} (a few minutes) ...", flush=True)
    if not (venv / "bin" / "python").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, f"{PACKAGE}=={version}"], capture_output=True, text=True, check=False)
    if done.returncode != 0 or installed_version(venv) != version:
        raise ContextForgeError(f"pip install {PACKAGE}=={version} failed: {done.stderr[-3000:]}")
    return venv


# ------------------------------------------------------------------ configuration


def strong_secret() -> str:
    return secrets.token_urlsafe(48)


def strong_password() -> str:
    """Meets its password policy: upper and lower case, a digit, a special character, 22+ characters."""
    return "Bx7!" + secrets.token_urlsafe(24)


def contextforge_env(
    *, port: int, workdir: Path, secrets_: Mapping[str, str], rate_limit: RateLimit, stateful: bool
) -> dict[str, str]:
    """The settings ContextForge runs with (its settings are environment variables)."""
    env = {
        # Where and what: loopback, SQLite in the temporary directory, production mode.
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "APP_DOMAIN": f"http://127.0.0.1:{port}",
        "DATABASE_URL": f"sqlite:///{workdir / 'mcp.db'}",
        "ENVIRONMENT": "production",  # refuses weak secrets
        "LOG_LEVEL": "ERROR",  # its default
        "MCPGATEWAY_UI_ENABLED": "false",
        "MCPGATEWAY_ADMIN_API_ENABLED": "false",
        # Authentication on (its defaults, stated): every REST and MCP request needs the bearer JWT.
        "AUTH_REQUIRED": "true",
        "MCP_CLIENT_AUTH_ENABLED": "true",
        "JWT_ALGORITHM": "HS256",
        "JWT_SECRET_KEY": secrets_["jwt"],
        "AUTH_ENCRYPTION_SECRET": secrets_["encryption"],
        "BASIC_AUTH_PASSWORD": secrets_["basic"],
        "PLATFORM_ADMIN_EMAIL": ADMIN_EMAIL,
        "PLATFORM_ADMIN_PASSWORD": secrets_["admin_password"],
        # The upstream listens on loopback: its SSRF guard refuses localhost URLs unless told otherwise.
        "SSRF_ALLOW_LOCALHOST": "true",
        # The transport: stateful sessions unless told otherwise (its default: stateless), JSON responses.
        "USE_STATEFUL_SESSIONS": "true" if stateful else "false",
        "JSON_RESPONSE_ENABLED": "true",
        # Single-node default: no Redis (the cache lives in the database), as `make serve` runs it.
        "CACHE_TYPE": "database",
    }
    if rate_limit == "off":
        env["RATE_LIMITING_ENABLED"] = "false"
    elif rate_limit == "raised":
        env["RATE_LIMITING_ENABLED"] = "true"
        env["RATE_LIMIT_MEDIUM_RPM"] = str(RAISED_RATE_LIMIT_RPM)
        env["RATE_LIMIT_LOW_RPM"] = str(RAISED_RATE_LIMIT_RPM)
    return env


def gunicorn_command(venv: Path, port: int) -> list[str]:
    """run-gunicorn.sh's command line (the production launcher in its repository), with ONE worker."""
    return [
        str(venv / "bin" / "gunicorn"),
        "--worker-class",
        "uvicorn.workers.UvicornWorker",  # uvloop + httptools when installed (they are)
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "600",
        "--max-requests",
        "100000",
        "--max-requests-jitter",
        "100",
        "--preload",
        "--access-logfile",
        "/dev/null",
        "--error-logfile",
        "-",
        "--forwarded-allow-ips=*",
        "--no-control-socket",
        "mcpgateway.main:app",
    ]


NOTES = {
    "server": "gunicorn + uvicorn.workers.UvicornWorker (uvloop, httptools), 1 worker, --preload, no access log",
    "database": "SQLite in a temporary directory; no Redis (CACHE_TYPE=database)",
    "auth": "AUTH_REQUIRED=true, MCP_CLIENT_AUTH_ENABLED=true, HS256 JWT with exp+jti, user must exist in its DB",
    "transport": "streamable HTTP; handshake revisions only (2025-11-25 latest); JSON responses",
    "on_by_default": [
        "RBAC (admins bypass it)",
        "rate limiting middleware (in memory without Redis)",
        "structured logging",
        "per-call tool metrics, buffered into the database every 60 s",
        "token usage logging",
        "performance tracking",
        "correlation IDs",
        "security headers",
        "response compression (bodies >= 500 B)",
        "header size validation",
        "CSRF middleware (state-changing browser requests)",
        "auth cache, registry cache, tool lookup cache",
    ],
    "off_by_default": [
        "OpenTelemetry and the observability middleware",
        "Prometheus metrics (ENABLE_METRICS)",
        "audit trail",
        "permission audit",
        "plugins",
        "Rust MCP runtime (experimental; not in the Python package)",
    ],
}


# ------------------------------------------------------------------ tokens and REST calls


def mint_token(secret: str, email: str, *, minutes: int = 24 * 60) -> str:
    """A JWT as ContextForge's own create_jwt_token mints it: sub, iat, exp, iss, aud, jti, env."""
    now = int(time.time())
    claims = {
        "sub": email,
        "iat": now,
        "exp": now + minutes * 60,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "jti": str(uuid.uuid4()),
        "env": "production",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def rest(base_url: str, method: str, path: str, token: str, body: Any = None) -> Any:
    """One REST call with the bearer token; the parsed JSON answer, or ContextForgeError."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base_url}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:2000]
        raise ContextForgeError(f"{method} {path}: HTTP {exc.code}: {detail}") from exc
    return json.loads(raw) if raw else None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


# ------------------------------------------------------------------ the running gateway


@dataclass
class ContextForge:
    """A running ContextForge with the upstream registered: what a client needs, and how to stop it."""

    process: subprocess.Popen[bytes]
    url: str  # the virtual server's MCP endpoint
    headers: dict[str, str]  # Authorization: Bearer <JWT>
    tool: str  # the upstream's tool as ContextForge names it
    base_url: str
    admin_token: str
    server_id: str
    gateway_id: str
    workdir: Path
    log_path: Path
    version: str
    env: dict[str, str]  # the settings it runs with, secrets redacted
    command: list[str]
    notes: dict[str, Any] = field(default_factory=lambda: dict(NOTES))
    owns_workdir: bool = False  # made by start_contextforge: stop() removes it

    def __iter__(self) -> Iterator[Any]:
        """``process, url, headers, tool = start_contextforge(...)`` works too."""
        return iter((self.process, self.url, self.headers, self.tool))

    def worker_pids(self) -> list[int]:
        """The gunicorn worker process(es): the one doing the work (the master only supervises)."""
        with contextlib.suppress(OSError):
            path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            return [int(pid) for pid in path.read_text().split()]
        return []

    def stop(self, grace: float = 20.0, *, keep_workdir: bool = False) -> int | None:
        """SIGTERM to gunicorn (it stops its worker), SIGKILL to its process group after ``grace`` seconds;
        then the temporary directory goes (database and log), unless the caller gave it or ``keep_workdir``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only what it started
                self.process.wait()
        if self.owns_workdir and not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.process.returncode

    def __enter__(self) -> ContextForge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ContextForgeError(f"ContextForge exited with {proc.returncode}: {log_tail(log_path)}")
        if http_ok(f"{base_url}/health"):
            return
        time.sleep(0.5)
    raise ContextForgeError(f"ContextForge not ready after {timeout:.0f} s: {log_tail(log_path)}")


def log_tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _create_member(base_url: str, admin_token: str) -> None:
    """A non-admin user with a global role holding USER_PERMISSIONS, so that calls go through its RBAC checks."""
    rest(
        base_url,
        "POST",
        "/auth/email/admin/users",
        admin_token,
        {
            "email": USER_EMAIL,
            "password": strong_password(),
            "full_name": "Benchmark User",
            "is_admin": False,
            "is_active": True,
            "password_change_required": False,
        },
    )
    role = rest(
        base_url,
        "POST",
        "/rbac/roles",
        admin_token,
        {"name": USER_ROLE, "description": "benchmark client", "scope": "global", "permissions": USER_PERMISSIONS},
    )
    rest(base_url, "POST", f"/rbac/users/{USER_EMAIL}/roles", admin_token, {"role_id": role["id"], "scope": "global"})


def register_upstream(base_url: str, admin_token: str, upstream_url: str, tool: str) -> tuple[str, str, str]:
    """The upstream as a gateway, its tool in a virtual server: (gateway id, server id, exposed tool name)."""
    gateway = rest(
        base_url,
        "POST",
        "/gateways",
        admin_token,
        {"name": GATEWAY_NAME, "url": upstream_url, "transport": "STREAMABLEHTTP", "visibility": "public"},
    )
    tools = rest(base_url, "GET", "/tools?include_inactive=false", admin_token)
    found = [
        t
        for t in (tools if isinstance(tools, list) else tools.get("items", []))
        if t.get("gatewayId") == gateway["id"] and t.get("originalName") == tool
    ]
    if not found:
        raise ContextForgeError(f"ContextForge did not discover {tool!r} on {upstream_url}: {tools}")
    server = rest(
        base_url,
        "POST",
        "/servers",
        admin_token,
        {"server": {"name": SERVER_NAME, "associated_tools": [found[0]["id"]], "visibility": "public"}},
    )
    return str(gateway["id"]), str(server["id"]), str(found[0]["name"])


def start_contextforge(
    upstream_url: str,
    *,
    tool: str = "echo",
    port: int | None = None,
    workdir: Path | None = None,
    venv: Path | None = None,
    rate_limit: RateLimit = "raised",
    stateful: bool = True,
    user: User = "member",
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> ContextForge:
    """Start ContextForge on loopback in front of ``upstream_url`` (an MCP streamable HTTP endpoint).

    Blocks until it is ready and configured (it migrates a new database first: 10 to 30 s here).
    The caller stops it: ``.stop()``, or use the result as a context manager.
    """
    venv = ensure_venv(venv)
    port = port or free_port()
    owns_workdir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="mcpfleet-bench-contextforge-"))
    workdir.mkdir(parents=True, exist_ok=True)
    keys = {
        "jwt": strong_secret(),
        "encryption": strong_secret(),
        "basic": strong_secret(),
        "admin_password": strong_password(),
    }
    settings = contextforge_env(port=port, workdir=workdir, secrets_=keys, rate_limit=rate_limit, stateful=stateful)
    settings.update(extra_env or {})
    # Its settings come from the environment and from a .env in the working directory: a clean environment
    # (no stray MCP_/JWT_ variables of the caller) and an empty directory.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if key in os.environ}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    env["VIRTUAL_ENV"] = str(venv)
    log_path = workdir / "contextforge.log"
    base_url = f"http://127.0.0.1:{port}"
    command = gunicorn_command(venv, port)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, base_url, log_path, ready_timeout)
        admin_token = mint_token(keys["jwt"], ADMIN_EMAIL)
        gateway_id, server_id, exposed = register_upstream(base_url, admin_token, upstream_url, tool)
        if user == "member":
            _create_member(base_url, admin_token)
            token = mint_token(keys["jwt"], USER_EMAIL)
        else:
            token = admin_token
    except BaseException:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
    redacted = {
        key: ("<random>" if key in {"JWT_SECRET_KEY", "AUTH_ENCRYPTION_SECRET"} or "PASSWORD" in key else value)
        for key, value in settings.items()
    }
    notes = dict(NOTES)
    notes["user"] = f"{USER_EMAIL} (role {USER_ROLE})" if user == "member" else f"{ADMIN_EMAIL} (platform admin)"
    notes["rate_limit"] = {
        "raised": f"on, MEDIUM and LOW tiers raised to {RAISED_RATE_LIMIT_RPM} requests/min",
        "default": "on at its defaults (MEDIUM tier: 100 requests/min per IP and per user)",
        "off": "RATE_LIMITING_ENABLED=false",
    }[rate_limit]
    notes["sessions"] = (
        "stateful: USE_STATEFUL_SESSIONS=true, one upstream MCP session per downstream session"
        if stateful
        else "stateless (its default): a new upstream HTTP client and MCP session for every tool call"
    )
    return ContextForge(
        process=proc,
        url=f"{base_url}/servers/{server_id}/mcp",
        headers={"Authorization": f"Bearer {token}"},
        tool=exposed,
        base_url=base_url,
        admin_token=admin_token,
        server_id=server_id,
        gateway_id=gateway_id,
        workdir=workdir,
        log_path=log_path,
        version=installed_version(venv) or "?",
        env=redacted,
        command=command,
        notes=notes,
        owns_workdir=owns_workdir,
    )


# ------------------------------------------------------------------ the script: a check, side by side


def start_upstream(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "upstream_echo.py"), "--port", str(port)],
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not http_ok(f"http://127.0.0.1:{port}/health"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise ContextForgeError("the echo upstream did not start")
        time.sleep(0.2)
    return proc


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--upstream-url", default=None, help="an MCP endpoint to put behind it (default: start one)")
    parser.add_argument("--tool", default="echo", help="the upstream's echo tool (default echo)")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(v) for v in text.split(",") if v.strip()],
        default=[1, 10, 50],
        help="comma-separated numbers of concurrent clients (default 1,10,50)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per level (default 3)")
    parser.add_argument("--rate-limit", choices=("raised", "default", "off"), default="raised")
    parser.add_argument("--user", choices=("member", "admin"), default="member")
    parser.add_argument("--stateless", action="store_true", help="USE_STATEFUL_SESSIONS=false (its default; slower)")
    parser.add_argument("--keep", action="store_true", help="leave ContextForge running (prints how to reach it)")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON to this file")
    return parser.parse_args(argv)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(config: LoadConfig, pids: Mapping[str, int]) -> dict[str, Any]:
    """One load generator run, with the CPU each named process used during it (warm-up included)."""
    before = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    report = run_loadgen(config, allow_errors=True)
    wall = time.monotonic() - started
    report["cpu_percent_of_one_core"] = {
        name: round(100 * (proc_cpu_seconds(pid) - before[name]) / wall, 1) for name, pid in pids.items()
    }
    return report


def _row(name: str, report: dict[str, Any]) -> str:
    lat = report["latency_ms"]
    cpu = ", ".join(f"{k} {v}%" for k, v in report["cpu_percent_of_one_core"].items())
    return (
        f"  {name:<22} c={report['concurrency']:<3} {report['calls_per_second']:>8.1f} calls/s"
        f"  p50 {lat['p50']:>8.2f} ms  p99 {lat['p99']:>8.2f} ms  errors {report['errors']}  CPU: {cpu}"
    )


def compare(args: argparse.Namespace, upstream_url: str, upstream_pid: int | None, gateway: ContextForge) -> list[Any]:
    """Direct (both protocol eras) and through ContextForge (handshake), level by level."""
    levels: list[Any] = []
    workers = gateway.worker_pids()
    pids = {"contextforge": workers[0]} if workers else {}
    if upstream_pid is not None:
        pids["upstream"] = upstream_pid
    for concurrency in args.concurrency:
        common = {"concurrency": concurrency, "seconds": args.seconds, "warmup_seconds": args.warmup}
        runs = {
            "direct_modern": LoadConfig(url=upstream_url, tool=args.tool, protocol="modern", **common),
            "direct_handshake": LoadConfig(url=upstream_url, tool=args.tool, protocol="handshake", **common),
            "contextforge_handshake": LoadConfig(
                url=gateway.url, tool=gateway.tool, headers=gateway.headers, protocol="handshake", **common
            ),
        }
        level: dict[str, Any] = {"concurrency": concurrency}
        for name, config in runs.items():
            level[name] = measure(config, pids)
            print(_row(name, level[name]), flush=True)
        direct, through = level["direct_handshake"], level["contextforge_handshake"]
        level["ratios"] = {
            "calls_per_second_direct_over_contextforge": ratio(direct["calls_per_second"], through["calls_per_second"]),
            "p50_contextforge_over_direct": ratio(through["latency_ms"]["p50"], direct["latency_ms"]["p50"]),
            "p99_contextforge_over_direct": ratio(through["latency_ms"]["p99"], direct["latency_ms"]["p99"]),
        }
        print(f"  ratios (handshake, direct vs ContextForge): {level['ratios']}", flush=True)
        levels.append(level)
    return levels


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    upstream: subprocess.Popen[bytes] | None = None
    upstream_url = args.upstream_url
    if upstream_url is None:
        port = free_port()
        upstream = start_upstream(port)
        upstream_url = f"http://127.0.0.1:{port}/mcp"
    results: dict[str, Any] = {
        "upstream_url": upstream_url,
        "machine": {"cpus": os.cpu_count(), "load_average_before": os.getloadavg()},
    }
    try:
        started = time.monotonic()
        gateway = start_contextforge(
            upstream_url, tool=args.tool, rate_limit=args.rate_limit, stateful=not args.stateless, user=args.user
        )
        print(f"contextforge {gateway.version}: {gateway.url} ready in {time.monotonic() - started:.1f} s")
        print(f"  tool {gateway.tool!r}; {gateway.notes['user']}; workdir {gateway.workdir}", flush=True)
        results["contextforge"] = {
            "version": gateway.version,
            "url": gateway.url,
            "tool": gateway.tool,
            "env": gateway.env,
            "command": gateway.command,
            "notes": gateway.notes,
        }
        try:
            results["levels"] = compare(args, upstream_url, upstream.pid if upstream else None, gateway)
        finally:
            if args.keep:
                print(f"left running: pid {gateway.process.pid}, {gateway.url}, {gateway.headers}")
            else:
                gateway.stop()
    finally:
        if upstream is not None and not args.keep:
            upstream.terminate()
            upstream.wait()
    results["machine"]["load_average_after"] = os.getloadavg()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"result: {args.json}")
    failed = any(
        run["errors"]
        for level in results["levels"]
        for run in level.values()
        if isinstance(run, dict) and "errors" in run
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
