"""The e2e tier: a real etcd + kube-apiserver + kube-controller-manager, built by `make tools`.

One control plane serves the whole session (it takes ~10 s to start). Every test gets its own
namespace. Nothing here falls back to the emulator: without the binaries, the tier fails and says
how to build them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcpfleet_cli.devcluster.cluster import (
    ClusterState,
    ControlPlane,
    find_binaries,
    free_port,
    kubectl,
    write_kubeconfig,
)
from mcpfleet_operator.builders.operator_rbac import OPERATOR_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_SCRIPT = REPO_ROOT / "hack" / "tools" / "tools.py"
CRD_DIR = REPO_ROOT / "crds"
SAMPLES_DIR = REPO_ROOT / "samples"
OPERATOR_NAMESPACE = "mcpfleet-system"
STALE_PREFIX = "mcpfleet-e2e-"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def _tools_bin() -> Path:
    """$MCPFLEET_TOOLS_BIN (set by `make e2e`), else what `make tools` built for hack/tools/versions.env."""
    if os.environ.get("MCPFLEET_TOOLS_BIN"):
        return Path(os.environ["MCPFLEET_TOOLS_BIN"])
    result = subprocess.run([sys.executable, str(TOOLS_SCRIPT), "bindir"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"the e2e toolchain is not built; run `make tools` first.\n{result.stderr.strip()}", pytrace=False)
    return Path(result.stdout.strip())


def _sweep_stale_roots() -> None:
    """Remove control planes left by a test run that was killed before it could clean up."""
    for root in Path(tempfile.gettempdir()).glob(f"{STALE_PREFIX}*"):
        owner = root.name.removeprefix(STALE_PREFIX).split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            ControlPlane(root).down()


@dataclass(frozen=True)
class Cluster:
    """The running control plane and how to talk to it as admin."""

    state: ClusterState
    binaries: dict[str, Path]
    root: Path

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state.kubeconfig)

    def kubectl(
        self, *args: str, stdin: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return kubectl(self.binaries, kubeconfig or self.kubeconfig, *args, stdin=stdin, timeout=60)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        """kubectl that must succeed; its stdout."""
        result = self.kubectl(*args, stdin=stdin)
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.ok("get", *args, "-o", "json"))

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]], *extra: str) -> subprocess.CompletedProcess[str]:
        documents = manifest if isinstance(manifest, list) else [manifest]
        return self.kubectl("apply", *extra, "-f", "-", stdin=yaml.safe_dump_all(documents))


_SUMMARY: list[str] = []


@pytest.fixture
def summary_line() -> Callable[[str], None]:
    """Adds a line to the run's closing summary: what a test executed or measured, shown even without -s."""
    return _SUMMARY.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SUMMARY:
        terminalreporter.section("e2e figures")
        for line in _SUMMARY:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    _sweep_stale_roots()
    binaries = find_binaries(_tools_bin())
    root = Path(tempfile.mkdtemp(prefix=f"{STALE_PREFIX}{os.getpid()}-"))
    plane = ControlPlane(root, binaries)
    try:
        state = plane.up(attached=True, timeout=180)
        cluster = Cluster(state, binaries, root)
        cluster.ok("apply", "-f", str(CRD_DIR))
        cluster.ok("wait", "--for=condition=Established", "--timeout=60s", "crd/mcpservers.mcpfleet.io")
        # The API server publishes a new CRD's OpenAPI (what `kubectl explain` reads) a moment later.
        eventually(lambda: cluster.kubectl("explain", "mcpserver").returncode == 0, within=30, what="CRD OpenAPI")
        yield cluster
    finally:
        plane.down()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.ok("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def eventually(
    check: Callable[[], Any], *, within: float = 30.0, interval: float = 0.5, what: str = "condition"
) -> Any:
    """Poll `check` until it returns a truthy value without raising; the last failure otherwise."""
    deadline = time.monotonic() + within
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (AssertionError, OSError) as exc:  # OSError: a server not listening yet
            last = exc
        else:
            if value:
                return value
        time.sleep(interval)
    message = f"{what} not met within {within:.0f}s"
    raise AssertionError(f"{message}: {last}" if last else message)


@dataclass
class OperatorProcess:
    """`mcpfleet operator` as a real subprocess, with the ServiceAccount token the project's RBAC grants."""

    cluster: Cluster
    kubeconfig: Path
    log: Path
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "the operator already runs"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "MCPFLEET_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "MCPFLEET_OPERATOR_METRICS_HOST": "127.0.0.1",
            "MCPFLEET_OPERATOR_LIVENESS_PORT": "0",
        }
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "mcpfleet"), "operator"],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def assert_alive(self) -> None:
        assert self.process is not None, "the operator was never started"
        assert self.process.poll() is None, f"the operator exited:\n{self.log_tail()}"

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching `labels`, read from the operator's /metrics."""
        import urllib.request  # noqa: PLC0415

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] != name:
                continue
            if all(f'{key}="{val}"' in series for key, val in labels.items()):
                total += float(value)
        return total


def table(text: str) -> dict[str, dict[str, str]]:
    """kubectl's table output by row name and column header; empty cells stay empty strings."""
    header, *rows = text.rstrip("\n").split("\n")
    names = header.split()
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], None]
    parsed = {}
    for row in rows:
        cells = {name: row[start:end].strip() for name, start, end in zip(names, starts, ends, strict=True)}
        parsed[cells[names[0]]] = cells
    return parsed


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster) -> Path:
    """The project's least-privilege RBAC applied, and a kubeconfig holding only the ServiceAccount's token."""
    cluster.ok("create", "namespace", OPERATOR_NAMESPACE)
    rbac = subprocess.run(
        [str(Path(sys.executable).parent / "mcpfleet"), "rbac", "print", "--namespace", OPERATOR_NAMESPACE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cluster.ok("apply", "-f", "-", stdin=rbac)
    token = cluster.ok("create", "token", OPERATOR_NAME, "-n", OPERATOR_NAMESPACE, "--duration=2h").strip()
    return write_kubeconfig(
        cluster.root / "operator.kubeconfig",
        cluster.state.server,
        cluster.state.ca_cert,
        user=OPERATOR_NAME,
        token=token,
    )


@pytest.fixture
def operator(cluster: Cluster, operator_kubeconfig: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster, operator_kubeconfig, tmp_path / "operator.log", free_port())
    process.start()
    try:
        yield process
    finally:
        process.stop()
        # An RBAC denial reads: ... is forbidden: User "system:serviceaccount:..." cannot <verb> resource ...
        lines = process.log.read_text(errors="replace").splitlines()
        denied = [line for line in lines if "is forbidden: User" in line]
        assert not denied, "the operator's RBAC lacks a permission it uses:\n" + "\n".join(denied[:20])
