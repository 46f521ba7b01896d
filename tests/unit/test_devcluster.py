"""The local control plane's guard rails, checked without starting it (the e2e tier starts it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpfleet_cli.devcluster.cluster import MARKER_FILE, ClusterError, ControlPlane, find_binaries


def test_down_refuses_a_directory_that_is_not_a_control_plane(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(ClusterError, match="not a control plane's"):
        ControlPlane(tmp_path).down()
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_up_refuses_a_directory_that_is_not_a_control_plane(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(ClusterError, match="choose another directory"):
        ControlPlane(tmp_path, {"etcd": Path("/bin/true")}).up(attached=True, timeout=1)
    assert (tmp_path / "notes.txt").exists()


def test_down_removes_a_marked_directory_and_an_empty_one(tmp_path: Path) -> None:
    marked = tmp_path / "marked"
    (marked / "logs").mkdir(parents=True)
    (marked / MARKER_FILE).touch()
    assert ControlPlane(marked).down()
    assert not marked.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ControlPlane(empty).down()
    assert not ControlPlane(empty).down(), "nothing left the second time"


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    (tmp_path / "etcd").touch()
    with pytest.raises(ClusterError) as caught:
        find_binaries(tmp_path)
    message = str(caught.value)
    assert "kube-apiserver, kube-controller-manager, kubectl not found in" in message
    assert "make tools" in message
