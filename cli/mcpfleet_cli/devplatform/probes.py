"""Blocking health probes for the platform's processes; `mcpfleet dev` polls them from its main thread."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.error
import urllib.request
from typing import Any

PROBE_TIMEOUT_SECONDS = 2.0


def http_json(url: str) -> tuple[int, Any]:
    """Status and JSON body of a GET; (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(exc.read() or b"null")
        return exc.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def redis_answers(port: int) -> bool:
    """PING over a plain socket: whether redis-server accepts commands yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_SECONDS) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def consul_has_leader(address: str) -> bool:
    status, leader = http_json(f"{address}/v1/status/leader")
    return status == 200 and bool(leader)


def port_is_free(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:``port`` now (as servers do, reusing TIME_WAIT addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Loopback ports free right now and all different: held open together while the kernel picks them."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
