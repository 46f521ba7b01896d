"""Atomic replacement with timestamped backups, shared by the gateway's config store and `mcpfleet catalog export`."""

from __future__ import annotations

import datetime
import fcntl
import re
from pathlib import Path

import pytest

from mcpfleet_gateway import atomic_file
from mcpfleet_gateway.atomic_file import atomic_write_with_backups, backups, exclusive_lock

BACKUP_NAME = re.compile(r"config\.json\.\d{8}T\d{12}Z-\d{3}\.bak")


def test_a_new_file_gets_the_given_mode_and_no_backup(tmp_path: Path) -> None:
    private = atomic_write_with_backups(tmp_path / "private.json", "{}\n")
    shared = atomic_write_with_backups(tmp_path / "shared.json", "{}\n", new_file_mode=0o644)

    assert private.backup is None
    assert shared.backup is None
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644
    assert backups(tmp_path / "private.json") == []


def test_each_write_backs_up_the_previous_text_with_its_mode_and_keeps_the_newest(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_text("0\n")
    target.chmod(0o640)
    made = []
    for number in range(1, 6):
        result = atomic_write_with_backups(target, f"{number}\n", keep=3)
        made.append(result.backup)

    kept = backups(target)
    assert [path.read_text() for path in kept] == ["2\n", "3\n", "4\n"]
    assert kept == made[-3:]
    assert all(BACKUP_NAME.fullmatch(path.name) for path in kept)
    assert {path.stat().st_mode & 0o777 for path in [target, *kept]} == {0o640}
    assert target.read_text() == "5\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_pruned_backups_are_reported(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_text("0\n")
    first = atomic_write_with_backups(target, "1\n", keep=1)
    second = atomic_write_with_backups(target, "2\n", keep=1)

    assert first.pruned == ()
    assert second.pruned == (first.backup,)
    assert backups(target) == [second.backup]


def test_files_that_only_look_like_backups_are_never_listed_or_pruned(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_text("0\n")
    lookalikes = [
        "config.json.bak",
        "config.json.old.bak",
        "config.json.20250101T000000000000Z.bak",
        "xconfig.json.bak",
    ]
    for name in lookalikes:
        (tmp_path / name).write_text("mine\n")
    for number in range(1, 4):
        atomic_write_with_backups(target, f"{number}\n", keep=1)

    assert len(backups(target)) == 1
    assert all((tmp_path / name).read_text() == "mine\n" for name in lookalikes)


def test_writes_within_one_clock_tick_get_distinct_names_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stopped clock stands in for a coarse one: no real clock here can be made to repeat a microsecond.
    moment = datetime.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    monkeypatch.setattr(atomic_file, "_utc_now", lambda: moment)
    target = tmp_path / "config.json"
    target.write_text("0\n")
    for number in range(1, 5):
        atomic_write_with_backups(target, f"{number}\n", keep=2)

    kept = backups(target)
    # -000 and -001 were pruned; reusing their names would sort the newest backup first.
    assert [path.name for path in kept] == [
        "config.json.20250102T030405678901Z-002.bak",
        "config.json.20250102T030405678901Z-003.bak",
    ]
    assert [path.read_text() for path in kept] == ["2\n", "3\n"]


def test_a_symlinked_file_is_written_through_with_backups_beside_the_real_file(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "config.json"
    real.parent.mkdir()
    real.write_text("0\n")
    link = tmp_path / "config.json"
    link.symlink_to(real)

    result = atomic_write_with_backups(link, "1\n")

    assert link.is_symlink()
    assert real.read_text() == "1\n"
    assert result.backup is not None
    assert result.backup.parent == real.parent
    assert backups(link) == backups(real) == [result.backup]


def test_the_lock_is_one_for_a_file_and_every_link_to_it(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "config.json"
    real.parent.mkdir()
    real.write_text("0\n")
    link = tmp_path / "config.json"
    link.symlink_to(real)

    with (
        exclusive_lock(link),
        (real.parent / ".config.json.lock").open("a") as other,
        pytest.raises(BlockingIOError),
    ):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not (tmp_path / ".config.json.lock").exists()


def test_keep_must_be_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep at least one backup"):
        atomic_write_with_backups(tmp_path / "config.json", "{}", keep=0)
    assert not (tmp_path / "config.json").exists()
