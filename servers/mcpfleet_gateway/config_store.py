"""The gateway's own config file, changed safely: validate, back up, write atomically, never lose the old one.

A write is refused whole when the new text does not parse or validate (the old file stays as it was).
Otherwise, under an exclusive lock shared by every process and thread that writes the same file, the
current file is copied to a timestamped backup (only the newest ``keep`` backups are kept), the new text
goes to a temporary file in the same directory, is flushed to disk, and replaces the config in one
rename. A reader therefore sees the old file or the new one, never a mix, and concurrent writers are
serialised: the last one wins and each backup is a complete earlier version.

Which file may be written is not the caller's choice: a requested path must be one of the store's own
config locations (checked after resolving symlinks and ``..``).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

BACKUP_SUFFIX = ".bak"
DEFAULT_BACKUPS = 5


class ConfigInvalid(ValueError):
    """The text is not a valid config; ``problems`` lists each one as ``<field path>: <what to change>``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class PathNotAllowed(PermissionError):
    """A config path outside the store's own locations was requested."""


@dataclass(frozen=True)
class WriteResult:
    path: Path
    backup: Path | None  # None when there was no previous file
    pruned: tuple[Path, ...]  # backups removed to keep the newest ones


def parse_document(text: str, *, suffix: str) -> Any:
    """JSON for .json files, YAML otherwise; a syntax error names the line and column."""
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigInvalid([f"line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigInvalid([f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None


def describe(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problems.append(f"{location}: {error['msg']}")
    return problems


class ConfigStore(Generic[M]):
    """One config file of type ``model`` with its backups."""

    def __init__(
        self,
        path: Path,
        model: type[M],
        *,
        keep: int = DEFAULT_BACKUPS,
        prepare: Callable[[Any], Any] | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError("keep at least one backup")
        self.path = path.absolute()
        self.model = model
        self.keep = keep
        # Applied to the parsed document before validation (e.g. ${VAR} expansion); the file keeps the raw text.
        self._prepare = prepare

    # -- what may be touched ------------------------------------------------------------------------

    def locations(self) -> Sequence[Path]:
        """The files this store answers for: the config itself (resolved through symlinks)."""
        return (self.path.resolve(),)

    def resolve(self, requested: str | os.PathLike[str] | None) -> Path:
        """The config path for a caller's ``config-file`` argument: only the store's own file is allowed."""
        if requested is None or str(requested) == "":
            return self.path
        candidate = Path(requested)
        if not candidate.is_absolute():
            candidate = self.path.parent / candidate
        if candidate.resolve() not in self.locations():
            raise PathNotAllowed(
                f"{requested!s} is not this gateway's config file; only {self.path} can be read or changed here"
            )
        return self.path

    # -- reading and validating ---------------------------------------------------------------------

    def validate_text(self, text: str) -> M:
        document = parse_document(text, suffix=self.path.suffix.lower())
        if document is None:
            raise ConfigInvalid(["(top level): the file is empty"])
        if self._prepare is not None:
            document = self._prepare(document)
        try:
            return self.model.model_validate(document)
        except ValidationError as exc:
            raise ConfigInvalid(describe(exc)) from None

    def read_text(self) -> str:
        return self.path.read_text()

    def load(self) -> M:
        return self.validate_text(self.read_text())

    def backups(self) -> list[Path]:
        """Existing backups, oldest first (their names sort by time)."""
        return sorted(self.path.parent.glob(f"{self.path.name}.*{BACKUP_SUFFIX}"))

    # -- writing ------------------------------------------------------------------------------------

    def write(self, text: str) -> WriteResult:
        """Validate, back up the current file, replace it atomically; ConfigInvalid leaves everything as it was."""
        self.validate_text(text)
        with self._locked():
            backup = self._backup()
            self._replace(text)
            pruned = self._prune()
        return WriteResult(self.path, backup, pruned)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A lock file beside the config: flock locks per open file, so threads and processes both queue here.
        lock_path = self.path.parent / f".{self.path.name}.lock"
        with lock_path.open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _backup(self) -> Path | None:
        if not self.path.exists():
            return None
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        # The lock makes names unique in time order; the counter only guards against a coarse clock.
        for counter in range(1000):
            backup = self.path.parent / f"{self.path.name}.{stamp}-{counter:03d}{BACKUP_SUFFIX}"
            if not backup.exists():
                break
        else:  # pragma: no cover - a thousand writes within one microsecond
            raise RuntimeError("no free backup name")
        self._write_file(backup, self.path.read_bytes())
        return backup

    def _replace(self, text: str) -> None:
        self._write_file(self.path, text.encode())

    def _write_file(self, target: Path, data: bytes) -> None:
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o600
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

    def _prune(self) -> tuple[Path, ...]:
        backups = self.backups()
        excess = backups[: max(0, len(backups) - self.keep)]
        for old in excess:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        return tuple(excess)
