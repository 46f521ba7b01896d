"""The platform's child processes: started in their own session, tied to this process's life, stopped in order.

Each child runs in a session of its own, so the terminal's Ctrl-C reaches only `mcpfleet dev`, which then stops
the children in reverse start order. Each also gets PR_SET_PDEATHSIG: should `mcpfleet dev` be killed outright,
the kernel kills its children too, so nothing is left listening. Children must be started from the main thread,
because the kernel ties that signal to the thread that forked.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1
TAIL_LINES = 30
STOP_GRACE_SECONDS = 10.0


class StartFailed(RuntimeError):
    """A child exited or never became healthy while starting; the message carries its log tail."""


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when its parent dies (async-signal-safe prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a log, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class Child:
    """One running child process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def died_message(self, when: str = "") -> str:
        return (
            f"{self.name} (pid {self.pid}) exited with code {self.process.returncode}{when}; "
            f"last lines of {self.log}:\n{tail(self.log)}"
        )

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace`` seconds; returns once it is reaped."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5.0)


def start_child(name: str, argv: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path) -> Child:
    """Start ``argv`` with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - async-signal-safe prctl only
        )
    return Child(name, process, log)


def wait_healthy(child: Child, healthy: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll ``healthy`` until it holds; StartFailed when the child exits or the deadline passes."""
    while True:
        if not child.running:
            raise StartFailed(child.died_message(" while starting"))
        if healthy():
            return
        if time.monotonic() > deadline:
            raise StartFailed(f"{child.name} did not {what} in time; last lines of {child.log}:\n{tail(child.log)}")
        time.sleep(0.2)


@dataclass
class Supervisor:
    """The children in start order: who died, and stopping them all in reverse."""

    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path) -> Child:
        child = start_child(name, argv, log, env, cwd)
        self.children.append(child)
        return child

    def first_dead(self) -> Child | None:
        return next((child for child in self.children if not child.running), None)

    def pids(self) -> dict[str, int]:
        return {child.name: child.pid for child in self.children}

    def stop_all(self, report: Callable[[str], None]) -> None:
        """Stop every child, newest first: nothing loses what it depends on while still running."""
        for child in reversed(self.children):
            if child.running:
                report(f"stopping {child.name} (pid {child.pid})")
            child.stop()
        self.children.clear()
