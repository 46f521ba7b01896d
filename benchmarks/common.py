"""What every benchmark script records the same way: which code and machine were measured, quantiles, CPU
and peak memory of processes, and where the toolchain's binaries are."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import psutil  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parent.parent


def source_info(*paths: str) -> dict[str, Any]:
    """The commit measured, and the files under ``paths`` that differed from it (uncommitted changes)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return ""
        return done.stdout.rstrip()

    changed = git("status", "--porcelain", "--", *paths)
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": [line.strip() for line in changed.splitlines()],
    }


def vm_hwm_bytes(pid: int) -> int | None:
    """Peak resident memory of a live process (Linux VmHWM), None when it cannot be read."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_snapshot(processes: Mapping[str, psutil.Process]) -> dict[str, float]:
    """User+system CPU seconds of each process now (0 for one that is gone)."""
    values: dict[str, float] = {}
    for name, process in processes.items():
        try:
            times = process.cpu_times()
            values[name] = float(times.user + times.system)
        except psutil.Error:
            values[name] = 0.0
    return values


@dataclass
class CpuMeter:
    """User+system CPU seconds of named processes between two marks."""

    processes: dict[str, psutil.Process]
    marks: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.marks = cpu_snapshot(self.processes)
        self.marks["_wall"] = time.monotonic()
        psutil.cpu_percent(interval=None)  # starts the machine-wide count

    def stop(self) -> dict[str, float]:
        now = cpu_snapshot(self.processes)
        wall = max(time.monotonic() - self.marks["_wall"], 1e-9)
        result = {f"{name}_cpu_seconds": round(now[name] - self.marks.get(name, 0.0), 2) for name in now}
        result["wall_seconds"] = round(wall, 2)
        # Every process of the machine, other jobs included, as % of all cores: 100 means saturated.
        result["machine_cpu_percent_of_all_cores"] = round(float(psutil.cpu_percent(interval=None)), 1)
        return result


def machine_info(
    binaries: Mapping[str, Path], packages: Sequence[str] = ("mcp", "kubernetes_asyncio")
) -> dict[str, Any]:
    """CPUs, memory, Python, the platform, the kube-apiserver's version and the given packages' versions."""
    try:
        apiserver = subprocess.run(
            [str(binaries["kube-apiserver"]), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        apiserver = "?"
    return {
        "cpus": os.cpu_count(),
        "memory_total_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kube_apiserver": apiserver,
        **{package: version(package) for package in packages},
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def default_bin_dir() -> Path | None:
    """$MCPFLEET_TOOLS_BIN, else what `make tools` built for hack/tools/versions.env (None when not built)."""
    if os.environ.get("MCPFLEET_TOOLS_BIN"):
        return Path(os.environ["MCPFLEET_TOOLS_BIN"])
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / "tools" / "tools.py"), "bindir"],
        capture_output=True,
        text=True,
        check=False,
    )
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


def interrupt(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler that unwinds like Ctrl-C (the control plane is stopped on the way out)."""
    raise KeyboardInterrupt
