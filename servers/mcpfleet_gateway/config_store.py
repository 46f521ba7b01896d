"""The gateway's own config file, changed safely: validate, back up, write atomically, never lose the old one.

A write is refused whole when the new text does not parse or validate (the old file stays as it was).
Otherwise, under an exclusive lock shared by every process and thread that writes the same file, the
current file is copied to a timestamped backup (only the newest ``keep`` backups are kept) and the new
text replaces the config in one rename (see :mod:`mcpfleet_gateway.atomic_file`). A reader therefore
sees the old file or the new one, never a mix, and concurrent writers are serialised: the last one wins
and each backup is a complete earlier version.

Which file may be written is not the caller's choice: a requested path must be one of the store's own
config locations (checked after resolving symlinks and ``..``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mcpfleet_gateway import atomic_file
from mcpfleet_gateway.atomic_file import DEFAULT_BACKUPS

M = TypeVar("M", bound=BaseModel)


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
        """Existing backups, oldest first."""
        return atomic_file.backups(self.path)

    # -- writing ------------------------------------------------------------------------------------

    def write(self, text: str) -> WriteResult:
        """Validate, back up the current file, replace it atomically; ConfigInvalid leaves everything as it was."""
        self.validate_text(text)
        with atomic_file.exclusive_lock(self.path):
            # A config may hold secrets: a new file is readable by its owner only.
            replaced = atomic_file.atomic_write_with_backups(self.path, text, keep=self.keep, new_file_mode=0o600)
        return WriteResult(self.path, replaced.backup, replaced.pruned)
