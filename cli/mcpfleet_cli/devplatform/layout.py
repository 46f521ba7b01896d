"""The state directory of `mcpfleet dev` (default ~/.cache/mcpfleet/dev).

    cluster/    the control plane (PKI, etcd data, kubeconfigs; removed when the platform stops)
    config/     generated configs and the ServiceAccount kubeconfigs (removed when the platform stops)
    data/       Redis, Consul and Prometheus data (removed when the platform stops)
    logs/       one log per process (kept until the next start)
    audit/      the gateway's audit trail (kept until the next start)
    ready.json  where everything answers, and the token (while the platform runs)
    dev.pid     the running `mcpfleet dev`

A directory is wiped at start only when it carries the marker this module writes, so a mistyped --dir never
deletes someone's files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mcpfleet_cli.devplatform.ready import READY_FILE

MARKER = ".mcpfleet-dev"
PID_FILE = "dev.pid"


class LayoutError(RuntimeError):
    """The directory cannot be used; the message says what to do."""


def default_root() -> Path:
    base = os.environ.get("MCPFLEET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mcpfleet"
    )
    return Path(base) / "dev"


def _running_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` when that process is a running `mcpfleet dev`."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and b"mcpfleet" in cmdline else None


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def cluster(self) -> Path:
        return self.root / "cluster"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def ready_file(self) -> Path:
        return self.root / READY_FILE

    @property
    def pid_file(self) -> Path:
        return self.root / PID_FILE

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def prepare(self) -> None:
        """Refuse a directory in use or not ours; otherwise start it afresh (mode 0700) with our pid in it."""
        running = _running_pid(self.pid_file)
        if running is not None:
            raise LayoutError(
                f"another `mcpfleet dev` (pid {running}) runs from {self.root}: stop it (Ctrl-C in its terminal, "
                "or kill the pid) or pass --dir to run a second one elsewhere"
            )
        if self.root.exists():
            if not (self.root / MARKER).exists() and any(self.root.iterdir()):
                raise LayoutError(
                    f"{self.root} holds files that are not `mcpfleet dev`'s; pass --dir with an empty or new directory"
                )
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, mode=0o700)
        self.root.chmod(0o700)
        (self.root / MARKER).touch()
        for directory in (self.config, self.data, self.logs, self.audit):
            directory.mkdir(mode=0o700)
        self.pid_file.write_text(f"{os.getpid()}\n")

    def cleanup(self) -> None:
        """Remove what only a running platform needs; the logs and the audit trail stay for a look afterwards."""
        for directory in (self.config, self.data):
            shutil.rmtree(directory, ignore_errors=True)
        for file in (self.ready_file, self.pid_file):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
