"""What every benchmark script records the same way: which code was measured, and a process's peak memory."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

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
