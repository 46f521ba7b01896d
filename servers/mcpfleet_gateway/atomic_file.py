"""Replacing a file that people and programs read: the old text goes to a timestamped backup, the new one arrives whole.

The new text is written to a temporary file in the same directory, flushed to disk and renamed over the
target, so a reader (the gateway reloading, an editor, an MCP client) sees the old file or the new one,
never half of one. The previous file is first copied to ``<file>.<YYYYmmddTHHMMSSffffffZ>-<NNN>.bak``
(UTC; the counter only separates writes within one clock tick), with the file's own mode, and only the
newest ``keep`` backups stay. Files that merely look similar (``<file>.bak``, ``<file>.old.bak``) are
neither listed nor pruned. A symlinked target (a dotfile manager's, a mounted volume's) is written
through, not replaced by a regular file; its backups sit beside the file the link leads to.

Writers that may race take :func:`exclusive_lock` around the write: a ``.<file>.lock`` beside the target,
which serialises threads and processes alike. This module uses the standard library only, so the CLI
can import it without loading the rest of the gateway.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BACKUP_SUFFIX = ".bak"
DEFAULT_BACKUPS = 5
_STAMP = "%Y%m%dT%H%M%S%fZ"
_COUNTER_DIGITS = 3


@dataclass(frozen=True)
class Replaced:
    backup: Path | None  # None when there was no previous file
    pruned: tuple[Path, ...]  # older backups removed to keep the newest ones


def backups(path: Path) -> list[Path]:
    """The backups of ``path``, oldest first (fixed-width UTC stamps and counters sort by time)."""
    target = _target(path)
    pattern = _backup_pattern(target)
    found = target.parent.glob(f"{glob.escape(target.name)}.*{BACKUP_SUFFIX}")
    return sorted(p for p in found if pattern.fullmatch(p.name))


def atomic_write_with_backups(
    path: Path, text: str, *, keep: int = DEFAULT_BACKUPS, new_file_mode: int = 0o600
) -> Replaced:
    """Back up the current file (if any), replace it with ``text`` atomically, prune all but ``keep`` backups.

    An existing file keeps its mode; a new one gets ``new_file_mode``.
    """
    if keep < 1:
        raise ValueError("keep at least one backup")
    target = _target(path)
    data = text.encode()
    mode = target.stat().st_mode & 0o777 if target.exists() else new_file_mode
    backup = None
    if target.exists():
        backup = _free_backup_name(target)
        write_atomically(backup, target.read_bytes(), mode)
    write_atomically(target, data, mode)
    excess = backups(target)[:-keep]
    for old in excess:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return Replaced(backup, tuple(excess))


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold the write lock of ``path`` (shared by every thread and process, and by every link to the file)."""
    target = _target(path)
    # flock locks per open file, so two threads of one process queue here just as two processes do.
    with (target.parent / f".{target.name}.lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _target(path: Path) -> Path:
    return path.resolve() if path.is_symlink() else path.absolute()


def _backup_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(
        rf"{re.escape(target.name)}\.(?P<stamp>\d{{8}}T\d{{12}}Z)-(?P<counter>\d{{{_COUNTER_DIGITS}}})"
        rf"{re.escape(BACKUP_SUFFIX)}"
    )


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _free_backup_name(target: Path) -> Path:
    stamp = _utc_now().strftime(_STAMP)
    pattern = _backup_pattern(target)
    # After the highest counter of this tick, not the first gap: a gap left by pruning would sort a newer backup
    # before an older one, and the next prune would then remove the newer one.
    used = [int(m["counter"]) for p in backups(target) if (m := pattern.fullmatch(p.name)) and m["stamp"] == stamp]
    counter = max(used, default=-1) + 1
    if counter >= 10**_COUNTER_DIGITS:
        raise RuntimeError(f"{target}: more than {10**_COUNTER_DIGITS} backups within one clock tick")
    return target.parent / f"{target.name}.{stamp}-{counter:0{_COUNTER_DIGITS}d}{BACKUP_SUFFIX}"


def write_atomically(target: Path, data: bytes, mode: int) -> None:
    """Replace ``target`` with ``data`` (mode ``mode``) whole, durably, without a backup."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
