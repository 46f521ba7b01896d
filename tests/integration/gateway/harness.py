"""Building blocks of the gateway tests: tokens, config files, a gateway in-process or as a process, clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import jwt
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_gateway.auth import hash_api_key
from mcpfleet_gateway.config import GatewaySettings, load_config
from mcpfleet_gateway.run import GatewayRunner, build_gateway, running

SECRET = "gateway-test-secret-0123456789abcdef"
AUDIENCE = "https://gateway.test/mcp"
ISSUER = "https://idp.test"
BOT_KEY = "bot-key-0123456789"
REVOKED_KEY = "revoked-key-0123456789"
IN_PROCESS_FLEET = {"transport": "in-process", "target": "tests.integration.gateway.fleet_app:build"}
ROOT = Path(__file__).resolve().parents[3]


def token(
    subject: str,
    roles: tuple[str, ...] = (),
    *,
    expires_in: float = 600,
    audience: str = AUDIENCE,
    secret: str = SECRET,
    issuer: str = ISSUER,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {
        "sub": subject,
        "roles": list(roles),
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "exp": now + int(expires_in),
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def config_document(
    directory: Path,
    *,
    upstreams: dict[str, Any] | None = None,
    redis_url: str | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A complete config: HS256 auth, the seed's namespace scoping, audit to a file (and Redis when given)."""
    document: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "auth": {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "hs256_secret": SECRET,
            "algorithms": ["HS256"],
            "api_keys": [
                {"name": "deploy-bot", "sha256": hash_api_key(BOT_KEY), "roles": ["operator"]},
                {"name": "old-bot", "sha256": hash_api_key(REVOKED_KEY), "roles": ["admin"], "revoked": True},
            ],
            "group_roles": {"sre": ["operator"]},
        },
        "rbac": {"namespace_roles": {"production": ["admin"], "staging": ["operator", "admin"]}},
        "audit": {
            "log_path": str(directory / "audit-{replica}.jsonl"),
            "spool_dir": str(directory / "spool-{replica}"),
            "redis_stream": "mcpfleet:audit:{replica}" if redis_url else None,
        },
        "upstreams": upstreams if upstreams is not None else {"fleet": IN_PROCESS_FLEET},
    }
    if redis_url:
        document["redis"] = {"url": redis_url}
    for key, value in sections.items():
        document[key] = value
    return document


def write_config(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    return path


@contextlib.asynccontextmanager
async def gateway_at(config: Path, replica: str = "gw-test") -> AsyncIterator[GatewayRunner]:
    settings = GatewaySettings(config=config, replica=replica)
    async with running(build_gateway(settings, load_config(settings))) as runner:
        yield runner


def base_url(runner: GatewayRunner) -> str:
    return f"http://127.0.0.1:{runner.port}"


def headers(bearer: str | None = None, api_key: str | None = None) -> dict[str, str]:
    found = {}
    if bearer is not None:
        found["Authorization"] = f"Bearer {bearer}"
    if api_key is not None:
        found["X-API-Key"] = api_key
    return found


@contextlib.asynccontextmanager
async def mcp_client(
    url: str, bearer: str | None = None, *, api_key: str | None = None, mode: str = "auto", **options: Any
) -> AsyncIterator[Client]:
    """A real MCP client session over streamable HTTP with the caller's credentials."""
    async with httpx2.AsyncClient(headers=headers(bearer, api_key), timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, **options) as client:
            yield client


@contextlib.asynccontextmanager
async def listening_client(runner: GatewayRunner, bearer: str) -> AsyncIterator[tuple[Client, asyncio.Event]]:
    """A handshake-era session on the gateway, and an event set when it is told tools/list_changed."""
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with mcp_client(f"{base_url(runner)}/mcp", bearer, mode="legacy", message_handler=on_message) as client:
        yield client, changed


class GatewayProcess:
    """`mcpfleet gateway` as a separate process (several replicas, kill tests)."""

    def __init__(self, config: Path, replica: str, log: Path) -> None:
        self.config = config
        self.replica = replica
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        env = {**os.environ, "MCPFLEET_GATEWAY_REPLICA": self.replica, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mcpfleet_cli.main",
                    "gateway",
                    "--config",
                    str(self.config),
                    "--port",
                    str(self.port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway {self.replica} exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"gateway {self.replica} not ready in {timeout} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def gateway_processes(config: Path, count: int, directory: Path) -> Iterator[list[GatewayProcess]]:
    processes = [GatewayProcess(config, f"gw-{i}", directory / f"gw-{i}.log") for i in range(count)]
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.stop()
