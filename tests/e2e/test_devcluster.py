"""`mcpfleet dev cluster up|status|down`, and that nothing outlives the control plane."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mcpfleet_cli.devcluster.cluster import COMPONENTS, find_binaries
from tests.e2e.conftest import _tools_bin, eventually

pytestmark = pytest.mark.timeout(240)
MCPFLEET = str(Path(sys.executable).parent / "mcpfleet")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MCPFLEET, "dev", "cluster", *args], capture_output=True, text=True, check=False, timeout=200)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_status_down_leaves_no_process_port_or_file(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    up = cli("up", "--dir", str(root), "--bin-dir", str(_tools_bin()))
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={root / 'kubeconfig'}" in up.stdout
    state = json.loads((root / "state.json").read_text())
    assert sorted(state["pids"]) == sorted(COMPONENTS)

    status = cli("status", "--dir", str(root))
    assert status.returncode == 0, status.stdout + status.stderr
    assert "ready" in status.stdout
    assert "stopped" not in status.stdout
    again = cli("up", "--dir", str(root), "--bin-dir", str(_tools_bin()))
    assert again.returncode == 1
    assert "already runs" in again.stderr

    kubectl = find_binaries(_tools_bin())["kubectl"]
    namespaces = subprocess.run(
        [str(kubectl), f"--kubeconfig={root / 'kubeconfig'}", "get", "namespaces", "-o", "name"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "namespace/default" in namespaces

    down = cli("down", "--dir", str(root))
    assert down.returncode == 0, down.stderr
    assert not any(alive(pid) for pid in state["pids"].values())
    assert not any(listening(port) for port in state["ports"].values())
    assert not root.exists()
    assert cli("status", "--dir", str(root)).returncode == 1
    assert "nothing runs" in cli("down", "--dir", str(root)).stdout


def test_an_attached_control_plane_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    root = tmp_path / "attached"
    starter = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from mcpfleet_cli.devcluster.cluster import ControlPlane, find_binaries
        state = ControlPlane(Path({str(root)!r}), find_binaries(Path({str(_tools_bin())!r}))).up(attached=True)
        print(json.dumps({{"pids": state.pids, "ports": state.ports}}), flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        assert all(alive(pid) for pid in started["pids"].values())
        # As if the test runner were killed: no teardown code runs at all.
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        eventually(lambda: not any(alive(pid) for pid in started["pids"].values()), within=30, what="components gone")
        eventually(lambda: not any(listening(port) for port in started["ports"].values()), within=10, what="ports free")
    finally:
        if process.poll() is None:
            process.kill()
        # What a killed run leaves is only files; the next session sweeps them (conftest._sweep_stale_roots).
        subprocess.run([MCPFLEET, "dev", "cluster", "down", "--dir", str(root)], check=False)
    assert not root.exists()
