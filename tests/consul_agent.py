"""A real Consul agent in dev mode for tests: loopback only, its own ports, stoppable and restartable.

Dev mode keeps everything in memory, so a restart comes back empty: exactly the outage after which
registrations must be restored. The binary comes from the cached toolchain (`make test` builds consul
once into ~/.cache/mcpfleet); $MCPFLEET_TOOLS_BIN or PATH may provide it instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpfleet_cli.devcluster.cluster import free_port

TOOLS_SCRIPT = Path(__file__).resolve().parents[1] / "hack" / "tools" / "tools.py"
MISSING = "consul is not built: run `make test` (it builds consul into ~/.cache/mcpfleet once) or `make tools`"


def consul_binary() -> Path:
    """$MCPFLEET_TOOLS_BIN/consul, the toolchain's cached build, or consul on PATH."""
    if os.environ.get("MCPFLEET_TOOLS_BIN"):
        candidate = Path(os.environ["MCPFLEET_TOOLS_BIN"]) / "consul"
        if candidate.exists():
            return candidate
    result = subprocess.run(
        [sys.executable, str(TOOLS_SCRIPT), "bindir", "consul"], capture_output=True, text=True, check=False
    )
    if result.returncode == 0 and (Path(result.stdout.strip()) / "consul").exists():
        return Path(result.stdout.strip()) / "consul"
    found = shutil.which("consul")
    if found is None:
        raise RuntimeError(MISSING)
    return Path(found)


def distinct_free_ports(count: int) -> list[int]:
    """Ports free right now and all different: held open together while the kernel picks them."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@dataclass
class ConsulAgent:
    directory: Path
    http_port: int = field(default_factory=free_port)
    # Serf, RPC and gRPC need ports too; fixed per agent so that a restart binds the same ones.
    ports: dict[str, int] = field(
        default_factory=lambda: dict(
            zip(("serf_lan", "serf_wan", "server", "grpc"), distinct_free_ports(4), strict=True)
        )
    )
    process: subprocess.Popen[bytes] | None = None
    # With a token: ACLs on, everything denied by default, this token the initial management token.
    management_token: str | None = None

    def __post_init__(self) -> None:
        # Consul refuses to start when two of its listeners share a port.
        while self.http_port in self.ports.values():
            self.http_port = free_port()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = {
            "ports": {"http": self.http_port, "dns": -1, "grpc_tls": -1, **self.ports},
            "bind_addr": "127.0.0.1",
            "client_addr": "127.0.0.1",
            "advertise_addr": "127.0.0.1",
            "log_level": "warn",
            "disable_update_check": True,
        }
        if self.management_token is not None:
            config["acl"] = {
                "enabled": True,
                "default_policy": "deny",
                "tokens": {"initial_management": self.management_token},
            }
        config_file = self.directory / "agent.json"
        config_file.write_text(json.dumps(config))
        log = (self.directory / "consul.log").open("ab")
        self.process = subprocess.Popen(
            [str(consul_binary()), "agent", "-dev", "-config-file", str(config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"consul exited with {self.process.returncode}; see {self.directory}/consul.log")
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                if self.get("/v1/status/leader"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"consul elected no leader within {timeout} s; see {self.directory}/consul.log")

    def get(self, path: str) -> Any:
        """A GET against the agent's HTTP API (what a person would check with curl)."""
        request = urllib.request.Request(self.address + path)
        if self.management_token is not None:
            request.add_header("X-Consul-Token", self.management_token)
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read() or b"null")

    def services(self) -> dict[str, Any]:
        """The agent's registered services by id."""
        found: dict[str, Any] = self.get("/v1/agent/services")
        return found

    def checks(self) -> dict[str, Any]:
        found: dict[str, Any] = self.get("/v1/agent/checks")
        return found

    def stop(self) -> None:
        """SIGKILL: Consul is gone without a goodbye, as in a crash or a partition."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_consul(directory: Path) -> Iterator[ConsulAgent]:
    agent = ConsulAgent(directory)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()
