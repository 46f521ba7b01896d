"""The ready file: what a running `mcpfleet dev` serves, for people, tests and `mcpfleet doctor`.

Written once everything answers, removed when the platform stops. It holds the gateway token, so it is
written with mode 0600.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcpfleet_gateway.atomic_file import write_atomically

READY_FILE = "ready.json"


class ReadyFileError(Exception):
    """The ready file exists but cannot be used; the message says which file and why."""


class ReadyInfo(BaseModel):
    """Where each part of a running dev platform answers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str = Field(description="The gateway's base URL.")
    mcp_url: str = Field(description="The gateway's MCP endpoint (streamable HTTP).")
    token: str = Field(description="A bearer token of the admin role, valid for the platform's lifetime.")
    kubeconfig: str = Field(description="The control plane's admin kubeconfig.")
    redis: str = Field(description="redis:// URL of the local Redis.")
    consul: str | None = Field(default=None, description="The Consul agent's HTTP API, when one runs.")
    prometheus: str | None = Field(default=None, description="Prometheus's base URL, when one runs.")
    operator_metrics: str = Field(description="The operator's /metrics URL.")
    logs: str = Field(description="Directory of every process's log.")
    pid: int = Field(description="Process id of `mcpfleet dev` itself.")
    pids: dict[str, int] = Field(default_factory=dict, description="Every child process by name.")
    started_at: str = Field(description="When the platform became ready (RFC 3339).")


def write_ready(path: Path, info: ReadyInfo) -> None:
    """Replace ``path`` atomically with ``info`` as JSON, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (info.model_dump_json(indent=2) + "\n").encode(), 0o600)


def read_ready(path: Path) -> ReadyInfo | None:
    """The ready file's content; None when there is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReadyFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        return ReadyInfo.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ReadyFileError(f"{path}: not a ready file of `mcpfleet dev`: {where}: {first['msg']}") from None


def is_running(info: ReadyInfo) -> bool:
    """Whether the `mcpfleet dev` that wrote ``info`` still runs (a killed one leaves its file behind)."""
    try:
        cmdline = Path(f"/proc/{info.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"mcpfleet" in cmdline


def remove_ready(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
