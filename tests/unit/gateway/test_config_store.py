"""The gateway's config store: refused writes change nothing, backups are bounded, concurrent writers never tear."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from mcpfleet_gateway.config_store import ConfigInvalid, ConfigStore, PathNotAllowed


class Demo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=0)
    name: str
    padding: str = ""


def document(version: int, padding: int = 0) -> str:
    return json.dumps({"version": version, "name": f"v{version}", "padding": "x" * padding}, indent=2)


@pytest.fixture
def store(tmp_path: Path) -> ConfigStore[Demo]:
    path = tmp_path / "gateway.json"
    path.write_text(document(0))
    path.chmod(0o640)
    return ConfigStore(path, Demo)


def test_invalid_json_is_refused_with_its_position_and_changes_nothing(store: ConfigStore[Demo]) -> None:
    before = store.read_text()
    with pytest.raises(ConfigInvalid) as caught:
        store.write('{"version": 1,\n  "name": }')
    assert caught.value.problems[0].startswith("line 2, column 11: not valid JSON")
    assert store.read_text() == before
    assert store.backups() == []


def test_a_schema_violation_names_each_field(store: ConfigStore[Demo]) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        store.write(json.dumps({"version": -1, "nmae": "x"}))
    assert caught.value.problems == [
        "version: Input should be greater than or equal to 0",
        "name: Field required",
        "nmae: Extra inputs are not permitted",
    ]
    assert store.load().version == 0


def test_yaml_configs_are_read_as_yaml(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "gateway.yaml", Demo)
    store.write("version: 3\nname: three\n")
    assert store.load() == Demo(version=3, name="three")
    with pytest.raises(ConfigInvalid, match=r"line \d+, column \d+: not valid YAML: expected .,. or .\]."):
        store.write("version: [1\n")
    with pytest.raises(ConfigInvalid, match="the file is empty"):
        store.write("")


def test_a_write_backs_up_the_old_file_keeps_its_mode_and_at_most_five_backups(store: ConfigStore[Demo]) -> None:
    first = store.write(document(1))
    assert first.backup is not None
    assert json.loads(first.backup.read_text())["version"] == 0
    assert store.path.stat().st_mode & 0o777 == 0o640
    for version in range(2, 9):
        store.write(document(version))
    backups = store.backups()
    assert [json.loads(b.read_text())["version"] for b in backups] == [3, 4, 5, 6, 7]
    assert store.load().version == 8


@pytest.mark.parametrize(
    "requested", ["../gateway.json.bak", "/etc/passwd", "../../etc/shadow", "sub/../../gateway.json", "other.json"]
)
def test_only_the_stores_own_file_may_be_named(store: ConfigStore[Demo], requested: str) -> None:
    with pytest.raises(PathNotAllowed, match=r"only .*gateway\.json can be read or changed here"):
        store.resolve(requested)


def test_the_own_file_may_be_named_also_through_a_link(store: ConfigStore[Demo], tmp_path: Path) -> None:
    assert store.resolve(None) == store.path
    assert store.resolve("gateway.json") == store.path
    assert store.resolve(str(store.path)) == store.path
    (tmp_path / "link.json").symlink_to(store.path)
    assert store.resolve(str(tmp_path / "link.json")) == store.path
    (tmp_path / "elsewhere.json").write_text(document(9))
    (tmp_path / "sneaky.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(PathNotAllowed):
        store.resolve(str(tmp_path / "sneaky.json"))


def test_a_config_behind_a_symlink_is_written_through(store: ConfigStore[Demo], tmp_path: Path) -> None:
    (tmp_path / "mounted").mkdir()
    link = tmp_path / "mounted" / "gateway.json"
    link.symlink_to(store.path)
    linked = ConfigStore(link, Demo)

    written = linked.write(document(1))

    assert link.is_symlink()
    assert store.load().version == 1
    assert written.backup is not None
    assert written.backup.parent == store.path.parent
    assert linked.backups() == store.backups() == [written.backup]


def test_a_new_config_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "new.json", Demo)
    written = store.write(document(1))
    assert written.backup is None
    assert store.path.stat().st_mode & 0o777 == 0o600


def _writer(path: str, version: int) -> None:
    ConfigStore(Path(path), Demo).write(document(version, padding=20_000))


WRITERS = 50


def test_fifty_concurrent_writers_never_leave_a_partial_file(store: ConfigStore[Demo]) -> None:
    # Large documents make a torn write likely if the replace were not atomic.
    written = {json.loads(document(v, padding=20_000))["version"] for v in range(1, WRITERS + 1)}
    seen: set[int] = set()
    torn: list[str] = []
    done = threading.Event()

    def read_all_the_time() -> None:
        while not done.is_set():
            try:
                seen.add(store.load().version)
            except ConfigInvalid as exc:
                torn.append(str(exc))

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_writer, args=(str(store.path), v)) for v in range(1, WRITERS + 1)]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
    finally:
        done.set()
        reader.join()
    assert [p.exitcode for p in processes] == [0] * WRITERS
    assert torn == [], torn[:3]
    assert seen <= written | {0}
    assert store.load().version in written
    backups = store.backups()
    assert 1 <= len(backups) <= 5
    assert all(Demo.model_validate_json(b.read_text()).version in written | {0} for b in backups)
    leftovers = [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert os.stat(store.path).st_mode & 0o777 == 0o640
